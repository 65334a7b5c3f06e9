// RoPE math per head: inverse frequencies, lowest wavelength and the waveform against hand-computed
// values and a direct float64 cosine sum.

import { assert, assertAlmostEquals, assertEquals } from "./assert.ts";
import {
  baseInverseFrequencies,
  headInverseFrequencies,
  lowestWavelength,
  waveform,
  waveformOnGrid,
} from "../lib/harpe/mod.ts";

Deno.test("inverse frequencies are base^(-2i/R) in float64", () => {
  assertEquals(Array.from(baseInverseFrequencies(10000, 4)), [1, 0.01]);
  const rows = headInverseFrequencies([100, 10000], 8);
  assertEquals(rows.length, 2);
  // 100^(-2i/8) = 10^(-i/2): 1, 0.316..., 0.1, 0.0316...
  [1, 1 / Math.sqrt(10), 0.1, 0.1 / Math.sqrt(10)].forEach((value, i) =>
    assertAlmostEquals(rows[0][i], value, 1e-15)
  );
  assertAlmostEquals(rows[1][2], 0.01, 1e-17);
});

Deno.test("the lowest wavelength is 2*pi*b^((R-2)/R)", () => {
  // 1e4^(126/128) = 10^3.9375
  assertAlmostEquals(lowestWavelength(1e4, 128), 2 * Math.PI * Math.pow(10, 3.9375), 1e-6);
  assertAlmostEquals(lowestWavelength(1e4, 2), 2 * Math.PI, 1e-12);
});

Deno.test("the waveform is sqrt(R) at distance 0 and sqrt(2)cos(m) for R = 2", () => {
  assertAlmostEquals(waveform(1e6, [0], { rotaryDim: 128 })[0], Math.sqrt(128), 1e-12);
  const w = waveform(5e5, [0, 1, 2.5, 100], { rotaryDim: 2 });
  [0, 1, 2.5, 100].forEach((m, j) => assertAlmostEquals(w[j], Math.SQRT2 * Math.cos(m), 1e-12));
});

Deno.test("the fast grid waveform matches the direct cosine sum over 100k points", () => {
  const count = 100_001;
  const grid = waveformOnGrid(3.1e6, { rotaryDim: 128, start: 7, step: 1.5, count });
  const positions = Array.from({ length: count }, (_, j) => 7 + j * 1.5);
  const direct = waveform(3.1e6, positions, { rotaryDim: 128 });
  let worst = 0;
  for (let j = 0; j < count; j++) worst = Math.max(worst, Math.abs(grid[j] - direct[j]));
  assert(worst < 1e-9, `max difference ${worst}`);
});
