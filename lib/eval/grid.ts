// The evaluation grid: every cell (checkpoint x task x length x depth x sample) with a stable key for
// the results store, and a seed per cell so prompts do not depend on grid order or on resuming.

import { ConfigError } from "../errors.ts";

/** The evaluation tasks. */
export type EvalTask = "ppl" | "passkey" | "niah";

/** One unit of work whose result is stored. `depth` is null for perplexity. */
export interface Cell {
  checkpoint: string;
  /** "ppl", "passkey", or a NIAH task name. */
  task: string;
  length: number;
  depth: number | null;
  sample: number;
}

/** Depths used when none are given: 0%, 10%, ..., 100% (as in the paper's Figure 2). */
export const DEFAULT_DEPTHS = Array.from({ length: 11 }, (_, i) => i / 10);

/**
 * The key of a cell in results.jsonl. `variant` names the settings that change a cell's content
 * (seed, data file, stride, ...), so results made with other settings are never reused.
 *
 * @example
 * ```ts
 * cellKey({ checkpoint: "a", task: "passkey", length: 4096, depth: 0.5, sample: 0 }, "seed=1");
 * // "a|passkey|4096|0.5|0|seed=1"
 * ```
 */
export function cellKey(cell: Cell, variant: string): string {
  return [cell.checkpoint, cell.task, cell.length, cell.depth ?? "-", cell.sample, variant].join("|");
}

/** 32-bit FNV-1a hash of a string. */
export function hashString(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

/**
 * The seed of a cell's prompt: the same for every checkpoint, so checkpoints answer the same prompts.
 *
 * @example
 * ```ts
 * const rng = new Rng(cellSeed(42, "niah_single_1", 4096, 0.5, 3));
 * ```
 */
export function cellSeed(seed: number, task: string, length: number, depth: number, sample: number): number {
  return hashString(`${seed}|${task}|${length}|${depth}|${sample}`);
}

/**
 * Every cell of a grid, in the order they are run: checkpoint, task, length (short first), depth, sample.
 *
 * @example
 * ```ts
 * gridCells({ checkpoints: ["a"], tasks: ["passkey"], lengths: [64], depths: [0, 1], samples: 2 }).length; // 4
 * ```
 */
export function gridCells(
  grid: {
    checkpoints: string[];
    tasks: string[];
    lengths: number[];
    depths: (number | null)[];
    samples: number;
  },
): Cell[] {
  const cells: Cell[] = [];
  for (const checkpoint of grid.checkpoints) {
    for (const task of grid.tasks) {
      for (const length of grid.lengths) {
        for (const depth of grid.depths) {
          for (let sample = 0; sample < grid.samples; sample++) {
            cells.push({ checkpoint, task, length, depth, sample });
          }
        }
      }
    }
  }
  return cells;
}

/** Parses depths like "0,0.25,0.5" or percentages "0%,50%,100%" into fractions 0..1. */
export function parseDepths(spec: string): number[] {
  const depths = spec.split(",").map((item) => {
    const text = item.trim();
    const value = text.endsWith("%") ? Number(text.slice(0, -1)) / 100 : Number(text);
    if (text === "" || !Number.isFinite(value) || value < 0 || value > 1) {
      throw new ConfigError(`Cannot parse depth "${text}" in "${spec}"`, {
        field: "depths",
        actual: spec,
        hint: "depths are fractions 0..1 or percentages, e.g. 0,0.5,1 or 0%,50%,100%",
      });
    }
    return value;
  });
  return [...new Set(depths)].sort((a, b) => a - b);
}
