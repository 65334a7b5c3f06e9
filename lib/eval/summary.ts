// Aggregates cell results into the numbers a report shows: perplexity per checkpoint and length,
// retrieval scores (in %) per checkpoint, task, length and depth, and Table-4-style averages.

import type { CellResult } from "./results_store.ts";

/** Perplexity of one checkpoint at one length: exp(total NLL / tokens) over every sample text. */
export interface PplPoint {
  checkpoint: string;
  length: number;
  ppl: number;
  tokens: number;
}

/** Mean retrieval score (0..100) of one group of cells. */
export interface ScorePoint {
  checkpoint: string;
  task: string;
  length: number;
  depth: number;
  samples: number;
  score: number;
}

function groupBy<T>(items: T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    groups.set(k, [...(groups.get(k) ?? []), item]);
  }
  return groups;
}

/** Mean of numbers (NaN for none). */
export function mean(values: number[]): number {
  return values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

/**
 * Perplexity per checkpoint and length from "ppl" results (score = mean NLL of a sample text).
 *
 * @example
 * ```ts
 * pplPoints(results); // [{ checkpoint: "a", length: 4096, ppl: 7.9, tokens: 4095 }, ...]
 * ```
 */
export function pplPoints(results: CellResult[]): PplPoint[] {
  const groups = groupBy(results.filter((r) => r.task === "ppl"), (r) => `${r.checkpoint}\u0000${r.length}`);
  return [...groups.values()].map((group) => {
    const tokens = group.reduce((n, r) => n + (r.tokens ?? 0), 0);
    const nll = group.reduce((n, r) => n + r.score * (r.tokens ?? 0), 0);
    return { checkpoint: group[0].checkpoint, length: group[0].length, ppl: Math.exp(nll / tokens), tokens };
  });
}

/**
 * Mean score in % per checkpoint, task, length and depth (over samples), for passkey and NIAH results.
 *
 * @example
 * ```ts
 * scorePoints(results); // [{ checkpoint: "a", task: "passkey", length: 4096, depth: 0.5, samples: 4, score: 75 }]
 * ```
 */
export function scorePoints(results: CellResult[]): ScorePoint[] {
  const groups = groupBy(
    results.filter((r) => r.task !== "ppl"),
    (r) => [r.checkpoint, r.task, r.length, r.depth].join("\u0000"),
  );
  return [...groups.values()].map((group) => ({
    checkpoint: group[0].checkpoint,
    task: group[0].task,
    length: group[0].length,
    depth: group[0].depth ?? 0,
    samples: group.length,
    score: 100 * mean(group.map((r) => r.score)),
  }));
}

/** A table of averages: rows x lengths, with an "Avg" column (mean over lengths). */
export interface AverageTable {
  rows: string[];
  lengths: number[];
  /** values[row][length index], then the row average last. */
  values: number[][];
}

/**
 * Averages score points into rows (e.g. tasks of one checkpoint, or checkpoints) x lengths; each
 * cell is the mean over depths (and over the tasks grouped into the row).
 *
 * @example
 * ```ts
 * averageTable(points, (p) => p.task); // the paper's Table 4 layout for one checkpoint
 * ```
 */
export function averageTable(points: ScorePoint[], rowOf: (point: ScorePoint) => string): AverageTable {
  const rows = [...new Set(points.map(rowOf))];
  const lengths = [...new Set(points.map((p) => p.length))].sort((a, b) => a - b);
  const values = rows.map((row) => {
    const cells = lengths.map((length) => {
      const group = points.filter((p) => rowOf(p) === row && p.length === length);
      const byTask = groupBy(group, (p) => p.task);
      return mean([...byTask.values()].map((ps) => mean(ps.map((p) => p.score))));
    });
    return [...cells, mean(cells)];
  });
  return { rows, lengths, values };
}

/** The score of every (length, depth) of one checkpoint, averaged over tasks and samples: a heatmap. */
export function depthGrid(
  points: ScorePoint[],
  checkpoint: string,
): { length: number; depth: number; score: number }[] {
  const mine = points.filter((p) => p.checkpoint === checkpoint);
  const groups = groupBy(mine, (p) => `${p.length}\u0000${p.depth}`);
  return [...groups.values()].map((group) => ({
    length: group[0].length,
    depth: group[0].depth,
    score: mean(group.map((p) => p.score)),
  })).sort((a, b) => a.length - b.length || a.depth - b.depth);
}
