// Token lengths as users write them: 131072, 128k, 128K, 1m (k = 1024 tokens, m = 1024k).
// (Lists and ranges of lengths for evaluation grids live in lib/eval/lengths.ts.)

import { ConfigError } from "../errors.ts";

const UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 * 1024 };

/** Longest length accepted (16m tokens): guards against typos like 128kk or 1e12. */
export const MAX_LENGTH = 16 * 1024 * 1024;

/**
 * Parses a token length: a positive integer, optionally with a k (x1024) or m (x1048576) suffix.
 *
 * @example
 * ```ts
 * parseLength("128k"); // 131072
 * parseLength("4096"); // 4096
 * ```
 */
export function parseLength(text: string, options: { field?: string } = {}): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$/.exec(text);
  const value = match ? Number(match[1]) * UNITS[match[2].toLowerCase()] : NaN;
  if (!Number.isInteger(value) || value <= 0 || value > MAX_LENGTH) {
    throw new ConfigError(
      `${options.field ?? "Length"} "${text}" is not a whole number of tokens from 1 to 16m`,
      {
        field: options.field,
        actual: text,
        hint: "write e.g. 131072, 128k or 128K",
      },
    );
  }
  return value;
}
