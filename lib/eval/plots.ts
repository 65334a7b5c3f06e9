// Draws the report's figures with lib/plot, each as SVG and PNG beside report.md: line charts (one
// line per checkpoint, log-scaled context length) and score heatmaps (x: length, y: depth).

import { heatmap, lineChart, writePlot } from "../plot/mod.ts";
import { formatLength } from "./lengths.ts";
import type { HeatmapPlot, LinePlot, ReportPlotter } from "./report.ts";

async function writeBoth(dir: string, name: string, svg: string): Promise<string[]> {
  await writePlot(`${dir}/${name}.svg`, svg);
  await writePlot(`${dir}/${name}.png`, svg);
  return [`${name}.svg`, `${name}.png`];
}

/** Formats a depth fraction as a percentage label, e.g. 0.25 -> "25%". */
export function depthLabel(depth: number): string {
  return `${Math.round(depth * 1000) / 10}%`;
}

/**
 * The plotter `writeReport` uses to draw its figures.
 *
 * @example
 * ```ts
 * await writeReport("report", results, info, reportPlotter());
 * ```
 */
export function reportPlotter(): ReportPlotter {
  return {
    async lines(dir: string, name: string, spec: LinePlot) {
      return writeBoth(dir, name, await lineChart({ ...spec, logX: true }));
    },
    async heatmap(dir: string, name: string, spec: HeatmapPlot) {
      const lengths = [...new Set(spec.cells.map((c) => c.length))].sort((a, b) => a - b);
      const depths = [...new Set(spec.cells.map((c) => c.depth))].sort((a, b) => a - b);
      const values = depths.map((depth) =>
        lengths.map((length) =>
          spec.cells.find((c) => c.length === length && c.depth === depth)?.score ?? NaN
        )
      );
      const svg = await heatmap({
        title: spec.title,
        xLabel: "context length (tokens)",
        yLabel: "needle depth",
        x: lengths.map(formatLength),
        y: depths.map(depthLabel),
        values,
        colorLabel: "score %",
        domain: [0, 100],
      });
      return writeBoth(dir, name, svg);
    },
  };
}
