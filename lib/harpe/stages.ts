// The "stages" schedule: the bases of a multi-stage ABF recipe (e.g. 32k:1e6, 64k:2e6, 128k:5e6)
// spread over contiguous head groups, optionally with one group kept at the original base.

import { ConfigError, ShapeError } from "../errors.ts";
import { parseLength } from "../util/length.ts";
import { checkCount } from "./uniform.ts";

/** One stage of a multi-stage recipe: train at `length` tokens with RoPE base `base`. */
export interface Stage {
  length: number;
  base: number;
}

/**
 * Parses a stage list "32k:1e6,64k:2e6,128k:5e6" (lengths accept 131072, 128k, 128K).
 *
 * @example
 * ```ts
 * parseStages("32k:1e6,128k:5e6"); // [{length: 32768, base: 1e6}, {length: 131072, base: 5e6}]
 * ```
 */
export function parseStages(text: string): Stage[] {
  const items = text.split(",").map((item) => item.trim()).filter((item) => item.length > 0);
  if (items.length === 0) {
    throw new ConfigError(`Stage list "${text}" is empty`, {
      field: "stages",
      hint: 'write it as LENGTH:BASE pairs, e.g. "32k:1e6,64k:2e6,128k:5e6"',
    });
  }
  return items.map((item) => {
    const parts = item.split(":");
    const base = Number(parts[1]);
    if (parts.length !== 2 || !Number.isFinite(base) || base <= 0) {
      throw new ConfigError(`Stage "${item}" is not LENGTH:BASE with a positive base`, {
        field: "stages",
        actual: item,
        hint: 'write it as LENGTH:BASE pairs, e.g. "32k:1e6,64k:2e6,128k:5e6"',
      });
    }
    return { length: parseLength(parts[0], { field: "stages" }), base };
  });
}

/** Options of {@link stageBases}. */
export interface StageOptions {
  stages: Stage[];
  /** Also keep one head group at this base (the checkpoint's original base), placed first. */
  keepOriginal?: number;
}

/**
 * Splits N heads into contiguous groups, one per stage (plus one at the original base when
 * `keepOriginal` is given, first), in ascending stage order; group sizes differ by at most one, the
 * earlier groups taking the extra heads.
 *
 * @example
 * ```ts
 * stageBases(4, { stages: parseStages("32k:1e6,128k:5e6") }); // [1e6, 1e6, 5e6, 5e6]
 * ```
 */
export function stageBases(count: number, options: StageOptions): number[] {
  checkCount(count);
  const stages = [...options.stages].sort((a, b) => a.length - b.length || a.base - b.base);
  const groups = options.keepOriginal === undefined
    ? stages.map((stage) => stage.base)
    : [options.keepOriginal, ...stages.map((stage) => stage.base)];
  if (groups.length > count) {
    throw new ShapeError(`${groups.length} stage groups do not fit ${count} heads`, {
      field: "stages",
      expected: `<= ${count} groups`,
      actual: groups.length,
      hint: "use fewer stages, or drop --keep-original",
    });
  }
  const bases: number[] = [];
  const small = Math.floor(count / groups.length);
  const extra = count % groups.length;
  groups.forEach((base, g) => {
    for (let h = 0; h < small + (g < extra ? 1 : 0); h++) bases.push(base);
  });
  return bases;
}
