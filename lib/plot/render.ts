// Vega-Lite spec -> SVG text, headless (vega View with renderer "none"). vega and vega-lite are
// imported lazily, inside the call, so commands that never plot never load them.

/** A Vega-Lite specification (JSON object). */
export type VegaLiteSpec = Record<string, unknown>;

/** Font named in every chart; png.ts hands resvg the same font (DejaVu Sans from npm). */
export const PLOT_FONT = "DejaVu Sans";

/**
 * Renders a Vega-Lite spec to an SVG string.
 *
 * @example
 * ```ts
 * const svg = await renderSvg({ data: { values: [{ x: 1, y: 2 }] }, mark: "point",
 *   encoding: { x: { field: "x", type: "quantitative" }, y: { field: "y", type: "quantitative" } } });
 * ```
 */
export async function renderSvg(spec: VegaLiteSpec): Promise<string> {
  const vegaLite = await import("vega-lite");
  const vega = await import("vega");
  const withFont = {
    ...spec,
    config: { font: PLOT_FONT, background: "white", ...(spec.config as Record<string, unknown> ?? {}) },
  };
  // deno-lint-ignore no-explicit-any
  const compiled = vegaLite.compile(withFont as any).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
