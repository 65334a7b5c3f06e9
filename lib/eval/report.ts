// Writes what an evaluation produced into its output folder: CSV files per task and cell, the
// summary tables (Table 4 layout: tasks x lengths + average) and report.md comparing the checkpoints,
// with the plots beside it (ppl.svg/png, heatmaps) when a plotter is given.

import { writeTextFileAtomically } from "../util/atomic.ts";
import { toCsv } from "./csv.ts";
import { formatLength } from "./lengths.ts";
import type { CellResult } from "./results_store.ts";
import { type AverageTable, averageTable, depthGrid, pplPoints, scorePoints } from "./summary.ts";

/** Draws the report's figures; returns the file names written (relative to the folder). */
export interface ReportPlotter {
  /** A value vs context length, one line per checkpoint. */
  lines(dir: string, name: string, spec: LinePlot): Promise<string[]>;
  /** Score by length (x) and depth (y). */
  heatmap(dir: string, name: string, spec: HeatmapPlot): Promise<string[]>;
}

/** A line plot: one series per checkpoint. */
export interface LinePlot {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Log-scaled y axis (perplexities of a model past its context grow by orders of magnitude). */
  logY?: boolean;
  series: { name: string; points: { x: number; y: number }[] }[];
}

/** A heatmap of scores 0..100. */
export interface HeatmapPlot {
  title: string;
  cells: { length: number; depth: number; score: number }[];
}

/** What the report describes besides the results. */
export interface ReportInfo {
  checkpoints: string[];
  /** Lines of settings shown at the top (e.g. "seed: 0"). */
  settings: string[];
}

/** A file-name-safe label for a checkpoint path (unique among `all`). */
export function checkpointSlug(checkpoint: string, all: string[]): string {
  const slug = (path: string) =>
    path.replace(/\/+$/, "").split("/").slice(-2).join("_").replace(/[^A-Za-z0-9._-]/g, "_");
  const mine = slug(checkpoint);
  const clash = all.filter((c) => slug(c) === mine);
  return clash.length > 1 ? `${mine}-${clash.indexOf(checkpoint) + 1}` : mine;
}

function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "-";
}

function markdownTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map((_, i) => (i === 0 ? "---" : "---:"))), ...rows.map(line)].join("\n");
}

/** Markdown of an average table, with an "Avg" row when `withAverageRow`. */
export function averageMarkdown(table: AverageTable, first: string, withAverageRow: boolean): string {
  const header = [first, ...table.lengths.map(formatLength), "Avg"];
  const rows = table.rows.map((row, i) => [row, ...table.values[i].map((v) => fixed(v, 2))]);
  if (withAverageRow) {
    const columns = table.values[0]?.length ?? 0;
    const averages = Array.from({ length: columns }, (_, j) => {
      const column = table.values.map((r) => r[j]).filter(Number.isFinite);
      return column.reduce((a, b) => a + b, 0) / column.length;
    });
    rows.push(["**Avg**", ...averages.map((v) => fixed(v, 2))]);
  }
  return markdownTable(header, rows);
}

async function pplSection(dir: string, results: CellResult[], plotter?: ReportPlotter): Promise<string[]> {
  const points = pplPoints(results);
  if (points.length === 0) return [];
  await writeTextFileAtomically(
    `${dir}/ppl.csv`,
    toCsv(
      ["checkpoint", "length", "ppl", "tokens"],
      points.map((p) => [p.checkpoint, p.length, p.ppl, p.tokens]),
    ),
  );
  const checkpoints = [...new Set(points.map((p) => p.checkpoint))];
  const lengths = [...new Set(points.map((p) => p.length))].sort((a, b) => a - b);
  const rows = checkpoints.map((c) => [
    c,
    ...lengths.map((l) => fixed(points.find((p) => p.checkpoint === c && p.length === l)?.ppl ?? NaN, 3)),
  ]);
  const lines = [
    "## Perplexity (sliding window)",
    "",
    markdownTable(["checkpoint", ...lengths.map(formatLength)], rows),
    "",
  ];
  if (plotter) {
    const files = await plotter.lines(dir, "ppl", {
      title: "Perplexity vs context length",
      xLabel: "context length (tokens)",
      yLabel: "perplexity (log scale)",
      logY: true,
      series: checkpoints.map((c) => ({
        name: c,
        points: points.filter((p) => p.checkpoint === c).map((p) => ({ x: p.length, y: p.ppl })),
      })),
    });
    lines.push(
      ...files.filter((f) => f.endsWith(".png")).map((f) => `![Perplexity vs context length](${f})`),
      "",
    );
  }
  lines.push("Data: `ppl.csv` (exp of the mean NLL over every scored token).", "");
  return lines;
}

async function retrievalSection(
  dir: string,
  task: "passkey" | "niah",
  results: CellResult[],
  checkpoints: string[],
  plotter?: ReportPlotter,
): Promise<string[]> {
  const points = scorePoints(results.filter((r) => (task === "passkey") === (r.task === "passkey")));
  if (points.length === 0) return [];
  await writeTextFileAtomically(
    `${dir}/${task}.csv`,
    toCsv(
      ["checkpoint", "task", "length", "depth", "samples", "score"],
      points.map((p) => [p.checkpoint, p.task, p.length, p.depth, p.samples, p.score]),
    ),
  );
  const title = task === "passkey" ? "Passkey retrieval" : "Needle in a haystack (RULER-style tasks)";
  const comparison = averageTable(points, (p) => p.checkpoint);
  await writeTextFileAtomically(`${dir}/${task}_summary.csv`, summaryCsv(comparison, "checkpoint"));
  const lines = [`## ${title}`, "", "Score in % (exact match), averaged over depths and samples.", ""];
  lines.push(averageMarkdown(comparison, "checkpoint", false), "");
  if (plotter) {
    const files = await plotter.lines(dir, `${task}_by_length`, {
      title: `${title}: score vs context length`,
      xLabel: "context length (tokens)",
      yLabel: "score %",
      series: comparison.rows.map((row, i) => ({
        name: row,
        points: comparison.lengths.map((length, j) => ({ x: length, y: comparison.values[i][j] })),
      })),
    });
    lines.push(...files.filter((f) => f.endsWith(".png")).map((f) => `![${title} by length](${f})`), "");
  }
  for (const checkpoint of checkpoints) {
    const mine = points.filter((p) => p.checkpoint === checkpoint);
    if (mine.length === 0) continue;
    const slug = checkpointSlug(checkpoint, checkpoints);
    lines.push(`### ${checkpoint}`, "");
    if (task === "niah") {
      const perTask = averageTable(mine, (p) => p.task);
      await writeTextFileAtomically(`${dir}/niah_summary_${slug}.csv`, summaryCsv(perTask, "task"));
      lines.push(averageMarkdown(perTask, "task", true), "");
    }
    if (plotter) {
      const files = await plotter.heatmap(dir, `${task}_heatmap_${slug}`, {
        title: `${task}: ${checkpoint}`,
        cells: depthGrid(points, checkpoint),
      });
      lines.push(
        ...files.filter((f) => f.endsWith(".png")).map((f) => `![${task} heatmap of ${checkpoint}](${f})`),
        "",
      );
    }
  }
  lines.push(
    `Data: \`${task}.csv\` (one row per checkpoint, task, length and depth), \`results.jsonl\` (every sample).`,
    "",
  );
  return lines;
}

function summaryCsv(table: AverageTable, first: string): string {
  return toCsv(
    [first, ...table.lengths.map(String), "avg"],
    table.rows.map((row, i) => [row, ...table.values[i]]),
  );
}

/**
 * Writes CSV files, plots (when `plotter` is given) and report.md for `results` into `dir`.
 *
 * @example
 * ```ts
 * await writeReport("report", run.results, { checkpoints, settings: ["seed: 0"] });
 * ```
 */
export async function writeReport(
  dir: string,
  results: CellResult[],
  info: ReportInfo,
  plotter?: ReportPlotter,
): Promise<void> {
  const lines = [
    "# harpe evaluation",
    "",
    "Checkpoints:",
    "",
    ...info.checkpoints.map((c) => `- \`${c}\``),
    "",
  ];
  lines.push("Settings:", "", ...info.settings.map((s) => `- ${s}`), "");
  lines.push(...await pplSection(dir, results, plotter));
  lines.push(...await retrievalSection(dir, "passkey", results, info.checkpoints, plotter));
  lines.push(...await retrievalSection(dir, "niah", results, info.checkpoints, plotter));
  await writeTextFileAtomically(`${dir}/report.md`, lines.join("\n"));
}
