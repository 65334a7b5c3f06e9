// bench/gpu_ops: in one run on the GPU, the device-to-device copy bandwidth, every memory-bound
// kernel's achieved bandwidth next to it, and cuBLASLt bf16 GEMM TFLOP/s next to PyTorch's for the
// TinyLlama-1.1B shapes. Prints a markdown table; writes JSON to the path given with --out.
// Run: deno run --allow-all bench/gpu_ops/main.ts [--out FILE]

import { CudaEngine, type CudaTensor } from "../../lib/engine/cuda/mod.ts";
import type { Tensor } from "../../lib/engine/engine.ts";
import type { GemmShape } from "../../lib/engine/cuda/ffi/cublaslt.ts";
import { CE_HELD_COLUMNS, CE_THREADS, crossEntropyStride } from "../../lib/engine/cuda/cross_entropy_plan.ts";

/** TinyLlama-1.1B: C channels, F feed-forward, H heads, K key heads, D head dim, V vocabulary. */
const MODEL = { C: 2048, F: 5632, H: 32, K: 4, D: 64, V: 32000 };
/** Tokens for the memory-bound kernels (large enough that one pass is far beyond L2 and launch cost). */
const N = 65536;
/** Token counts of the GEMM table. */
const GEMM_TOKENS = [4096, 16384];
/** Timed repetitions (median reported) and warm-up runs. */
const REPS = 20;
const WARMUP = 3;
/** Elements of the optimizer benchmarks (a quarter of the 1.1B parameters). */
const PARAMS = 256 * 1024 * 1024;

const outIndex = Deno.args.indexOf("--out");
const outFile = outIndex >= 0 ? Deno.args[outIndex + 1] : null;

const engine = await CudaEngine.open();
const { device } = engine;
const { driver, stream } = device;

/** Median milliseconds of `fn` over REPS runs, timed with events on the engine's stream. */
function timeMs(fn: () => void): number {
  for (let i = 0; i < WARMUP; i++) fn();
  const events = Array.from({ length: 2 * REPS }, () => driver.eventCreate());
  for (let r = 0; r < REPS; r++) {
    driver.eventRecord(events[2 * r], stream);
    fn();
    driver.eventRecord(events[2 * r + 1], stream);
  }
  const times = Array.from(
    { length: REPS },
    (_, r) => driver.eventElapsedMs(events[2 * r], events[2 * r + 1]),
  );
  events.forEach((e) => driver.eventDestroy(e));
  times.sort((a, b) => a - b);
  return times[REPS >> 1];
}

function random(t: Tensor, scale = 1): void {
  const data = new Float32Array(t.size);
  for (let i = 0; i < data.length; i++) data[i] = scale * (Math.random() * 2 - 1);
  engine.upload(t, data);
}

const rows: { kernel: string; ms: number; gbps: number; ofCopy: number }[] = [];
let copyGbps = 0;
function bandwidth(kernel: string, bytes: number, fn: () => void): void {
  const ms = timeMs(fn);
  const gbps = bytes / ms / 1e6;
  if (kernel.startsWith("copy")) copyGbps = gbps;
  rows.push({ kernel, ms, gbps, ofCopy: copyGbps ? gbps / copyGbps : 1 });
  console.error(`${kernel}: ${ms.toFixed(3)} ms, ${gbps.toFixed(0)} GB/s`);
}

const { C, F, H, K, D, V } = MODEL;
{
  const bytes = 2 * 1024 ** 3;
  const a = engine.alloc([bytes / 4]), b = engine.alloc([bytes / 4]);
  const pa = (a as CudaTensor).pointer, pb = (b as CudaTensor).pointer;
  bandwidth("copy (cuMemcpyDtoD, 2 GiB)", 2 * bytes, () => driver.copyDtoD(pb, pa, bytes, stream));
  engine.free(a);
  engine.free(b);
}
{
  const x = engine.alloc([N, C], "bf16"),
    y = engine.alloc([N, C], "bf16"),
    out = engine.alloc([N, C], "bf16");
  const xf = engine.alloc([N, C], "f32");
  const w = engine.alloc([C], "bf16"), rstd = engine.alloc([N], "f32"), dw = engine.alloc([C], "f32");
  const tokens = engine.alloc([N], "i32"), table = engine.alloc([MODEL.V, C], "bf16");
  random(x, 3), random(y), random(w), random(xf), random(table);
  engine.upload(tokens, Int32Array.from({ length: N }, () => Math.floor(Math.random() * V)));
  const act = N * C * 2;
  bandwidth("cast f32 -> bf16 [N, C]", N * C * 6, () => engine.copy({ out, x: xf }));
  bandwidth("add bf16 [N, C]", 3 * act, () => engine.add({ out, a: x, b: y }));
  bandwidth("scale bf16 [N, C]", 2 * act, () => engine.scale({ x: out, alpha: 1.0001 }));
  bandwidth("bias add bf16 [N, C]", 2 * act, () => engine.biasAdd({ out, bias: w }));
  bandwidth("bias grad (column sum) [N, C]", act, () => engine.biasBackward({ dbias: dw, dout: x }));
  bandwidth("embedding forward [N, C]", 2 * act, () => engine.embeddingForward({ out, table, tokens }));
  bandwidth(
    "rmsnorm forward [N, C]",
    2 * act,
    () => engine.rmsnormForward({ out, rstd, x, weight: w, eps: 1e-5 }),
  );
  bandwidth(
    "rmsnorm backward (dx + dweight) [N, C]",
    5 * act,
    () => engine.rmsnormBackward({ dx: out, dweight: dw, dout: y, x, weight: w, rstd }),
  );
  const q = engine.view(x, [N, H, D]), qo = engine.view(out, [N, H, D]);
  const invFreq = engine.alloc([H, D / 2], "f32");
  engine.upload(
    invFreq,
    Float32Array.from({ length: H * D / 2 }, (_, i) => 10000 ** (-2 * (i % (D / 2)) / D)),
  );
  const positions = engine.alloc([N], "i32");
  engine.upload(positions, Int32Array.from({ length: N }, (_, i) => i));
  bandwidth(
    "rope forward q [N, H, D]",
    2 * act,
    () => engine.ropeForward({ out: qo, x: q, invFreq, positions }),
  );
  bandwidth(
    "rope backward q [N, H, D]",
    2 * act,
    () => engine.ropeBackward({ dx: qo, dout: q, invFreq, positions }),
  );
  for (const t of [x, y, out, xf, w, rstd, dw, tokens, table, invFreq, positions]) engine.free(t);
}
{
  const gate = engine.alloc([N, F], "bf16"),
    up = engine.alloc([N, F], "bf16"),
    out = engine.alloc([N, F], "bf16");
  const dgate = engine.alloc([N, F], "bf16"), dup = engine.alloc([N, F], "bf16");
  random(gate, 3), random(up), random(out);
  const act = N * F * 2;
  bandwidth("swiglu forward [N, F]", 3 * act, () => engine.swigluForward({ out, gate, up }));
  bandwidth(
    "swiglu backward [N, F]",
    5 * act,
    () => engine.swigluBackward({ dgate, dup, dout: out, gate, up }),
  );
  for (const t of [gate, up, out, dgate, dup]) engine.free(t);
}
{
  const param = engine.alloc([PARAMS]), grad = engine.alloc([PARAMS]), m = engine.alloc([PARAMS]);
  const v = engine.alloc([PARAMS]), norm = engine.alloc([1]);
  random(param), random(grad);
  bandwidth("sum of squares f32 [P]", PARAMS * 4, () => engine.sumSquares({ out: norm, x: grad }));
  bandwidth(
    "adamw f32 [P]",
    PARAMS * 28,
    () =>
      engine.adamw({
        param,
        grad,
        m,
        v,
        lr: 1e-4,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weightDecay: 0.1,
        step: 10,
      }),
  );
  for (const t of [param, grad, m, v, norm]) engine.free(t);
}
/** Rows of the cross-entropy row-kernel benchmarks; the Llama-3 and Qwen2 vocabularies; a vocabulary
 * one block holds with overflow columns (past the 32768 held in registers, read from shared memory);
 * GPT-2's vocabulary (V % 4 != 0: padded rows; one block with 17492 overflow columns); a vocabulary
 * near one block's widest slice (57344 on sm_90); Yi's (clusters of 2 with register-only slices) and
 * Gemma's (clusters of 5). */
const CE_ROWS = 2048;
const LLAMA3_VOCAB = 128256;
const QWEN2_VOCAB = 151936;
const OVERFLOW_VOCAB = 40000;
const GPT2_VOCAB = 50257;
const WIDE_VOCAB = 56000;
const YI_VOCAB = 64000;
const GEMMA_VOCAB = 256000;
/** Times one cross-entropy row kernel on [CE_ROWS, vocab] f32 logits -> bf16 dlogits, rows stored at
 * the engine's padded stride (crossEntropyStride; the padding holds random values, as the kernels must
 * ignore whatever is there) (bytes: the V logits of a row read once + its V dlogits written once). The
 * prefetching kernel is launched as the engine launches it (crossEntropyLaunch: the same blocks per row,
 * columns per block, shared memory and grid of resident rows); `cluster` forces a cluster size instead
 * (a comparison), `twoPass` takes the two-pass kernel. */
function crossEntropyRows(vocab: number, options: { cluster?: number; twoPass?: boolean } = {}): void {
  const stride = crossEntropyStride(vocab);
  const logits = engine.alloc([CE_ROWS, stride], "f32"), dlogits = engine.alloc([CE_ROWS, stride], "bf16");
  const losses = engine.alloc([CE_ROWS], "f32"), targets = engine.alloc([CE_ROWS], "i32");
  random(logits, 5);
  engine.upload(targets, Int32Array.from({ length: CE_ROWS }, () => Math.floor(Math.random() * vocab)));
  const p = (t: Tensor) => (t as CudaTensor).pointer;
  const head = [p(logits), p(dlogits), p(losses), p(targets)];
  const scaleGrad = [{ f32: 1 }, { i32: 1 }];
  const plan = options.twoPass ? undefined : engine.crossEntropyLaunch("bf16", vocab, options.cluster);
  let launch: () => void, label: string;
  if (plan) {
    const { name: kernel, cluster, slice, sharedBytes, resident } = plan;
    const grid = cluster * Math.min(CE_ROWS, resident);
    const args = [...head, { i32: CE_ROWS }, { i32: vocab }, { i32: stride }, { i32: slice }, ...scaleGrad];
    launch = () => device.launch(kernel, grid, CE_THREADS, args, sharedBytes);
    const overflow = Math.max(0, slice - CE_HELD_COLUMNS);
    label =
      `cross-entropy rows, prefetch, ${cluster === 1 ? "1 block" : `clusters of ${cluster}`} x ${slice}` +
      ` columns (${overflow} in shared memory), ${grid / cluster} resident rows` +
      (stride === vocab ? "" : `, rows padded to ${stride}`) +
      (options.cluster === undefined ? " (engine)" : " (forced, not the engine's choice)");
  } else {
    const args = [...head, { i32: vocab }, { i32: stride }, ...scaleGrad, { i32: 1 }];
    launch = () => device.launch("cross_entropy_rows_bf16", CE_ROWS, CE_THREADS, args);
    label =
      `cross-entropy rows, two passes (fallback, only V > 458752; forced here at ${vocab} for comparison)`;
  }
  bandwidth(`${label} [${CE_ROWS}, ${vocab}]`, CE_ROWS * vocab * 6, launch);
  for (const t of [logits, dlogits, losses, targets]) engine.free(t);
}
crossEntropyRows(V);
crossEntropyRows(OVERFLOW_VOCAB);
crossEntropyRows(LLAMA3_VOCAB);
crossEntropyRows(LLAMA3_VOCAB, { cluster: 4 });
crossEntropyRows(QWEN2_VOCAB);
crossEntropyRows(GPT2_VOCAB);
crossEntropyRows(GPT2_VOCAB, { cluster: 2 });
crossEntropyRows(QWEN2_VOCAB, { cluster: 4 });
crossEntropyRows(WIDE_VOCAB);
crossEntropyRows(YI_VOCAB);
crossEntropyRows(GEMMA_VOCAB);
crossEntropyRows(LLAMA3_VOCAB, { twoPass: true });

// ---- the fused lm head + cross-entropy op (3 GEMMs + the row kernel per chunk) -------------------
const fused: { tokens: number; ms: number; tflops: number }[] = [];
for (const T of GEMM_TOKENS) {
  const hidden = engine.alloc([T, C], "bf16"), weight = engine.alloc([V, C], "bf16");
  const dhidden = engine.alloc([T, C], "bf16"), dweight = engine.alloc([V, C], "f32");
  const losses = engine.alloc([T], "f32"), targets = engine.alloc([T], "i32");
  random(hidden), random(weight, 0.05);
  engine.upload(targets, Int32Array.from({ length: T }, () => Math.floor(Math.random() * V)));
  const ms = timeMs(() =>
    engine.crossEntropy({ losses, hidden, weight, targets, dhidden, dweight, scale: 1 / T })
  );
  fused.push({ tokens: T, ms, tflops: 6 * T * V * C / ms / 1e9 });
  for (const t of [hidden, weight, dhidden, dweight, losses, targets]) engine.free(t);
}

// ---- GEMMs ------------------------------------------------------------------------------------
type Named = GemmShape & { name: string };
const gemms: Named[] = [];
for (const T of GEMM_TOKENS) {
  const add = (
    name: string,
    m: number,
    n: number,
    k: number,
    trans: { transA?: boolean; transB?: boolean },
  ) => gemms.push({ name: `${name} T=${T}`, m, n, k, ...trans, inputType: "bf16", outputType: "bf16" });
  add("q/o proj fwd", T, C, C, { transB: true });
  add("k/v proj fwd", T, K * D, C, { transB: true });
  add("gate/up fwd", T, F, C, { transB: true });
  add("down fwd", T, C, F, { transB: true });
  add("gate/up dX", T, C, F, {});
  add("gate/up dW", F, C, T, { transA: true });
  add("lm head fwd", T, V, C, { transB: true });
}
const gemmRows: { name: string; ms: number; tflops: number; torch?: number }[] = [];
for (const g of gemms) {
  const a = engine.alloc([g.m * g.k], "bf16"),
    b = engine.alloc([g.k * g.n], "bf16"),
    c = engine.alloc([g.m * g.n], "bf16");
  random(a), random(b);
  const p = (t: Tensor) => (t as CudaTensor).pointer;
  const ms = timeMs(() => device.blas.matmul(g, p(a), p(b), p(c), { stream }));
  gemmRows.push({ name: g.name, ms, tflops: 2 * g.m * g.n * g.k / ms / 1e9 });
  for (const t of [a, b, c]) engine.free(t);
}
engine.dispose();

const torchRun = await new Deno.Command("python3", {
  args: [new URL("./torch_gemm.py", import.meta.url).pathname, JSON.stringify(gemms)],
  stdout: "piped",
  stderr: "piped",
}).output();
let torchVersion = "unavailable";
if (torchRun.code === 0) {
  const parsed = JSON.parse(new TextDecoder().decode(torchRun.stdout));
  torchVersion = parsed.torch;
  for (const row of gemmRows) row.torch = parsed.results[row.name]?.tflops;
} else {
  console.error(new TextDecoder().decode(torchRun.stderr));
}

const info = device.info;
const header =
  `${new Date().toISOString().slice(0, 10)}, ${info.name} (sm_${info.arch}, ${info.multiprocessors} SMs), ` +
  `CUDA driver API ${Math.floor(info.driverVersion / 1000)}.${
    (info.driverVersion % 1000) / 10
  }, cuBLASLt ${device.blas.version()}, PyTorch ${torchVersion}`;
const lines = [
  header,
  "",
  `Memory-bound kernels (bf16 activations, N = ${N} tokens, TinyLlama-1.1B widths); bytes = each input read once + each output written once:`,
  "",
  "| kernel | ms | GB/s | of copy |",
  "|---|---|---|---|",
  ...rows.map((r) =>
    `| ${r.kernel} | ${r.ms.toFixed(3)} | ${r.gbps.toFixed(0)} | ${(100 * r.ofCopy).toFixed(0)}% |`
  ),
  "",
  "cuBLASLt bf16 GEMMs (f32 accumulation, bf16 out) vs torch.matmul, median of 20:",
  "",
  "| GEMM | m x n x k | harpe ms | harpe TFLOP/s | PyTorch TFLOP/s | harpe / PyTorch |",
  "|---|---|---|---|---|---|",
  ...gemmRows.map((r, i) => {
    const g = gemms[i];
    const ratio = r.torch ? `${(100 * r.tflops / r.torch).toFixed(0)}%` : "-";
    return `| ${r.name} | ${g.m} x ${g.n} x ${g.k} | ${r.ms.toFixed(3)} | ${r.tflops.toFixed(0)} | ${
      r.torch?.toFixed(0) ?? "-"
    } | ${ratio} |`;
  }),
  "",
  "Fused lm head + cross-entropy (forward and backward: logits, dlogits, dhidden, dweight in chunks):",
  "",
  "| tokens | ms | TFLOP/s (6 N V C) |",
  "|---|---|---|",
  ...fused.map((f) => `| ${f.tokens} | ${f.ms.toFixed(3)} | ${f.tflops.toFixed(0)} |`),
];
console.log(lines.join("\n"));
if (outFile) {
  await Deno.writeTextFile(
    outFile,
    JSON.stringify({ header, kernels: rows, gemms: gemmRows, fused }, null, 2),
  );
}
