// Checks the wgmma building blocks of kernels/wgmma.cu on an sm_90 GPU: for each
// operand layout (K-major or MN-major A and B), d = a . b^T over K = 64 against a float64 product, for a
// few readings of the descriptors' leading / stride byte offsets; prints which readings match and
// requires every layout to match with at least one. Skips itself without CUDA or on other GPUs.

import type { CudaTensor } from "../lib/engine/cuda/mod.ts";
import { assert } from "./assert.ts";
import { cudaEngine, GPU_TEST, randn, roundBf16 } from "./cuda_compare.ts";

const N = 64;
/** (lbo, sbo) in bytes to try: for 64-wide tiles of 128-byte swizzled atoms the stride between 8-row
 * groups is 1024 bytes; the leading offset should not matter (K-major: 16 columns fit in one atom row;
 * MN-major: 64 rows fit one atom width), so both common conventions are tried. */
const OFFSETS: readonly [number, number][] = [[16, 1024], [1024, 1024], [1024, 16], [0, 1024]];
/** bf16 inputs, f32 accumulation of 64 products of |x| <~ 3: a few 1e-5 relative. */
const TOLERANCE = 1e-4;

type Engine = Awaited<ReturnType<typeof cudaEngine>>;

/** Runs probe `kernel` (one 128-thread block) on the [N][N] bf16 inputs a and b with descriptor offsets
 * (lbo, sbo) into an NaN-filled f32 [N][N] output; returns max |got - expected| / max |expected| over
 * the first expected.length outputs (Infinity where an output was not written). */
async function probeError(
  engine: Engine,
  kernel: string,
  inputs: { a: Float32Array; b: Float32Array },
  offsets: { lbo: number; sbo: number; expected: Float64Array },
): Promise<number> {
  const ta = engine.alloc([N, N], "bf16"), tb = engine.alloc([N, N], "bf16"), d = engine.alloc([N, N], "f32");
  engine.upload(ta, inputs.a);
  engine.upload(tb, inputs.b);
  engine.fill({ out: d, value: NaN });
  const p = (t: unknown) => (t as CudaTensor).pointer;
  engine.device.launch(kernel, 1, 128, [p(d), p(ta), p(tb), { u32: offsets.lbo }, { u32: offsets.sbo }]);
  const got = await engine.download(d) as Float32Array;
  for (const t of [ta, tb, d]) engine.free(t);
  const { expected } = offsets;
  let worst = 0, scale = 0;
  for (let i = 0; i < expected.length; i++) {
    worst = Math.max(worst, Number.isNaN(got[i]) ? Infinity : Math.abs(got[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return worst / scale;
}

Deno.test({
  name: "wgmma m64n64k16: K-major and MN-major operands give a . b^T (sm_90 only)",
  ...GPU_TEST,
  async fn() {
    const engine = await cudaEngine();
    if (engine.device.info.arch !== 90) return;
    const a = roundBf16(randn(N * N)), b = roundBf16(randn(N * N));
    const expected = new Float64Array(N * N);
    for (let i = 0; i < N; i++) {
      for (let j = 0; j < N; j++) {
        let sum = 0;
        for (let k = 0; k < N; k++) sum += a[i * N + k] * b[j * N + k];
        expected[i * N + j] = sum;
      }
    }
    const lines: string[] = [];
    const failing: string[] = [];
    for (const layout of ["00", "01", "10", "11"]) {
      const matches: string[] = [];
      for (const [lbo, sbo] of OFFSETS) {
        const error = await probeError(engine, `wgmma_probe_${layout}`, { a, b }, { lbo, sbo, expected });
        lines.push(
          `layout A${layout[0] === "1" ? " MN" : " K"}-major, B${
            layout[1] === "1" ? " MN" : " K"
          }-major, lbo ${lbo}, sbo ${sbo}: max error ${error.toExponential(2)}`,
        );
        if (error <= TOLERANCE) matches.push(`${lbo}/${sbo}`);
      }
      if (matches.length === 0) failing.push(layout);
    }
    console.log(lines.join("\n"));
    assert(failing.length === 0, `no descriptor reading matched for layouts ${failing.join(", ")}`);
  },
});

Deno.test({
  name: "wgmma: A from registers, and an MN-major B starting mid-row (m64n32), give a . b (sm_90 only)",
  ...GPU_TEST,
  async fn() {
    const engine = await cudaEngine();
    if (engine.device.info.arch !== 90) return;
    const a = roundBf16(randn(N * N)), b = roundBf16(randn(N * N)); // a [m][k], b [k][n]
    const product = (col0: number, width: number) => {
      const out = new Float64Array(N * width);
      for (let i = 0; i < N; i++) {
        for (let j = 0; j < width; j++) {
          let sum = 0;
          for (let k = 0; k < N; k++) sum += a[i * N + k] * b[k * N + col0 + j];
          out[i * width + j] = sum;
        }
      }
      return out;
    };
    const lines: string[] = [];
    const failing: string[] = [];
    const cases = [["wgmma_probe_rega", product(0, N)], ["wgmma_probe_n32", product(32, 32)]] as const;
    for (const [kernel, expected] of cases) {
      let matched = false;
      for (const [lbo, sbo] of OFFSETS) {
        const error = await probeError(engine, kernel, { a, b }, { lbo, sbo, expected });
        lines.push(`${kernel}, lbo ${lbo}, sbo ${sbo}: max error ${error.toExponential(2)}`);
        matched ||= error <= TOLERANCE;
      }
      if (!matched) failing.push(kernel);
    }
    console.log(lines.join("\n"));
    assert(failing.length === 0, `no descriptor reading matched for ${failing.join(", ")}`);
  },
});
