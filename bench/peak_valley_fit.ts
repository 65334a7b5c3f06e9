// Scores candidate definitions of the waveform's peaks and valleys against the paper's Table 2 and
// prints a table (best first) plus the chance level: random 32-subsets of the same candidate grid.
// Run: deno run -A bench/peak_valley_fit.ts   (writes bench/out/peak_valley_fit.json)

import { candidateGrid, peakValleyBases } from "../lib/harpe/peak_valley.ts";
import { formatTable } from "../lib/util/table.ts";
import { scoreTable2, TABLE2_SETTING } from "./table2.ts";

const STEPS = [8, 16, 24];
const WINDOW_ENDS = [8192, 16384, 24576, 32768, 65536, 131072];
const NEIGHBOURHOODS = [128, 256, 512, 1024, 2048];
const RANDOM_DRAWS = 20000;

const { bMin, bMax, stride, rotaryDim, heads } = TABLE2_SETTING;
const rows: { step: number; end: number; hood: number; within: number; mad: number; ms: number }[] = [];
for (const step of STEPS) {
  for (const end of WINDOW_ENDS) {
    for (const hood of NEIGHBOURHOODS) {
      const start = performance.now();
      const bases = peakValleyBases(heads, {
        bMin,
        bMax,
        stride,
        rotaryDim,
        windowStart: 0,
        windowEnd: end,
        sampleStep: step,
        neighbourhood: hood,
      });
      const ms = performance.now() - start;
      const score = scoreTable2(bases);
      rows.push({ step, end, hood, within: score.withinStride, mad: score.meanAbsDiff, ms });
    }
  }
}
rows.sort((a, b) => a.mad - b.mad);
console.log(formatTable(
  ["sample step", "window end", "neighbourhood", "within 1 stride", "mean |diff|", "ms"],
  rows.map((r) => [r.step, r.end, r.hood, r.within, Math.round(r.mad), Math.round(r.ms)]),
));

// Chance level: b_min plus 31 other grid candidates drawn at random (deterministic LCG).
const grid = candidateGrid({ bMin, bMax, stride });
let seed = 12345;
const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
let within = 0;
let mad = 0;
for (let draw = 0; draw < RANDOM_DRAWS; draw++) {
  const rest = grid.slice(1);
  for (let i = rest.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [rest[i], rest[j]] = [rest[j], rest[i]];
  }
  const score = scoreTable2([grid[0], ...rest.slice(0, heads - 1)]);
  within += score.withinStride;
  mad += score.meanAbsDiff;
}
const definitionsMeanWithin = rows.reduce((s, r) => s + r.within, 0) / rows.length;
const definitionsMeanMad = rows.reduce((s, r) => s + r.mad, 0) / rows.length;
console.log(
  `\nchance (random subsets): within ${(within / RANDOM_DRAWS).toFixed(2)}, mean |diff| ${
    Math.round(mad / RANDOM_DRAWS)
  }; all ${rows.length} definitions above: within ${definitionsMeanWithin.toFixed(2)}, mean |diff| ${
    Math.round(definitionsMeanMad)
  }`,
);
await Deno.mkdir(new URL("./out/", import.meta.url), { recursive: true });
await Deno.writeTextFile(
  new URL("./out/peak_valley_fit.json", import.meta.url),
  JSON.stringify({ rows, chance: { within: within / RANDOM_DRAWS, mad: mad / RANDOM_DRAWS } }, null, 2),
);
