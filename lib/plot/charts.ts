// Chart specs for the plots harpe draws (line charts, heatmaps, bar charts), as Vega-Lite specs that
// can be rendered alone or stacked with vconcat(); each chart function also has a render shortcut.

import { renderSvg, type VegaLiteSpec } from "./render.ts";

/** Default chart size in pixels (plot area). */
export const CHART_WIDTH = 560;
export const CHART_HEIGHT = 300;
/** Line charts with more series than this draw no legend (too many entries to read). */
export const MAX_LEGEND_ENTRIES = 12;

/** Options of {@link lineSpec}: one line per series. */
export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: { name: string; points: { x: number; y: number }[] }[];
  logX?: boolean;
  logY?: boolean;
  width?: number;
  height?: number;
}

/**
 * A multi-series line chart.
 *
 * @example
 * ```ts
 * const svg = await renderSvg(lineSpec({ title: "ppl", xLabel: "length", yLabel: "ppl", logX: true,
 *   series: [{ name: "base", points: [{ x: 1024, y: 5 }, { x: 4096, y: 4 }] }] }));
 * ```
 */
export function lineSpec(options: LineChartOptions): VegaLiteSpec {
  const values = options.series.flatMap((s, order) =>
    s.points.map((p) => ({ series: s.name, order, x: p.x, y: p.y }))
  );
  const names = options.series.map((s) => s.name);
  return {
    title: options.title,
    width: options.width ?? CHART_WIDTH,
    height: options.height ?? CHART_HEIGHT,
    data: { values },
    mark: { type: "line", strokeWidth: 1.2, clip: true },
    encoding: {
      x: {
        field: "x",
        type: "quantitative",
        title: options.xLabel,
        scale: options.logX ? { type: "log", nice: false } : { zero: false },
      },
      y: {
        field: "y",
        type: "quantitative",
        title: options.yLabel,
        scale: options.logY ? { type: "log" } : { zero: false },
      },
      color: {
        field: "series",
        type: "nominal",
        sort: names,
        title: null,
        legend: names.length > MAX_LEGEND_ENTRIES ? null : {},
      },
      detail: { field: "series", type: "nominal" },
    },
  };
}

/** Renders {@link lineSpec} to SVG. */
export function lineChart(options: LineChartOptions): Promise<string> {
  return renderSvg(lineSpec(options));
}

/** Options of {@link heatmapSpec}: values[y][x] over the labels `x` and `y`. */
export interface HeatmapOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  x: (string | number)[];
  y: (string | number)[];
  /** [y.length][x.length]; NaN cells are left empty. */
  values: number[][];
  colorLabel?: string;
  /** Color scale domain; default: the data's range. */
  domain?: [number, number];
  /** Print each cell's value in it (default true). */
  showValues?: boolean;
  width?: number;
  height?: number;
}

/**
 * A heatmap of values[y][x] with ordinal axes in the given label order.
 *
 * @example
 * ```ts
 * heatmapSpec({ title: "NIAH", xLabel: "length", yLabel: "depth", x: ["4k", "8k"], y: [0, 50, 100],
 *   values: [[100, 90], [100, 80], [95, 70]], domain: [0, 100] });
 * ```
 */
export function heatmapSpec(options: HeatmapOptions): VegaLiteSpec {
  const values = options.y.flatMap((y, i) =>
    options.x.map((x, j) => ({ x: String(x), y: String(y), value: options.values[i]?.[j] }))
  ).filter((cell) => typeof cell.value === "number" && Number.isFinite(cell.value));
  const color = {
    field: "value",
    type: "quantitative",
    title: options.colorLabel ?? null,
    scale: { scheme: "redyellowgreen", ...(options.domain ? { domain: options.domain } : {}) },
  };
  const layers: VegaLiteSpec[] = [{ mark: "rect", encoding: { color } }];
  if (options.showValues ?? true) {
    layers.push({
      mark: { type: "text", fontSize: 9 },
      encoding: { text: { field: "value", type: "quantitative", format: ".3~r" } },
    });
  }
  return {
    title: options.title,
    width: options.width ?? CHART_WIDTH,
    height: options.height ?? CHART_HEIGHT,
    data: { values },
    encoding: {
      x: {
        field: "x",
        type: "ordinal",
        sort: options.x.map(String),
        title: options.xLabel,
        axis: { labelAngle: 0 },
      },
      y: { field: "y", type: "ordinal", sort: options.y.map(String), title: options.yLabel },
    },
    layer: layers,
  };
}

/** Renders {@link heatmapSpec} to SVG. */
export function heatmap(options: HeatmapOptions): Promise<string> {
  return renderSvg(heatmapSpec(options));
}

/** Options of {@link barSpec}: one bar per label, in the given order (e.g. one per head). */
export interface BarChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  labels: (string | number)[];
  values: number[];
  logY?: boolean;
  width?: number;
  height?: number;
}

/**
 * A bar chart, e.g. the RoPE base of every head.
 *
 * @example
 * ```ts
 * barSpec({ title: "bases", xLabel: "head", yLabel: "base", labels: [0, 1], values: [1e6, 5e6] });
 * ```
 */
export function barSpec(options: BarChartOptions): VegaLiteSpec {
  const values = options.labels.map((label, i) => ({ label: String(label), value: options.values[i] }));
  return {
    title: options.title,
    width: options.width ?? CHART_WIDTH,
    height: options.height ?? CHART_HEIGHT,
    data: { values },
    mark: "bar",
    encoding: {
      x: {
        field: "label",
        type: "ordinal",
        sort: options.labels.map(String),
        title: options.xLabel,
        axis: { labelAngle: 0 },
      },
      y: {
        field: "value",
        type: "quantitative",
        title: options.yLabel,
        scale: options.logY ? { type: "log" } : {},
      },
    },
  };
}

/** Renders {@link barSpec} to SVG. */
export function barChart(options: BarChartOptions): Promise<string> {
  return renderSvg(barSpec(options));
}

/**
 * Stacks charts vertically into one figure.
 *
 * @example
 * ```ts
 * const svg = await renderSvg(vconcat(lineSpec(a), barSpec(b)));
 * ```
 */
export function vconcat(...specs: VegaLiteSpec[]): VegaLiteSpec {
  return { vconcat: specs, resolve: { scale: { color: "independent" } } };
}
