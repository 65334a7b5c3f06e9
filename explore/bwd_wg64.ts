// One-off: the warp-specialized head-dim-64 backward variants (kernels/flash_attention_bwd_wg_d64_ws.cu)
// against the current wgmma backward flash_attention_bwd_wg_d64 (wgmma.cu): time (median of 5 event
// timings, 3 at T 128k), TFLOP/s (FA convention: 2.5 x 4 B H T^2 D / 2) and agreement of dq_acc, dk, dv
// (dv_keys when V < K) with the current kernel (every 7th element of tensors above 2^25); a ranking and
// a "winner" line, the winner's launch shape in $OUT/winner_bwd64.json.
// Pass 1 runs the current kernel on every shape (its outputs are the reference), then each variant is
// its own pass over the shapes (they all use mbarriers: a hang leaves the earlier passes printed).
// Run: deno run --allow-all --cached-only --node-modules-dir=manual explore/bwd_wg64.ts
import { CudaEngine, type CudaTensor } from "../lib/engine/cuda/mod.ts";
import { flashAttentionForward } from "../lib/engine/cuda/flash_attention.ts";
import type { Tensor } from "../lib/engine/engine.ts";

const D = 64;
interface Kernel {
  name: string;
  rows: number; // keys per block
  threads: number;
  sharedBytes: number;
}
const CURRENT: Kernel = {
  name: "flash_attention_bwd_wg_d64",
  rows: 128,
  threads: 256,
  sharedBytes: 4 * 16384 + 4 * 8192 + 4 * 64 * 4 + 1024, // WB_SHARED_BYTES
};
/** WQ_SHARED_BYTES(bq, stages): k, v; per stage q, dout [bq][64] bf16 and lse, delta [2][bq] f32; ds^T
 * [2] (one [128][64] tile per step at bq 64, else two); 2 stages + 4 mbarriers; 1024 to align. */
const variant = (suffix: string, bq: number, stages = 3): Kernel => ({
  name: `flash_attention_bwd_wg_d64_ws${suffix}`,
  rows: 128,
  threads: 384,
  sharedBytes: 2 * 16384 + stages * 2 * bq * 128 + 2 * (bq === 64 ? 16384 : 32768) + stages * 2 * bq * 4 +
    8 * (2 * stages + 4) + 1024,
});
const VARIANTS: Kernel[] = [
  variant("", 64),
  variant("_late", 64),
  variant("_dq4", 64),
  variant("_late_dq4", 64),
  variant("_ip", 64, 4),
  variant("_ip_dq4", 64, 4),
  variant("_q96", 96),
  variant("_q96_late", 96),
  variant("_q128_late", 128),
];
/** b, t, h, hk, hv; the first TIMED ones are timed and ranked, the rest only checked. */
const SHAPES: [number, number, number, number, number][] = [
  [4, 8192, 32, 4, 4],
  [1, 32768, 32, 4, 4],
  [1, 131072, 32, 4, 4],
  [2, 3000, 8, 2, 1],
  [1, 520, 8, 8, 2],
  [1, 77, 4, 1, 1],
];
const TIMED = 3;
/** max|diff| / max|ref| above which (or NaN) a variant counts as wrong. */
const BAD = 5e-2;

const engine = await CudaEngine.open();
const dev = engine.device;
const { driver, stream } = dev;
const write = (text: string) => Deno.stdout.writeSync(new TextEncoder().encode(text));
write(
  `device ${dev.info.name} sm_${dev.info.arch}, kernels ${dev.kernelsCached ? "cached" : "compiled"} in ${
    dev.compileMs.toFixed(0)
  } ms\n`,
);
write(
  "per shape: ms, TFLOP/s (2.5 x 4 B H T^2 D / 2); [dq dk dv] = max|diff| / max|ref| against the current " +
    "kernel (dv: dv_keys when V < K); bf16 rounding gives up to ~1e-2, NaN or > 5e-2 means wrong\n",
);

let seed = 0x2545f491;
function rand(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 4294967296;
}
function randomData(n: number, amp: number): Float32Array {
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = (rand() * 2 - 1) * amp;
  return f;
}
const ptr = (t: Tensor) => (t as CudaTensor).pointer;
/** Tensors above POOL elements are filled on the device from random offsets of a random pool, CHUNK
 * elements at a time (generating 2^28 values on the host takes seconds). */
const POOL = 1 << 24, CHUNK = 1 << 23;
const pools = new Map<number, Tensor>();
function fillRandom(t: Tensor, amp: number): void {
  if (t.size <= POOL) {
    engine.upload(t, randomData(t.size, amp));
    return;
  }
  let pool = pools.get(amp);
  if (!pool) {
    pool = engine.alloc([POOL], "bf16");
    engine.upload(pool, randomData(POOL, amp));
    pools.set(amp, pool);
  }
  for (let i = 0; i < t.size; i += CHUNK) {
    const shift = Math.floor(rand() * (POOL - CHUNK));
    driver.copyDtoD(
      ptr(t) + BigInt(2 * i),
      ptr(pool) + BigInt(2 * shift),
      2 * Math.min(CHUNK, t.size - i),
      stream,
    );
  }
}
/** max|a - b| / max|b| over every `step`-th element (NaN anywhere shows as NaN). */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>, step: number): number {
  let m = 0, s = 0, nan = false;
  for (let i = 0; i < b.length; i += step) {
    const x = a[i], y = b[i], d = x > y ? x - y : y - x, ay = y < 0 ? -y : y;
    if (d > m) m = d;
    else if (d !== d) nan = true;
    if (ay > s) s = ay;
  }
  return nan ? NaN : m / s;
}
function timeMs(fn: () => void, reps: number): number {
  fn();
  const ev = Array.from({ length: 2 * reps }, () => dev.driver.eventCreate());
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

/** Inputs of one shape (forward run, delta computed), the gradient buffers, the reference gradients. */
interface Case {
  label: string;
  tensors: Tensor[];
  launch: (k: Kernel) => () => void;
  prepare: () => void;
  grads: () => Promise<Float32Array[]>;
  ref?: Float32Array[];
  flops: number;
  reps: number;
}
function makeCase([b, t, h, hk, hv]: number[]): Case {
  const q = engine.alloc([b, t, h, D], "bf16"), k = engine.alloc([b, t, hk, D], "bf16");
  const v = engine.alloc([b, t, hv, D], "bf16"), dout = engine.alloc([b, t, h, D], "bf16");
  const out = engine.alloc([b, t, h, D], "bf16"), lse = engine.alloc([b, h, t], "f32");
  const delta = engine.alloc([b, h, t], "f32"), dqAcc = engine.alloc([b, t, h, D], "f32");
  const dk = engine.alloc([b, t, hk, D], "bf16"), dv = engine.alloc([b, t, hv, D], "bf16");
  const dvKeys = hv < hk ? engine.alloc([b, t, hk, D], "f32") : null;
  fillRandom(q, 3);
  fillRandom(k, 1);
  fillRandom(v, 1);
  fillRandom(dout, 1);
  const dims = { b, t, h, hk, hv, d: D };
  flashAttentionForward(dev, { out: ptr(out), lse: ptr(lse), q: ptr(q), k: ptr(k), v: ptr(v), dims });
  const rows = b * t * h;
  dev.launch("flash_attention_delta", Math.ceil(rows / 256), 256, [
    ptr(delta),
    ptr(dout),
    ptr(out),
    { i32: b },
    { i32: t },
    { i32: h },
    { i32: D },
  ]);
  const scale = 1 / Math.sqrt(D);
  const launch = ({ name, rows: keys, threads, sharedBytes }: Kernel) => {
    driver.setMaxDynamicSharedMemory(dev.kernel(name), sharedBytes);
    return () =>
      dev.launch(name, [hk, b, Math.ceil(t / keys)], threads, [
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
      ], sharedBytes);
  };
  // Zeroed dq accumulator; dk, dv (or dv_keys) NaN so that unwritten elements show.
  const prepare = () => {
    driver.memsetD32(ptr(dqAcc), 0, rows * D, stream);
    driver.memsetD8(ptr(dk), 0xff, b * t * hk * D * 2, stream);
    driver.memsetD8(ptr(dv), 0xff, b * t * hv * D * 2, stream);
    if (dvKeys) driver.memsetD8(ptr(dvKeys), 0xff, b * t * hk * D * 4, stream);
  };
  const grads = () =>
    Promise.all([dqAcc, dk, dvKeys ?? dv].map((x) => engine.download(x) as Promise<Float32Array>));
  return {
    label: `B${b} T${t} H${h} K${hk} V${hv}`,
    tensors: [q, k, v, dout, out, lse, delta, dqAcc, dk, dv, ...(dvKeys ? [dvKeys] : [])],
    launch,
    prepare,
    grads,
    flops: 2.5 * 4 * b * h * t * t * D / 2,
    reps: t >= 131072 ? 3 : 5,
  };
}

/** Per kernel: TFLOP/s on the timed shapes, or null once wrong (or failed) on any shape. */
const tfOf = new Map<string, number[] | null>();
const short = (name: string) => name.replace("flash_attention_bwd_wg_d64", "wg_d64");

/** Runs `kernel` on a case: correctness against the reference (or records it), then timing. */
async function runOn(kernel: Kernel, cs: Case, index: number): Promise<void> {
  const timed = index < TIMED;
  const run = cs.launch(kernel);
  cs.prepare();
  run();
  const got = await cs.grads();
  let check = "reference", ok = true;
  if (cs.ref) {
    // Above 2^25 elements every 7th (each row of 64 still sampled several times per head).
    const diffs = got.map((g, i) => relDiff(g, cs.ref![i], g.length > 1 << 25 ? 7 : 1));
    ok = diffs.every((x) => x < BAD); // false for NaN
    check = diffs.map((x) => x.toExponential(1)).join(" ") + (ok ? "" : " WRONG");
  } else {
    cs.ref = got;
  }
  let perf = "";
  if (timed) {
    const ms = timeMs(run, cs.reps);
    const tf = cs.flops / ms / 1e9;
    perf = `${ms.toFixed(3)} ms ${tf.toFixed(0)} TF/s `;
    const seen = tfOf.has(kernel.name) ? tfOf.get(kernel.name)! : [];
    tfOf.set(kernel.name, ok && seen ? [...seen, tf] : null);
  } else if (!ok) {
    tfOf.set(kernel.name, null);
  }
  write(`  ${cs.label}: ${short(kernel.name)} ${perf}[${check}]\n`);
}

const mean = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;
/** The ranking over the kernels right on every shape so far, the winner line and its JSON. */
function winner(): void {
  const scored = [...tfOf].filter(([, xs]) => xs && xs.length === TIMED) as [string, number[]][];
  scored.sort((a, b) => mean(b[1]) - mean(a[1]));
  const show = ([name, xs]: [string, number[]]) =>
    `${short(name)} ${mean(xs).toFixed(0)} (${xs.map((x) => x.toFixed(0)).join("/")})`;
  write(`ranking (mean TF/s over the ${TIMED} timed shapes, right on all): ${scored.map(show).join(", ")}\n`);
  const best = scored[0];
  if (!best) {
    write("winner: none\n");
    return;
  }
  const cur = tfOf.get(CURRENT.name);
  const gain = cur ? ` x${(mean(best[1]) / mean(cur)).toFixed(3)} vs current` : "";
  write(`winner: ${best[0]} ${mean(best[1]).toFixed(0)} TF/s${gain}\n`);
  const k = [CURRENT, ...VARIANTS].find((x) => x.name === best[0])!;
  const dir = Deno.env.get("OUT") ?? ".";
  Deno.writeTextFileSync(
    `${dir}/winner_bwd64.json`,
    JSON.stringify({
      name: k.name,
      rows: k.rows,
      threads: k.threads,
      sharedBytes: k.sharedBytes,
      tflops: best[1],
    }) +
      "\n",
  );
}

const cases = SHAPES.map(makeCase);
write(`-- pass 1: ${short(CURRENT.name)} (reference)\n`);
for (const [i, cs] of cases.entries()) await runOn(CURRENT, cs, i);
for (const kernel of VARIANTS) {
  write(`-- pass: ${short(kernel.name)} (${kernel.threads} threads, ${kernel.sharedBytes} bytes)\n`);
  for (const [i, cs] of cases.entries()) {
    try {
      await runOn(kernel, cs, i);
    } catch (e) {
      // The next variants still run (after a kernel fault the context is gone and they fail too).
      write(`  ${cs.label}: ${short(kernel.name)} FAILED: ${(e as Error).message}\n`);
      tfOf.set(kernel.name, null);
      break;
    }
  }
  winner(); // after each pass: a hang in the next still leaves a winner line
}
try {
  cases.forEach((cs) => cs.tensors.forEach((x) => engine.free(x)));
  pools.forEach((x) => engine.free(x));
  engine.dispose();
} catch (e) {
  write(`cleanup failed (after a kernel fault): ${(e as Error).message}\n`);
}
