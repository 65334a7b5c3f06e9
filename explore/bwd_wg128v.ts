// One-off: the warp-specialized backward variants at head dim 128 (kernels/flash_attention_bwd_wg_d128_ws.cu)
// against the current wgmma backward flash_attention_bwd_wg_d128, launched directly: time of the backward
// kernel alone (median of events; delta, the dq_acc memset and the dq conversion are left out, they are the
// same for every kernel), TFLOP/s (2.5 x 4 B H T^2 D / 2), and agreement with the current kernel on dq_acc,
// dk and dv (dv_keys when V < K): max|diff| / max|ref| over the full tensors (dk / dv / dv_keys NaN-filled
// first, so an element not written shows as NaN). Pass 1 runs the current kernel on every shape; later
// passes the variants (mbarriers and named barriers: a hang there leaves the earlier passes' results and
// winner line printed; run under `timeout`). A winner line and ${OUT:-.}/winner_bwd128.json after each pass.
// Run: deno run --allow-all --cached-only --node-modules-dir=manual explore/bwd_wg128v.ts
import { CudaEngine, type CudaTensor } from "../lib/engine/cuda/mod.ts";
import { flashAttentionForward } from "../lib/engine/cuda/flash_attention.ts";
import type { CudaDevice } from "../lib/engine/cuda/device.ts";
import type { AttentionDims } from "../lib/engine/checks.ts";
import type { Tensor } from "../lib/engine/engine.ts";

const D = 128;
interface Kernel {
  name: string;
  rows: number; // keys per block
  threads: number;
  sharedBytes: number;
}
/** WD_SHARED_BYTES(48): k, v [2][128][64], q, dout [2 stages][2][48][64], ds^T [2][128][64] bf16, lse / delta
 * [2][2][48] f32, 1024 to align. */
const CURRENT: Kernel = {
  name: "flash_attention_bwd_wg_d128",
  rows: 128,
  threads: 256,
  sharedBytes: 4 * 16384 + 8 * 48 * 128 + 2 * 16384 + 2 * 2 * 48 * 4 + 1024,
};
/** WH_SHARED_BYTES(bq, bufs, stages) for `bq` queries per step: k, v, `bufs` ds^T tiles [128][64], per
 * stage q, dout [2][bq][64] bf16 and lse / delta [2][bq] f32, 16 bytes of mbarriers per stage, 1024 to
 * align; two consumer warpgroups and a producer warpgroup. */
const ws = (suffix: string, bq: number, bufs: number, stages: number): Kernel => ({
  name: `flash_attention_bwd_wg_d128${suffix}`,
  rows: 128,
  threads: 384,
  sharedBytes: 4 * 16384 + bufs * 16384 + stages * (4 * bq * 128 + 2 * bq * 4) + 16 * stages + 1024,
});
/** Pass 2: one named barrier per step shared by both consumer warpgroups; pass 3: one-way barriers. */
const PASSES: Kernel[][] = [
  [CURRENT],
  [ws("_ws", 48, 2, 2), ws("_ws_s3", 48, 2, 3), ws("_ws_q64", 64, 2, 2)],
  [ws("_ws_dc", 48, 3, 2), ws("_ws_dc_s3", 48, 3, 3), ws("_ws_q64_dc", 64, 2, 2)],
];
/** b, t, h, hk, hv; the first TIMED count for the ranking. */
const SHAPES: [number, number, number, number, number][] = [
  [4, 8192, 16, 2, 2],
  [1, 32768, 16, 2, 2],
  [1, 131072, 16, 2, 2],
  [2, 3000, 8, 2, 1],
  [1, 520, 8, 8, 2],
  [1, 77, 4, 1, 1],
];
const TIMED = 3;
/** A relative diff above this (or NaN) marks a kernel as wrong (bf16 rounding gives ~1e-2 at most). */
const BAD = 5e-2;
const ROW_THREADS = 256;

const engine = await CudaEngine.open();
const dev = engine.device;
const { driver, stream } = dev;
write(
  `device ${dev.info.name} sm_${dev.info.arch}, kernels ${dev.kernelsCached ? "cached" : "compiled"} in ${
    dev.compileMs.toFixed(0)
  } ms\n`,
);
if (dev.info.arch !== 90) {
  write("not an sm_90 device: the wgmma kernels are not compiled, every kernel will fail\n");
}
write(
  "per shape: backward kernel ms, TFLOP/s (2.5 * 4 B H T^2 D / 2); [dq dk dv] = max|diff| / max|ref| against " +
    `${CURRENT.name} (dv: dv_keys when V < K; NaN: an element not written; > ${BAD}: wrong)\n`,
);

/** Prints at once (a line is written piece by piece, so a hang or crash still shows what ran). */
function write(text: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(text));
}

function timeMs(fn: () => void, reps: number): number {
  fn();
  const ev = Array.from({ length: 2 * reps }, () => driver.eventCreate());
  for (let r = 0; r < reps; r++) {
    driver.eventRecord(ev[2 * r], stream);
    fn();
    driver.eventRecord(ev[2 * r + 1], stream);
  }
  const t = Array.from({ length: reps }, (_, r) => driver.eventElapsedMs(ev[2 * r], ev[2 * r + 1]));
  ev.forEach((e) => driver.eventDestroy(e));
  t.sort((a, b) => a - b);
  return t[reps >> 1];
}

let seed = 0x2545f491;
function rand(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 4294967296;
}
const ptr = (t: Tensor) => (t as CudaTensor).pointer;
/** Uploads uniform values in [-amp, amp) as bf16 bits (truncated) straight into `t`. */
function randomBf16(t: Tensor, amp: number): void {
  const bits = new Uint16Array(t.size), f = new Float32Array(1), u = new Uint32Array(f.buffer);
  for (let i = 0; i < bits.length; i++) {
    f[0] = (rand() * 2 - 1) * amp;
    bits[i] = u[0] >>> 16;
  }
  dev.upload(ptr(t), new Uint8Array(bits.buffer));
}

/** max|a - b| / max|b| (NaN anywhere shows as NaN). */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0, s = 0, nan = false;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (Number.isNaN(d)) nan = true;
    else m = Math.max(m, d);
    s = Math.max(s, Math.abs(b[i]));
  }
  return nan ? NaN : m / s;
}
const e1 = (x: number) => x.toExponential(1);
const short = (name: string) => name.replace("flash_attention_bwd_", "");

/** One shape's device tensors (inputs, the forward's out / lse, delta, the backward's outputs) and the
 * current kernel's outputs on the host, kept across passes. */
interface Case {
  dims: AttentionDims;
  args: Parameters<CudaDevice["launch"]>[3];
  outputs: Tensor[]; // dq_acc, dk, dv_keys ?? dv
  dqAcc: Tensor;
  nanFilled: Tensor[]; // dk, dv, dv_keys
  ref: Float32Array[];
  refMs: number;
  flops: number;
  reps: number;
}
const cases = new Map<number, Case>();

function makeCase(index: number): Case {
  const [b, t, h, hk, hv] = SHAPES[index];
  const dims: AttentionDims = { b, t, h, hk, hv, d: D };
  const q = engine.alloc([b, t, h, D], "bf16"), k = engine.alloc([b, t, hk, D], "bf16");
  const v = engine.alloc([b, t, hv, D], "bf16"), dout = engine.alloc([b, t, h, D], "bf16");
  const out = engine.alloc([b, t, h, D], "bf16"), lse = engine.alloc([b, h, t], "f32");
  const delta = engine.alloc([b, h, t], "f32"), dqAcc = engine.alloc([b, t, h, D], "f32");
  const dk = engine.alloc([b, t, hk, D], "bf16"), dv = engine.alloc([b, t, hv, D], "bf16");
  const dvKeys = hv === hk ? null : engine.alloc([b, t, hk, D], "f32");
  randomBf16(q, 3);
  randomBf16(k, 1);
  randomBf16(v, 1);
  randomBf16(dout, 1);
  flashAttentionForward(dev, { out: ptr(out), lse: ptr(lse), q: ptr(q), k: ptr(k), v: ptr(v), dims });
  const rows = b * t * h;
  dev.launch("flash_attention_delta", Math.ceil(rows / ROW_THREADS), ROW_THREADS, [
    ptr(delta),
    ptr(dout),
    ptr(out),
    { i32: b },
    { i32: t },
    { i32: h },
    { i32: D },
  ]);
  const scale = 1 / Math.sqrt(D);
  return {
    dims,
    args: [
      ptr(dqAcc),
      ptr(dk),
      ptr(dv),
      dvKeys ? ptr(dvKeys) : 0n,
      ptr(q),
      ptr(k),
      ptr(v),
      ptr(dout),
      ptr(lse),
      ptr(delta),
      { i32: t },
      { i32: h },
      { i32: hk },
      { i32: hv },
      { f32: scale * Math.LOG2E },
      { f32: scale },
    ],
    outputs: [dqAcc, dk, dvKeys ?? dv],
    dqAcc,
    nanFilled: dvKeys ? [dk, dv, dvKeys] : [dk, dv],
    ref: [],
    refMs: 0,
    flops: 2.5 * 4 * b * h * t * t * D / 2,
    reps: t >= 131072 ? 3 : 5,
  };
}

const sharedSet = new Set<string>();
function launch(kernel: Kernel, c: Case): void {
  if (!sharedSet.has(kernel.name)) {
    driver.setMaxDynamicSharedMemory(dev.kernel(kernel.name), kernel.sharedBytes);
    sharedSet.add(kernel.name);
  }
  const { hk, b, t } = c.dims;
  dev.launch(kernel.name, [hk, b, Math.ceil(t / kernel.rows)], kernel.threads, c.args, kernel.sharedBytes);
}

/** Runs `kernel` once on fresh outputs and downloads them. */
function outputsOf(kernel: Kernel, c: Case): Promise<Float32Array[]> {
  driver.memsetD32(ptr(c.dqAcc), 0, c.dqAcc.size, stream);
  for (const x of c.nanFilled) driver.memsetD8(ptr(x), 0xff, x.size * (x.dtype === "f32" ? 4 : 2), stream);
  launch(kernel, c);
  return Promise.all(c.outputs.map((x) => engine.download(x) as Promise<Float32Array>));
}

/** Per kernel: TFLOP/s on each timed shape, or null once wrong or failed on any shape. */
const tfOf = new Map<string, number[] | null>();
const seen = new Map<string, number>(); // shapes each kernel ran on

/** Runs one kernel on shape `index`; false when the CUDA context is no longer usable. */
async function runKernel(kernel: Kernel, index: number): Promise<boolean> {
  try {
    let c = cases.get(index);
    if (!c) {
      c = makeCase(index);
      cases.set(index, c);
    }
    const got = await outputsOf(kernel, c);
    let note = "";
    if (kernel === CURRENT) {
      c.ref = got;
      const self = got.map((x) => relDiff(x, x));
      if (self.some(Number.isNaN)) note = " (NaN in its outputs!)";
    } else {
      const diffs = got.map((x, i) => relDiff(x, c!.ref[i]));
      const ok = diffs.every((x) => x < BAD); // false for NaN too
      note = ` [${diffs.map(e1).join(" ")}]${ok ? "" : " WRONG"}`;
      if (!ok) tfOf.set(kernel.name, null);
    }
    const ms = timeMs(() => launch(kernel, c!), c.reps);
    if (kernel === CURRENT) c.refMs = ms;
    const tf = c.flops / ms / 1e9;
    const scores = tfOf.has(kernel.name) ? tfOf.get(kernel.name)! : [];
    if (scores && index < TIMED) scores.push(tf);
    if (!tfOf.has(kernel.name)) tfOf.set(kernel.name, scores);
    seen.set(kernel.name, (seen.get(kernel.name) ?? 0) + 1);
    const speed = kernel === CURRENT ? "" : ` x${(c.refMs / ms).toFixed(2)}`;
    write(` | ${short(kernel.name)} ${ms.toFixed(3)} ms ${tf.toFixed(0)} TF/s${speed}${note}`);
    return true;
  } catch (e) {
    write(` | ${short(kernel.name)} FAILED: ${(e as Error).message}`);
    tfOf.set(kernel.name, null);
    try {
      await engine.sync(); // a launch error leaves the context usable, a kernel fault does not
      return true;
    } catch {
      return false;
    }
  }
}

/** Ranking (mean TF/s over the timed shapes, kernels right on every shape), winner line and JSON. */
async function winner(): Promise<void> {
  const mean = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;
  const scored = [...tfOf].filter(([name, xs]) =>
    xs && xs.length === TIMED && seen.get(name) === SHAPES.length
  ) as [
    string,
    number[],
  ][];
  scored.sort((a, b) => mean(b[1]) - mean(a[1]));
  const show = ([name, xs]: [string, number[]]) =>
    `${short(name)} ${mean(xs).toFixed(0)} (${xs.map((x) => x.toFixed(0)).join("/")})`;
  write(`ranking (mean TF/s over the first ${TIMED} shapes, right on all): ${scored.map(show).join(", ")}\n`);
  const best = scored.find(([name]) => name !== CURRENT.name);
  const cur = scored.find(([name]) => name === CURRENT.name);
  const gain = best && cur ? mean(best[1]) / mean(cur[1]) : 0;
  write(
    `winner: ${
      best
        ? `${show(best)} x${gain.toFixed(3)} vs ${short(CURRENT.name)}`
        : "none (no variant right on every shape)"
    }\n`,
  );
  const kernel = PASSES.flat().find((x) => x.name === best?.[0]);
  const json = kernel
    ? {
      ...kernel,
      meanTflops: mean(best![1]),
      currentMeanTflops: cur ? mean(cur[1]) : null,
      beatsCurrent: gain > 1,
    }
    : { name: null };
  await Deno.writeTextFile(
    `${Deno.env.get("OUT") ?? "."}/winner_bwd128.json`,
    JSON.stringify(json, null, 2) + "\n",
  );
}

run: for (const [pass, kernels] of PASSES.entries()) {
  write(`-- pass ${pass + 1}: ${kernels.map((x) => short(x.name)).join(", ")}\n`);
  for (const index of SHAPES.keys()) {
    const [b, t, h, hk, hv] = SHAPES[index];
    write(`B${b} T${t} H${h} K${hk} V${hv}${index < TIMED ? "" : " (check only)"}`);
    for (const kernel of kernels) {
      if (!await runKernel(kernel, index)) {
        write("\nthe CUDA context is gone (kernel fault): stopping\n");
        await winner();
        break run;
      }
    }
    write("\n");
  }
  await winner(); // after each pass: a hang in the next still leaves a winner line
}
engine.dispose();
