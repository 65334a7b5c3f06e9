// Peak-valley base search (paper Eq. 10 + Algorithm 1), with our definition of the waveform's peaks
// and valleys (the paper leaves it open):
//   - the waveform w_b(m) (rope.ts) is sampled at m = start, start + step, ..., <= end;
//   - the window is [0, target length] (the distances the model must handle after extension),
//     sampled every window/8192 tokens;
//   - sample m is a PEAK when it is above both neighbouring samples and no sample within
//     +-neighbourhood tokens (default window/64) is higher (a VALLEY: below both neighbours, none lower);
//   - the distance from a point set A to a point set S is the mean over a in A of the distance from a
//     to the nearest point of S;
//   - greedy: B_s = {b_min}; repeatedly add the candidate b_min + i*stride (not yet taken) that
//     minimizes d(peaks_b, valleys(B_s)) + d(valleys_b, peaks(B_s)); ties go to the smaller base.
// The defaults were tuned against the paper's Table 2 (bench/peak_valley_fit.ts; README).

import { ShapeError } from "../errors.ts";
import { waveformOnGrid } from "./rope.ts";
import { checkCount, checkRange } from "./uniform.ts";

/** Where and how finely the waveform is searched for peaks and valleys (all in tokens). */
export interface ExtremaDefinition {
  /** First relative distance of the window. */
  windowStart: number;
  /** Last relative distance of the window. */
  windowEnd: number;
  /** Tokens between waveform samples. */
  sampleStep: number;
  /** A peak (valley) is the highest (lowest) sample within +-neighbourhood tokens. */
  neighbourhood: number;
}

/** Default window end when no target length is given (the paper's 128k). */
export const DEFAULT_WINDOW_END = 131072;
/** Default sampling: this many samples across the window (step 16 tokens for 128k). */
export const SAMPLES_PER_WINDOW = 8192;
/** Default neighbourhood: this fraction of the window on each side (2048 tokens for 128k). */
export const NEIGHBOURHOOD_FRACTION = 1 / 64;

/**
 * Fills the tuned defaults (README "Planning and conversion"): window [0, 131072] (`harpe plan`
 * uses [0, target length]), sample step = window / 8192 and neighbourhood = window / 64, rounded.
 *
 * @example
 * ```ts
 * extremaDefinition({ windowEnd: 131072 }); // { windowStart: 0, windowEnd: 131072, sampleStep: 16, neighbourhood: 2048 }
 * ```
 */
export function extremaDefinition(partial: Partial<ExtremaDefinition> = {}): ExtremaDefinition {
  const windowStart = partial.windowStart ?? 0;
  const windowEnd = partial.windowEnd ?? DEFAULT_WINDOW_END;
  const span = windowEnd - windowStart;
  const sampleStep = partial.sampleStep ?? Math.max(1, Math.round(span / SAMPLES_PER_WINDOW));
  const neighbourhood = partial.neighbourhood ??
    Math.max(sampleStep, Math.round(span * NEIGHBOURHOOD_FRACTION));
  return { windowStart, windowEnd, sampleStep, neighbourhood };
}

/** Most candidates a search accepts ((b_max - b_min) / stride + 1). */
export const MAX_CANDIDATES = 20000;
/** Most waveform samples per candidate ((windowEnd - windowStart) / sampleStep + 1). */
export const MAX_SAMPLES = 1 << 20;

/** Peak and valley positions (relative distances, ascending) of one base's waveform. */
export interface Extrema {
  peaks: Float64Array;
  valleys: Float64Array;
}

/** Options of {@link peakValleyBases}. */
export interface PeakValleyOptions extends Partial<ExtremaDefinition> {
  bMin: number;
  bMax: number;
  stride: number;
  /** Rotated dims per head (R). */
  rotaryDim: number;
}

/**
 * The candidate grid b_min + i*stride, i = 0, 1, ... while <= b_max.
 *
 * @example
 * ```ts
 * candidateGrid({ bMin: 1e6, bMax: 1.1e6, stride: 3e4 }); // [1e6, 1.03e6, 1.06e6, 1.09e6]
 * ```
 */
export function candidateGrid(range: { bMin: number; bMax: number; stride: number }): number[] {
  const { bMin, bMax, stride } = range;
  checkRange(bMin, bMax);
  if (!(Number.isFinite(stride) && stride > 0)) {
    throw new ShapeError(`Stride ${stride} must be a positive number`, {
      field: "stride",
      actual: stride,
      hint: "pass e.g. --stride 3e4",
    });
  }
  const count = Math.floor((bMax - bMin) / stride + 1e-9) + 1;
  if (count > MAX_CANDIDATES) {
    throw new ShapeError(`${count} candidate bases are too many for the peak-valley search`, {
      field: "stride",
      expected: `<= ${MAX_CANDIDATES} candidates`,
      actual: count,
      hint: "use a larger --stride",
    });
  }
  return Array.from({ length: count }, (_, i) => bMin + i * stride);
}

function checkDefinition(def: ExtremaDefinition): void {
  const { windowStart, windowEnd, sampleStep, neighbourhood } = def;
  const ok = windowStart >= 0 && windowEnd > windowStart && sampleStep > 0 && neighbourhood >= 0 &&
    [windowStart, windowEnd, sampleStep, neighbourhood].every(Number.isFinite);
  if (!ok) {
    throw new ShapeError(
      `Peak-valley window ${windowStart}..${windowEnd} step ${sampleStep} neighbourhood ${neighbourhood} is invalid`,
      { field: "window", hint: "need 0 <= start < end, step > 0, neighbourhood >= 0" },
    );
  }
  const samples = Math.floor((windowEnd - windowStart) / sampleStep) + 1;
  if (samples > MAX_SAMPLES) {
    throw new ShapeError(`${samples} waveform samples per base are too many`, {
      field: "sample_step",
      expected: `<= ${MAX_SAMPLES}`,
      actual: samples,
      hint: "use a larger sample step or a shorter window",
    });
  }
}

/** Marks samples that are the strict local maximum (sign 1) or minimum (sign -1) and an extremum of
 * every sample within +-reach samples (monotonic-deque sliding window, O(n)). */
function markExtrema(x: Float64Array, reach: number, sign: number): Uint8Array {
  const n = x.length;
  const out = new Uint8Array(n);
  const queue = new Int32Array(n);
  let head = 0;
  let tail = 0;
  let next = 0;
  for (let i = 0; i < n; i++) {
    while (next < n && next <= i + reach) {
      while (tail > head && sign * x[queue[tail - 1]] <= sign * x[next]) tail--;
      queue[tail++] = next++;
    }
    while (queue[head] < i - reach) head++;
    const top = sign * x[queue[head]];
    const v = sign * x[i];
    if (i > 0 && i < n - 1 && v === top && v > sign * x[i - 1] && v > sign * x[i + 1]) out[i] = 1;
  }
  return out;
}

/**
 * Peaks and valleys of w_b(m) under an extrema definition (defaults: {@link extremaDefinition}).
 *
 * @example
 * ```ts
 * const { peaks, valleys } = waveformExtrema(1e6, 128);
 * ```
 */
export function waveformExtrema(
  base: number,
  rotaryDim: number,
  definition: Partial<ExtremaDefinition> = {},
): Extrema {
  const def = extremaDefinition(definition);
  checkDefinition(def);
  const count = Math.floor((def.windowEnd - def.windowStart) / def.sampleStep) + 1;
  const w = waveformOnGrid(base, { rotaryDim, start: def.windowStart, step: def.sampleStep, count });
  const reach = Math.max(1, Math.floor(def.neighbourhood / def.sampleStep));
  const isPeak = markExtrema(w, reach, 1);
  const isValley = markExtrema(w, reach, -1);
  const peaks: number[] = [];
  const valleys: number[] = [];
  for (let j = 0; j < count; j++) {
    if (isPeak[j]) peaks.push(def.windowStart + j * def.sampleStep);
    if (isValley[j]) valleys.push(def.windowStart + j * def.sampleStep);
  }
  return { peaks: Float64Array.from(peaks), valleys: Float64Array.from(valleys) };
}

/** Lowers nearest[i] to the distance from points[i] to the nearest element of `set` (both ascending). */
function relaxNearest(points: Float64Array, set: Float64Array, nearest: Float64Array): void {
  if (set.length === 0) return;
  let j = 0;
  for (let i = 0; i < points.length; i++) {
    const x = points[i];
    while (j + 1 < set.length && set[j + 1] <= x) j++;
    let d = Math.abs(x - set[j]);
    if (j + 1 < set.length) d = Math.min(d, set[j + 1] - x);
    if (d < nearest[i]) nearest[i] = d;
  }
}

function mean(values: Float64Array): number {
  if (values.length === 0) return Infinity;
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i];
  return sum / values.length;
}

/**
 * Greedy peak-valley search: `count` bases from the grid b_min + i*stride, b_min first, in the order
 * they were picked (= head order). The nearest-point distances are updated incrementally as bases are
 * added, so each round costs one merge per candidate.
 *
 * @example
 * ```ts
 * peakValleyBases(32, { bMin: 1e6, bMax: 5e6, stride: 3e4, rotaryDim: 128 });
 * ```
 */
export function peakValleyBases(count: number, options: PeakValleyOptions): number[] {
  checkCount(count);
  const grid = candidateGrid(options);
  if (count > grid.length) {
    throw new ShapeError(
      `The grid ${options.bMin}..${options.bMax} step ${options.stride} has only ${grid.length} candidates for ${count} heads`,
      {
        field: "stride",
        expected: `>= ${count} candidates`,
        actual: grid.length,
        hint: "use a smaller --stride or a wider --b-min/--b-max range",
      },
    );
  }
  const definition = extremaDefinition(options);
  const extrema = grid.map((base) => waveformExtrema(base, options.rotaryDim, definition));
  // Per candidate: distance of each of its peaks to the nearest collected valley, and of each of its
  // valleys to the nearest collected peak.
  const peakToValley = extrema.map((e) => new Float64Array(e.peaks.length).fill(Infinity));
  const valleyToPeak = extrema.map((e) => new Float64Array(e.valleys.length).fill(Infinity));
  const taken = new Uint8Array(grid.length);
  const picked = [0];
  taken[0] = 1;
  let last = 0;
  while (picked.length < count) {
    let best = -1;
    let bestDistance = Infinity;
    for (let c = 0; c < grid.length; c++) {
      if (taken[c]) continue;
      relaxNearest(extrema[c].peaks, extrema[last].valleys, peakToValley[c]);
      relaxNearest(extrema[c].valleys, extrema[last].peaks, valleyToPeak[c]);
      const distance = mean(peakToValley[c]) + mean(valleyToPeak[c]);
      if (best < 0 || distance < bestDistance) {
        best = c;
        bestDistance = distance;
      }
    }
    picked.push(best);
    taken[best] = 1;
    last = best;
  }
  return picked.map((c) => grid[c]);
}
