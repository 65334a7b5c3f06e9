// Context lengths for evaluation grids: parses `4k..128k` (powers of two from 4k to 128k), lists like
// `2k,4k,8k` and plain numbers, and prints lengths back in the short form (4096 -> "4k").

import { ConfigError } from "../errors.ts";

/** Tokens in one "k" of a length like `4k`. */
export const TOKENS_PER_K = 1024;
/** Longest context length accepted (16M tokens): guards against typos like `128kk` or `1e12`. */
export const MAX_EVAL_LENGTH = 16 * 1024 * 1024;

const LENGTH_PATTERN = /^(\d+)(k|m)?$/i;

function parseOne(text: string, spec: string): number {
  const match = LENGTH_PATTERN.exec(text.trim());
  if (!match) {
    throw new ConfigError(`Cannot parse length "${text}" in "${spec}"`, {
      field: "lengths",
      actual: spec,
      hint: "use numbers like 4096 or 4k, a list like 2k,4k,8k, or a range of powers of two like 4k..128k",
    });
  }
  const unit = match[2]?.toLowerCase();
  const value = Number(match[1]) * (unit === "k" ? TOKENS_PER_K : unit === "m" ? TOKENS_PER_K ** 2 : 1);
  if (value < 2 || value > MAX_EVAL_LENGTH) {
    throw new ConfigError(`Length ${text} in "${spec}" is out of range`, {
      field: "lengths",
      expected: `2..${MAX_EVAL_LENGTH}`,
      actual: value,
      hint: "lengths are token counts between 2 and 16m",
    });
  }
  return value;
}

/**
 * Parses a length specification into a sorted list of distinct token counts. `A..B` is every power
 * of two from A to B (A and B powers of two); comma-separated items may mix single lengths and ranges.
 *
 * @example
 * ```ts
 * parseLengths("4k..32k"); // [4096, 8192, 16384, 32768]
 * parseLengths("2k,3000");  // [2048, 3000]
 * ```
 */
export function parseLengths(spec: string): number[] {
  const lengths = new Set<number>();
  const items = spec.split(",").map((item) => item.trim());
  if (items.some((item) => item === "")) {
    throw new ConfigError(`Empty item in lengths "${spec}"`, {
      field: "lengths",
      actual: spec,
      hint: "e.g. 2k,4k,8k",
    });
  }
  for (const item of items) {
    const range = item.split("..");
    if (range.length === 1) {
      lengths.add(parseOne(item, spec));
      continue;
    }
    if (range.length !== 2) {
      throw new ConfigError(`Cannot parse range "${item}" in "${spec}"`, {
        field: "lengths",
        hint: "e.g. 4k..128k",
      });
    }
    const [from, to] = range.map((part) => parseOne(part, spec));
    const isPowerOfTwo = (n: number) => (n & (n - 1)) === 0;
    if (!isPowerOfTwo(from) || !isPowerOfTwo(to) || from > to) {
      throw new ConfigError(`Range "${item}" must go from a power of two up to a larger power of two`, {
        field: "lengths",
        actual: item,
        hint: "e.g. 4k..128k; list other lengths with commas: 3k,6k",
      });
    }
    for (let n = from; n <= to; n *= 2) lengths.add(n);
  }
  return [...lengths].sort((a, b) => a - b);
}

/**
 * Writes a length in the short form used in tables and plots: multiples of 1024 as `Nk`.
 *
 * @example
 * ```ts
 * formatLength(131072); // "128k"
 * formatLength(100);    // "100"
 * ```
 */
export function formatLength(length: number): string {
  return length % TOKENS_PER_K === 0 ? `${length / TOKENS_PER_K}k` : String(length);
}
