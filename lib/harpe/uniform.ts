// Evenly spaced bases (paper Eq. 9) and log-evenly spaced bases (geometric), in ascending or
// descending head order.

import { ShapeError } from "../errors.ts";

/** Head order of a spaced schedule: head 0 gets b_min (`asc`) or b_max (`desc`). */
export type HeadOrder = "asc" | "desc";

/** Options of {@link uniformBases} and {@link geometricBases}. */
export interface SpacedOptions {
  bMin: number;
  bMax: number;
  /** Default `asc`. */
  order?: HeadOrder;
}

/** Checks a base range: positive finite bounds with b_min <= b_max. */
export function checkRange(bMin: number, bMax: number): void {
  if (!(Number.isFinite(bMin) && bMin > 0 && Number.isFinite(bMax) && bMax > 0)) {
    throw new ShapeError(`Base range ${bMin}..${bMax} must hold positive finite numbers`, {
      field: "b_min/b_max",
      actual: [bMin, bMax],
      hint: "pass e.g. --b-min 1e6 --b-max 5e6",
    });
  }
  if (bMin > bMax) {
    throw new ShapeError(`b_min ${bMin} is larger than b_max ${bMax}`, {
      field: "b_min",
      expected: `<= ${bMax}`,
      actual: bMin,
      hint: "swap --b-min and --b-max",
    });
  }
}

/** Checks a head count: a positive integer. */
export function checkCount(count: number): void {
  if (!Number.isInteger(count) || count < 1) {
    throw new ShapeError(`Head count ${count} must be a positive integer`, { field: "heads", actual: count });
  }
}

function ordered(bases: number[], order: HeadOrder): number[] {
  return order === "desc" ? bases.reverse() : bases;
}

/**
 * Paper Eq. 9: b_h = b_min + h * (b_max - b_min) / (N - 1), h = 0..N-1 (one head: b_min).
 *
 * @example
 * ```ts
 * uniformBases(3, { bMin: 1e6, bMax: 5e6 }); // [1e6, 3e6, 5e6]
 * uniformBases(3, { bMin: 1e6, bMax: 5e6, order: "desc" }); // [5e6, 3e6, 1e6]
 * ```
 */
export function uniformBases(count: number, options: SpacedOptions): number[] {
  checkCount(count);
  checkRange(options.bMin, options.bMax);
  const { bMin, bMax } = options;
  const bases = Array.from(
    { length: count },
    (_, h) => count === 1 ? bMin : (h === count - 1 ? bMax : bMin + (h * (bMax - bMin)) / (count - 1)),
  );
  return ordered(bases, options.order ?? "asc");
}

/**
 * Log-uniform spacing: b_h = b_min * (b_max / b_min)^(h / (N - 1)) (one head: b_min).
 *
 * @example
 * ```ts
 * geometricBases(3, { bMin: 1e4, bMax: 1e6 }); // [1e4, 1e5, 1e6] (up to rounding)
 * ```
 */
export function geometricBases(count: number, options: SpacedOptions): number[] {
  checkCount(count);
  checkRange(options.bMin, options.bMax);
  const { bMin, bMax } = options;
  const bases = Array.from(
    { length: count },
    (_, h) => count === 1 ? bMin : (h === count - 1 ? bMax : bMin * Math.pow(bMax / bMin, h / (count - 1))),
  );
  return ordered(bases, options.order ?? "asc");
}
