// Base schedules: counts, ranges, order, grid, determinism, the auto rule for Llama2-7B, and the
// peak-valley greedy against a brute-force re-implementation.

import { assert, assertAlmostEquals, assertEquals, assertThrows } from "./assert.ts";
import { ConfigError, ShapeError } from "../lib/errors.ts";
import {
  autoRange,
  candidateGrid,
  computeBases,
  geometricBases,
  parseStages,
  peakValleyBases,
  stageBases,
  uniformBases,
  waveformExtrema,
} from "../lib/harpe/mod.ts";

const LLAMA = { count: 32, rotaryDim: 128, originalBase: 1e4, originalLength: 4096, targetLength: 131072 };

Deno.test("uniform: Eq. 9 endpoints and equal steps, ascending and descending", () => {
  assertEquals(uniformBases(3, { bMin: 1e6, bMax: 5e6 }), [1e6, 3e6, 5e6]);
  assertEquals(uniformBases(5, { bMin: 1e6, bMax: 5e6, order: "desc" }), [5e6, 4e6, 3e6, 2e6, 1e6]);
  assertEquals(uniformBases(1, { bMin: 2e6, bMax: 5e6 }), [2e6]);
  const bases = uniformBases(32, { bMin: 1e6, bMax: 5e6 });
  assertEquals(bases.length, 32);
  for (let h = 1; h < 32; h++) assertAlmostEquals(bases[h] - bases[h - 1], 4e6 / 31, 1e-6);
  assertThrows(() => uniformBases(4, { bMin: 5e6, bMax: 1e6 }), ShapeError, "larger than b_max");
  assertThrows(() => uniformBases(0, { bMin: 1e6, bMax: 5e6 }), ShapeError, "positive integer");
});

Deno.test("geometric: constant ratio between neighbours", () => {
  const bases = geometricBases(3, { bMin: 1e4, bMax: 1e6 });
  assertEquals(bases[0], 1e4);
  assertAlmostEquals(bases[1], 1e5, 1e-9);
  assertEquals(bases[2], 1e6);
  const desc = geometricBases(8, { bMin: 1e4, bMax: 1e6, order: "desc" });
  assertEquals(desc[0], 1e6);
  for (let h = 1; h < 8; h++) assertAlmostEquals(desc[h - 1] / desc[h], Math.pow(100, 1 / 7), 1e-12);
});

Deno.test("stages: parsed lengths, contiguous groups, optional group at the original base", () => {
  const stages = parseStages("32k:1e6, 64K:2e6,131072:5e6");
  assertEquals(stages, [{ length: 32768, base: 1e6 }, { length: 65536, base: 2e6 }, {
    length: 131072,
    base: 5e6,
  }]);
  assertEquals(stageBases(6, { stages }), [1e6, 1e6, 2e6, 2e6, 5e6, 5e6]);
  assertEquals(stageBases(5, { stages }), [1e6, 1e6, 2e6, 2e6, 5e6]);
  assertEquals(stageBases(4, { stages, keepOriginal: 1e4 }), [1e4, 1e6, 2e6, 5e6]);
  assertThrows(() => stageBases(2, { stages }), ShapeError, "do not fit 2 heads");
  assertThrows(() => parseStages("32k-1e6"), ConfigError, "LENGTH:BASE");
  assertThrows(() => parseStages("32q:1e6"), ConfigError, "tokens");
});

Deno.test("explicit: the list as given, one per head", () => {
  const context = { ...LLAMA, count: 3 };
  assertEquals(computeBases("explicit", context, { bases: [3e6, 1e6, 2e6] }).bases, [3e6, 1e6, 2e6]);
  assertThrows(() => computeBases("explicit", context, { bases: [1e6] }), ShapeError, "expected 3");
  assertThrows(() => computeBases("explicit", context, { bases: [1e6, -1, 2] }), ShapeError, "bases[1]");
});

Deno.test("auto: Llama2-7B 1e4/4k/R=128 -> 128k lands within 2x of the paper's 1e6..5e6", () => {
  const range = autoRange(LLAMA);
  // critical pair: 2*ceil(64 * log_1e4(4096/2pi)) = 2*ceil(64 * 0.70355) = 92 (hand-computed)
  assertEquals(range.criticalDim, 92);
  assert(range.bMin >= 0.5e6 && range.bMin <= 2e6, `b_min ${range.bMin}`);
  assert(range.bMax >= 2.5e6 && range.bMax <= 10e6, `b_max ${range.bMax}`);
  // (131072/2pi)^(128/92) = 1.022e6 -> 1.0e6 at two significant digits
  assertEquals(range.bMin, 1e6);
  const bases = computeBases("auto", LLAMA).bases;
  assertEquals(bases.length, 32);
  assert(bases.every((b) => b >= range.bMin && b <= range.bMax));
  assertThrows(() => computeBases("auto", LLAMA, { bMin: 2e6 }), ConfigError, "derives b_min and b_max");
  // No extension needed beyond the original context: never below the original base.
  assert(autoRange({ ...LLAMA, targetLength: 4096 }).bMin >= 1e4);
});

Deno.test("peak-valley: count, b_min first, on the grid, in range, distinct, deterministic", () => {
  const options = { bMin: 1e6, bMax: 5e6, stride: 3e4, rotaryDim: 128, windowEnd: 32768 };
  const a = peakValleyBases(32, options);
  const b = peakValleyBases(32, options);
  assertEquals(a, b);
  assertEquals(a.length, 32);
  assertEquals(a[0], 1e6);
  assertEquals(new Set(a).size, 32);
  for (const base of a) {
    assert(base >= 1e6 && base <= 5e6, `${base} out of range`);
    assertEquals(
      Math.abs((base - 1e6) / 3e4 - Math.round((base - 1e6) / 3e4)) < 1e-9,
      true,
      `${base} off grid`,
    );
  }
  assertEquals(candidateGrid({ bMin: 1e6, bMax: 1.1e6, stride: 3e4 }), [1e6, 1.03e6, 1.06e6, 1.09e6]);
  assertThrows(() => peakValleyBases(5, { ...options, bMax: 1.1e6 }), ShapeError, "only 4 candidates");
  assertThrows(() => peakValleyBases(2, { ...options, stride: 0 }), ShapeError, "Stride");
});

Deno.test("extrema of sqrt(2)cos(m) sampled at integers are the integers nearest 2*pi*k and (2k+1)*pi", () => {
  const { peaks, valleys } = waveformExtrema(1e4, 2, {
    windowStart: 0,
    windowEnd: 100,
    sampleStep: 1,
    neighbourhood: 1,
  });
  const expectedPeaks: number[] = [];
  const expectedValleys: number[] = [];
  for (let m = 1; m < 100; m++) {
    if (Math.cos(m) > Math.cos(m - 1) && Math.cos(m) > Math.cos(m + 1)) expectedPeaks.push(m);
    if (Math.cos(m) < Math.cos(m - 1) && Math.cos(m) < Math.cos(m + 1)) expectedValleys.push(m);
  }
  assertEquals(Array.from(peaks), expectedPeaks);
  assertEquals(Array.from(valleys), expectedValleys);
  assertEquals(expectedPeaks.slice(0, 3), [6, 13, 19]); // round(2pi), round(4pi), round(6pi)
});

/** The greedy written plainly: union sets rebuilt every round, nearest points by linear scan. */
function bruteForceGreedy(
  grid: number[],
  extrema: { peaks: Float64Array; valleys: Float64Array }[],
  n: number,
) {
  const meanNearest = (points: Float64Array, set: number[]) => {
    if (points.length === 0 || set.length === 0) return Infinity;
    let sum = 0;
    for (const p of points) sum += Math.min(...set.map((s) => Math.abs(p - s)));
    return sum / points.length;
  };
  const picked = [0];
  while (picked.length < n) {
    const peaks = picked.flatMap((c) => Array.from(extrema[c].peaks));
    const valleys = picked.flatMap((c) => Array.from(extrema[c].valleys));
    let best = -1;
    let bestDistance = Infinity;
    grid.forEach((_, c) => {
      if (picked.includes(c)) return;
      const d = meanNearest(extrema[c].peaks, valleys) + meanNearest(extrema[c].valleys, peaks);
      if (best < 0 || d < bestDistance) [best, bestDistance] = [c, d];
    });
    picked.push(best);
  }
  return picked.map((c) => grid[c]);
}

Deno.test("peak-valley: the incremental search picks what the plain greedy picks", () => {
  const definition = { windowStart: 0, windowEnd: 8192, sampleStep: 4, neighbourhood: 64 };
  for (const [bMin, bMax, stride, n, rotaryDim] of [[1e6, 5e6, 1e5, 12, 128], [1e4, 2e5, 5e3, 8, 64]]) {
    const grid = candidateGrid({ bMin, bMax, stride });
    const extrema = grid.map((base) => waveformExtrema(base, rotaryDim, definition));
    assertEquals(
      peakValleyBases(n, { bMin, bMax, stride, rotaryDim, ...definition }),
      bruteForceGreedy(grid, extrema, n),
    );
  }
});
