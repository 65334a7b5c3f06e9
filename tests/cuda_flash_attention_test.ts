// Flash attention on the CUDA engine (GPU parts skip themselves without a device): forward and
// backward against the CPU reference (f64 accumulation, same bf16-rounded inputs) at small sizes,
// causal, GQA, head dims 64 and 128, and against PyTorch SDPA at realistic sizes
// (bench/attention/sdpa_check.py). Fresh random inputs each run; every check runs twice with the
// outputs poisoned (NaN) before each run, so stale or racy results fail.

import { attentionBackward, attentionForward } from "../lib/engine/cpu/attention.ts";
import type { AttentionDims } from "../lib/engine/checks.ts";
import { checkFlashDims, flashAttentionApplies } from "../lib/engine/cuda/flash_attention.ts";
import type { CudaEngine, CudaTensor } from "../lib/engine/cuda/mod.ts";
import type { Tensor } from "../lib/engine/engine.ts";
import { ShapeError } from "../lib/errors.ts";
import { f32ToBf16 } from "../lib/safetensors/dtypes.ts";
import { assert, AssertionError, assertThrows } from "./assert.ts";
import { cudaEngine, GPU_TEST, randn, roundBf16 } from "./cuda_compare.ts";

/** Max |a - b| / max |b| allowed for out (bf16 output rounding, bf16 probabilities in p v). */
const OUT_TOLERANCE = 2e-2;
/** Max |a - b| / max |b| allowed for dq, dk, dv (bf16 dS and p as tensor-core operands). */
const GRAD_TOLERANCE = 3e-2;
/** Root-mean-square error / RMS of the reference allowed for every tensor. */
const RMS_TOLERANCE = 1e-2;
/** Absolute error allowed for lse (f32 throughout; ex2.approx). */
const LSE_TOLERANCE = 2e-3;
/** Runs of each check (the second catches races and stale outputs). */
const RUNS = 2;

interface Inputs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  dout: Float32Array;
}

interface Results {
  out: Float32Array;
  lse: Float32Array;
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
}

function freshInputs(dims: AttentionDims): Inputs {
  const { b, t, h, hk, hv, d } = dims;
  return {
    q: roundBf16(randn(b * t * h * d, 1.5)),
    k: roundBf16(randn(b * t * hk * d, 1.5)),
    v: roundBf16(randn(b * t * hv * d)),
    dout: roundBf16(randn(b * t * h * d)),
  };
}

/** Forward and backward on the CUDA engine (bf16 tensors); outputs poisoned before each run. */
async function runCuda(engine: CudaEngine, dims: AttentionDims, x: Inputs): Promise<Results[]> {
  const { b, t, h, hk, hv, d } = dims;
  const make = (shape: number[], data?: Float32Array, dtype: "bf16" | "f32" = "bf16") => {
    const tensor = engine.alloc(shape, dtype);
    if (data) engine.upload(tensor, data);
    return tensor;
  };
  const q = make([b, t, h, d], x.q), k = make([b, t, hk, d], x.k), v = make([b, t, hv, d], x.v);
  const dout = make([b, t, h, d], x.dout);
  const out = make([b, t, h, d]), lse = make([b, h, t], undefined, "f32");
  const dq = make([b, t, h, d]), dk = make([b, t, hk, d]), dv = make([b, t, hv, d]);
  const pointers = [q, k, v, out].map((tensor) => (tensor as CudaTensor).pointer);
  assert(
    flashAttentionApplies(dims, { dtype: "bf16", pointers }),
    "the flash kernels must be used",
  );
  const runs: Results[] = [];
  for (let run = 0; run < RUNS; run++) {
    for (const tensor of [out, lse, dq, dk, dv]) engine.fill({ out: tensor, value: NaN });
    engine.attentionForward({ out, lse, q, k, v });
    engine.attentionBackward({ dq, dk, dv, dout, q, k, v, out, lse });
    const get = async (tensor: Tensor) => await engine.download(tensor) as Float32Array;
    runs.push({
      out: await get(out),
      lse: await get(lse),
      dq: await get(dq),
      dk: await get(dk),
      dv: await get(dv),
    });
  }
  for (const tensor of [q, k, v, dout, out, lse, dq, dk, dv]) engine.free(tensor);
  return runs;
}

/** The CPU engine's attention (f64 accumulation) on the same inputs. */
function runCpu(dims: AttentionDims, x: Inputs): Results {
  const { b, t, h, hk, hv, d } = dims;
  const out = new Float32Array(b * t * h * d), lse = new Float32Array(b * h * t);
  attentionForward(out, lse, x.q, x.k, x.v, dims);
  const grads = {
    dq: new Float32Array(out.length),
    dk: new Float32Array(b * t * hk * d),
    dv: new Float32Array(b * t * hv * d),
  };
  attentionBackward(grads, x.dout, { q: x.q, k: x.k, v: x.v, out, lse }, dims);
  return { out, lse, ...grads };
}

/** Throws unless `actual` matches `expected`: max error relative to max |expected|, and RMS error. */
function expectClose(name: string, actual: Float32Array, expected: Float32Array, tolerance: number): void {
  let diff = 0, ref = 0, sq = 0, refSq = 0, worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = Math.abs(actual[i] - expected[i]);
    if (!Number.isFinite(actual[i])) {
      throw new AssertionError(`${name}: element ${i} is ${actual[i]} (expected ${expected[i]})`);
    }
    if (e > diff) worst = i;
    diff = Math.max(diff, e);
    ref = Math.max(ref, Math.abs(expected[i]));
    sq += e * e;
    refSq += expected[i] * expected[i];
  }
  const maxError = diff / Math.max(ref, 1e-30), rmsError = Math.sqrt(sq / Math.max(refSq, 1e-30));
  if (!(maxError <= tolerance && rmsError <= RMS_TOLERANCE)) {
    let bad = 0, first = -1;
    for (let i = 0; i < expected.length; i++) {
      if (Math.abs(actual[i] - expected[i]) > tolerance * ref) (bad++, first < 0 && (first = i));
    }
    throw new AssertionError(
      `${name}: max error ${maxError.toExponential(2)} (allowed ${tolerance}), rms error ` +
        `${rmsError.toExponential(2)} (allowed ${RMS_TOLERANCE}); worst element ${worst} ` +
        `(${actual[worst]} vs ${expected[worst]}), ${bad} of ${expected.length} off, first ${first}`,
    );
  }
}

function expectLse(name: string, actual: Float32Array, expected: Float32Array): void {
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= LSE_TOLERANCE)) {
      throw new AssertionError(`${name}: lse[${i}] is ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

function expectAll(label: string, runs: Results[], expected: Results): void {
  runs.forEach((r, run) => {
    const at = `${label} run ${run + 1}`;
    expectClose(`${at} out`, r.out, expected.out, OUT_TOLERANCE);
    expectLse(at, r.lse, expected.lse);
    expectClose(`${at} dq`, r.dq, expected.dq, GRAD_TOLERANCE);
    expectClose(`${at} dk`, r.dk, expected.dk, GRAD_TOLERANCE);
    expectClose(`${at} dv`, r.dv, expected.dv, GRAD_TOLERANCE);
  });
}

/** Small cases for the CPU reference: both head dims, GQA and MHA, T a multiple of the tiles or not,
 * and `query` granularity (one key per query head, fewer value heads). */
const SMALL: AttentionDims[] = [
  { b: 1, t: 64, h: 4, hk: 2, hv: 2, d: 64 },
  { b: 2, t: 200, h: 6, hk: 2, hv: 2, d: 64 },
  { b: 1, t: 256, h: 4, hk: 1, hv: 1, d: 128 },
  { b: 2, t: 130, h: 2, hk: 2, hv: 2, d: 128 },
  { b: 1, t: 520, h: 8, hk: 8, hv: 2, d: 64 },
  { b: 2, t: 130, h: 4, hk: 4, hv: 1, d: 128 },
];

for (const dims of SMALL) {
  const label = `B${dims.b} T${dims.t} H${dims.h} K${dims.hk} V${dims.hv} D${dims.d}`;
  Deno.test({
    name: `flash attention ${label}: forward and backward match the CPU reference`,
    ...GPU_TEST,
    async fn() {
      const x = freshInputs(dims);
      expectAll(label, await runCuda(await cudaEngine(), dims, x), runCpu(dims, x));
    },
  });
}

/** Realistic sizes checked against PyTorch SDPA. */
const LARGE: AttentionDims[] = [
  { b: 1, t: 4096, h: 16, hk: 4, hv: 4, d: 128 },
  { b: 2, t: 3000, h: 8, hk: 1, hv: 1, d: 64 },
];

/** Runs bench/attention/sdpa_check.py on the inputs; returns SDPA's out, lse, dq, dk, dv. */
async function runSdpa(dims: AttentionDims, x: Inputs): Promise<Results> {
  const dir = await Deno.makeTempDir({ prefix: "harpe-sdpa-" });
  try {
    for (const [name, data] of Object.entries(x)) {
      await Deno.writeFile(`${dir}/${name}.bf16`, new Uint8Array(f32ToBf16(data as Float32Array).buffer));
    }
    await Deno.writeTextFile(`${dir}/dims.json`, JSON.stringify(dims));
    const script = new URL("../bench/attention/sdpa_check.py", import.meta.url).pathname;
    const result = await new Deno.Command("python3", { args: [script, dir], stderr: "piped" }).output();
    if (!result.success) {
      throw new AssertionError(`sdpa_check.py failed: ${new TextDecoder().decode(result.stderr)}`);
    }
    const read = async (name: string) => {
      const bytes = await Deno.readFile(`${dir}/${name}.f32`);
      return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    };
    return {
      out: await read("out"),
      lse: await read("lse"),
      dq: await read("dq"),
      dk: await read("dk"),
      dv: await read("dv"),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const dims of LARGE) {
  const label = `B${dims.b} T${dims.t} H${dims.h} K${dims.hk} D${dims.d}`;
  Deno.test({
    name: `flash attention ${label}: forward and backward match PyTorch SDPA`,
    ...GPU_TEST,
    async fn() {
      const x = freshInputs(dims);
      const runs = await runCuda(await cudaEngine(), dims, x);
      expectAll(`${label} vs SDPA`, runs, await runSdpa(dims, x));
    },
  });
}

Deno.test("flash attention refuses head dims other than 64 and 128 with a ShapeError", () => {
  for (const d of [32, 96, 256]) {
    const error = assertThrows(() => checkFlashDims({ b: 1, t: 16, h: 2, hk: 1, hv: 1, d }), ShapeError);
    assert(error.message.includes(`head dim ${d}`), error.message);
  }
  assertThrows(() => checkFlashDims({ b: 1, t: 16, h: 3, hk: 2, hv: 2, d: 64 }), ShapeError);
  assertThrows(() => checkFlashDims({ b: 1, t: 16, h: 8, hk: 8, hv: 3, d: 64 }), ShapeError);
  assertThrows(() => checkFlashDims({ b: 1, t: 1 << 24, h: 2, hk: 1, hv: 1, d: 64 }), ShapeError);
  checkFlashDims({ b: 2, t: 131072, h: 32, hk: 4, hv: 4, d: 64 });
  checkFlashDims({ b: 2, t: 131072, h: 32, hk: 32, hv: 4, d: 64 });
  checkFlashDims({ b: 1, t: 7, h: 16, hk: 16, hv: 16, d: 128 });
});

Deno.test("the engine takes the flash kernels only for bf16, D 64/128, K a multiple of V heads, aligned tensors", () => {
  const dims = { b: 1, t: 256, h: 8, hk: 2, hv: 2, d: 128 };
  const aligned = { dtype: "bf16", pointers: [0x7f0000000000n, 0x7f0000001000n] };
  assert(flashAttentionApplies(dims, aligned));
  assert(flashAttentionApplies({ ...dims, d: 64 }, aligned));
  assert(!flashAttentionApplies(dims, { ...aligned, dtype: "f32" }));
  assert(!flashAttentionApplies({ ...dims, d: 96 }, aligned));
  assert(flashAttentionApplies({ ...dims, hv: 1 }, aligned));
  assert(!flashAttentionApplies({ ...dims, hk: 4, hv: 3 }, aligned));
  assert(!flashAttentionApplies(dims, { dtype: "bf16", pointers: [0x7f0000000000n, 0x7f0000001008n] }));
});

Deno.test({
  name: "attention with head dim 32 (bf16) still runs through the simple kernels",
  ...GPU_TEST,
  async fn() {
    const dims = { b: 1, t: 96, h: 4, hk: 2, hv: 2, d: 32 };
    assert(!flashAttentionApplies(dims, { dtype: "bf16", pointers: [0n] }));
    const x = freshInputs(dims);
    const engine = await cudaEngine();
    const { b, t, h, hk, d } = dims;
    const q = engine.alloc([b, t, h, d], "bf16"), k = engine.alloc([b, t, hk, d], "bf16");
    const v = engine.alloc([b, t, hk, d], "bf16"), out = engine.alloc([b, t, h, d], "bf16");
    const lse = engine.alloc([b, h, t], "f32");
    engine.upload(q, x.q), engine.upload(k, x.k), engine.upload(v, x.v);
    engine.attentionForward({ out, lse, q, k, v });
    const expected = runCpu(dims, x);
    expectClose("out", await engine.download(out) as Float32Array, expected.out, OUT_TOLERANCE);
    for (const tensor of [q, k, v, out, lse]) engine.free(tensor);
  },
});
