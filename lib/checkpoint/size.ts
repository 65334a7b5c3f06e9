// Human byte sizes such as "5GB", "500MB" or "2GiB" (decimal units as Hugging Face's max_shard_size,
// binary units with "i"), parsed to a byte count.

import { ConfigError } from "../errors.ts";

/** Bytes per unit, upper-cased. */
const UNITS: Readonly<Record<string, number>> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KIB: 2 ** 10,
  MIB: 2 ** 20,
  GIB: 2 ** 30,
  TIB: 2 ** 40,
};

const SIZE_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i;

/**
 * Parses a size: a number of bytes, or a number with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB; any
 * case). Throws ConfigError naming `options.field` (e.g. "--shard-size") when it is not a positive size.
 *
 * @example
 * ```ts
 * parseSize("5GB"); // 5000000000
 * parseSize("2GiB"); // 2147483648
 * ```
 */
export function parseSize(text: string, options: { field?: string } = {}): number {
  const field = options.field ?? "size";
  const match = SIZE_PATTERN.exec(text);
  const unit = match ? UNITS[(match[2] || "B").toUpperCase()] : undefined;
  const bytes = match && unit ? Math.floor(Number(match[1]) * unit) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes < 1) {
    throw new ConfigError(`${field} "${text}" is not a size`, {
      field,
      actual: text,
      hint: "write a positive size such as 5GB, 500MB or 2GiB",
    });
  }
  return bytes;
}
