// The `auto` base range: b_min and b_max derived from the original base, original context length,
// rotary dims and target length through the critical-dimension rule of RoPE scaling laws
// (Liu et al. 2023, "Scaling Laws of RoPE-based Extrapolation"):
//   - the critical pair d_c = 2 * ceil((R/2) * log_{b0}(L0 / 2pi)) is the first (slowest) rotary pair
//     whose wavelength 2pi * b0^(d_c/R) the original model never saw complete within L0 tokens;
//   - a base b lets that pair's wavelength cover L tokens when 2pi * b^(d_c/R) >= L, i.e.
//     b(L) = (L / 2pi)^(R / d_c);
//   - b_min = b(target) (the smallest base whose critical pair spans the whole target context) and
//     b_max = b(AUTO_SPAN * target) (headroom for the far-seeing heads), both at least b0 and
//     rounded to two significant digits.
// Llama2-7B (b0 1e4, L0 4096, R 128) -> 128k: d_c = 92, b_min 1.0e6, b_max 7.0e6 (paper: 1e6..5e6).

import { ShapeError } from "../errors.ts";

/** b_max covers this many times the target length with the critical pair. */
export const AUTO_SPAN = 4;
/** The automatic stride puts about this many candidates per head on the peak-valley grid. */
export const AUTO_CANDIDATES_PER_HEAD = 4;

/** What the automatic range is computed from. */
export interface AutoRangeInput {
  originalBase: number;
  originalLength: number;
  rotaryDim: number;
  targetLength: number;
}

/** The automatic range and the critical rotary pair it came from. */
export interface AutoRange {
  bMin: number;
  bMax: number;
  /** d_c: rotary dims below it complete a period within the original context. */
  criticalDim: number;
}

/**
 * Computes b_min and b_max by the critical-dimension rule (see the file comment).
 *
 * @example
 * ```ts
 * autoRange({ originalBase: 1e4, originalLength: 4096, rotaryDim: 128, targetLength: 131072 });
 * // { bMin: 1e6, bMax: 7e6, criticalDim: 92 }
 * ```
 */
export function autoRange(input: AutoRangeInput): AutoRange {
  const { originalBase, originalLength, rotaryDim, targetLength } = input;
  if (!(originalBase > 1 && originalLength > 2 * Math.PI && rotaryDim >= 2 && targetLength > 0)) {
    throw new ShapeError(
      `Cannot derive bases automatically from base ${originalBase}, context ${originalLength}, R ${rotaryDim}`,
      { field: "schedule", hint: "pass --b-min and --b-max, or use another schedule" },
    );
  }
  const half = rotaryDim / 2;
  const pairs = Math.ceil(half * (Math.log(originalLength / (2 * Math.PI)) / Math.log(originalBase)));
  const criticalDim = Math.min(rotaryDim, Math.max(2, 2 * pairs));
  const baseFor = (length: number) => Math.pow(length / (2 * Math.PI), rotaryDim / criticalDim);
  const bMin = Math.max(originalBase, roundSignificant(baseFor(targetLength)));
  const bMax = Math.max(bMin, roundSignificant(baseFor(AUTO_SPAN * targetLength)));
  return { bMin, bMax, criticalDim };
}

/** Rounds to two significant digits (1022121.9 -> 1000000). */
function roundSignificant(value: number): number {
  const scale = Math.pow(10, Math.floor(Math.log10(value)) - 1);
  return Math.round(value / scale) * scale;
}

/**
 * The peak-valley stride of the `auto` schedule: (b_max - b_min) / (AUTO_CANDIDATES_PER_HEAD * N),
 * rounded to two significant digits.
 *
 * @example
 * ```ts
 * autoStride(1e6, 5e6, 32); // 31000
 * ```
 */
export function autoStride(bMin: number, bMax: number, count: number): number {
  const raw = (bMax - bMin) / (AUTO_CANDIDATES_PER_HEAD * count);
  if (!(raw > 0)) return Math.max(1, bMin / 1000);
  return roundSignificant(raw);
}
