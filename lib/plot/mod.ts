// Plots: Vega-Lite charts (lines, heatmaps, bars) rendered headless to SVG, PNG through resvg.
// vega, vega-lite and resvg load lazily, only when a chart is drawn.

export * from "./render.ts";
export * from "./charts.ts";
export * from "./png.ts";
export * from "./write.ts";
