// The paper's Table 2 reproduction (Llama2-7B, 32 heads, R = 128, 1e6..5e6 step 3e4): how many of our
// 32 bases fall within one stride of the paper's (sorted lists), the mean difference, and the time.

import { assert, assertEquals } from "./assert.ts";
import { peakValleyBases } from "../lib/harpe/mod.ts";
import { PAPER_TABLE2, scoreTable2, TABLE2_SETTING } from "../bench/table2.ts";

/** What the tuned default definition reaches (README "Planning and conversion"). */
const MIN_WITHIN_STRIDE = 14;
const MAX_MEAN_ABS_DIFF = 192_000;
/** The limit for this search. */
const MAX_SECONDS = 5;

Deno.test("peak-valley with the default definition reproduces Table 2 to the measured level", () => {
  const { bMin, bMax, stride, rotaryDim, heads } = TABLE2_SETTING;
  const start = performance.now();
  const bases = peakValleyBases(heads, { bMin, bMax, stride, rotaryDim, windowEnd: 131072 });
  const seconds = (performance.now() - start) / 1000;
  assertEquals(bases[0], PAPER_TABLE2[0]);
  const score = scoreTable2(bases);
  assert(score.withinStride >= MIN_WITHIN_STRIDE, `within one stride: ${score.withinStride}`);
  assert(score.meanAbsDiff <= MAX_MEAN_ABS_DIFF, `mean |diff|: ${score.meanAbsDiff}`);
  assert(seconds < MAX_SECONDS, `search took ${seconds.toFixed(2)} s`);
});

Deno.test("the Table 2 score: identical lists score 32/0, order does not matter", () => {
  assertEquals(scoreTable2([...PAPER_TABLE2].reverse()), { withinStride: 32, meanAbsDiff: 0 });
  const shifted = PAPER_TABLE2.map((b) => b + 40_000);
  assertEquals(scoreTable2(shifted), { withinStride: 0, meanAbsDiff: 40_000 });
});
