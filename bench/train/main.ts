// bench/train: training throughput of the TinyLlama-1.1B shape (22 layers, C 2048, 32/4 heads, D 64,
// F 5632, V 32000; or --shape qwen2.5-1.5b: 28 layers, C 1536, 12/2 heads, D 128, F 8960, V 151936;
// random init, per-KV-head RoPE bases, bf16, activation checkpointing, batch 1) at 4k..256k tokens on
// one GPU: tokens/s after warm-up, MFU against MFU_PEAK_FLOPS with model FLOPs
// 6*P*T + 6*L*T^2*C, peak device memory (the allocator's high-water mark, next to the memory estimate),
// and the same for the PyTorch peer (peer.py, run by this script). Prints one table, writes JSON.
// --granularity query rotates one key per query head (each with its group's base, so the model
// computes the same function as at kv) to measure what that path costs; the peer is kv only.
// Run: deno run --allow-all bench/train/main.ts [--side harpe|peer|both] [--lengths 4k,16k]
//      [--granularity kv|query] [--steps N] [--warmup N] [--device cuda|cpu]
//      [--shape tinyllama|qwen2.5-1.5b|tiny] [--out FILE]

import { parseConfig } from "../../lib/checkpoint/config.ts";
import type { Granularity, ModelConfig } from "../../lib/checkpoint/model_config.ts";
import { Rng } from "../../lib/data/rng.ts";
import { type CudaEngine, hasCuda } from "../../lib/engine/cuda/mod.ts";
import { type Engine, IGNORE_INDEX } from "../../lib/engine/engine.ts";
import { openEngine } from "../../lib/engine/open.ts";
import { ConfigError } from "../../lib/errors.ts";
import { Model, parameterLayout } from "../../lib/model/mod.ts";
import { AdamW, estimateTrainingMemory, memoryCapacity } from "../../lib/train/mod.ts";
import { writeTextFileAtomically } from "../../lib/util/atomic.ts";

/** Measured bf16 GEMM peak of the H200 (PyTorch, issue 6) that MFU is quoted against. */
const MFU_PEAK_FLOPS = 806e12;
const LENGTHS = [4096, 16384, 65536, 131072, 262144];
/** Per-KV-head RoPE bases of both sides (spread over the range of the paper's Table 2). */
export const HEAD_BASES = [1e6, 2.3e6, 3.6e6, 5e6];
/** Standard deviation of the random matrices (HF's initializer_range). */
export const INIT_STD = 0.02;
/** Random values are drawn once and every matrix uploads a window of them at its own offset. */
export const INIT_SPREAD = 1 << 20;
/** Tokens of the pass that shrinks the activations between lengths (so their memory can be released). */
const SHRINK_TOKENS = 16;
const LR = 1e-5;
const GRAD_CLIP = 1;
const SEED = 1234;
const GIB = 2 ** 30;

/** The shapes: the benchmark's (head dim 64); Qwen2.5-1.5B's sizes as a Llama (no q/k/v bias, untied
 * embeddings), for the head-dim-128 kernels and a 151936-column cross-entropy; and a tiny one that
 * proves the plumbing on the CPU engine. */
export const SHAPES: Readonly<Record<string, Record<string, unknown>>> = {
  tinyllama: {
    hidden_size: 2048,
    intermediate_size: 5632,
    num_hidden_layers: 22,
    num_attention_heads: 32,
    num_key_value_heads: 4,
    vocab_size: 32000,
  },
  "qwen2.5-1.5b": {
    hidden_size: 1536,
    intermediate_size: 8960,
    num_hidden_layers: 28,
    num_attention_heads: 12,
    num_key_value_heads: 2,
    vocab_size: 151936,
  },
  tiny: {
    hidden_size: 64,
    intermediate_size: 176,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 512,
  },
};

/** Timed steps per length (one step at 256k takes about a minute on an H200). */
function defaultSteps(t: number): number {
  return t <= 16384 ? 5 : t <= 65536 ? 2 : 1;
}

interface Options {
  side: "harpe" | "peer" | "both";
  lengths: number[];
  granularity: Granularity;
  steps?: number;
  warmup: number;
  device: "cuda" | "cpu";
  shape: string;
  out: string;
}

/** One length on one side: throughput and memory, or why it did not run. */
interface Row {
  t: number;
  steps?: number;
  seconds?: number[];
  tokens_per_s?: number;
  mfu?: number;
  loss?: number;
  /** Bytes: allocator high-water mark (harpe) or torch.cuda.max_memory_allocated (peer). */
  peak_bytes?: number;
  /** Bytes reserved from the driver after the steps (allocator cache included). */
  reserved_bytes?: number;
  /** Bytes in use on the whole device after the steps (cuMemGetInfo total - free; context included). */
  device_used_bytes?: number;
  /** harpe only: the memory estimate `harpe train` prints for this run. */
  estimate_bytes?: number;
  error?: string;
}

/**
 * A length as given on the command line: tokens, or k = 1024 tokens (ConfigError otherwise).
 *
 * @example
 * ```ts
 * parseLength("16k"); // 16384
 * ```
 */
export function parseLength(text: string): number {
  const match = /^(\d+)(k?)$/i.exec(text.trim());
  if (!match) throw new ConfigError(`--lengths: "${text}" is not a length`, { hint: "e.g. 4k,16k or 4096" });
  return Number(match[1]) * (match[2] ? 1024 : 1);
}

function parseOptions(args: string[]): Options {
  const value = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const side = value("--side") ?? "both";
  const device = value("--device") ?? "cuda";
  const shape = value("--shape") ?? (device === "cpu" ? "tiny" : "tinyllama");
  const granularity = value("--granularity") ?? "kv";
  if (!["harpe", "peer", "both"].includes(side)) throw new ConfigError(`--side must be harpe, peer or both`);
  if (granularity !== "kv" && granularity !== "query") {
    throw new ConfigError(`--granularity must be kv or query, got "${granularity}"`);
  }
  if (granularity === "query" && side === "peer") {
    throw new ConfigError(`--granularity query has no peer: peer.py rotates per key head (kv) only`, {
      hint: "use --side harpe, or --granularity kv for the peer",
    });
  }
  if (device !== "cuda" && device !== "cpu") throw new ConfigError(`--device must be cuda or cpu`);
  if (!(shape in SHAPES)) throw new ConfigError(`--shape must be one of ${Object.keys(SHAPES).join(", ")}`);
  const steps = value("--steps"), warmup = value("--warmup");
  return {
    side: side as Options["side"],
    lengths: value("--lengths")?.split(",").map(parseLength) ?? LENGTHS,
    granularity,
    steps: steps === undefined ? undefined : Number(steps),
    warmup: warmup === undefined ? 1 : Number(warmup),
    device,
    shape,
    out: value("--out") ??
      new URL(`../out/train${granularity === "kv" ? "" : `_${granularity}`}.json`, import.meta.url).pathname,
  };
}

/**
 * The HF config of a shape (plain RoPE: the peer patches in the per-head bases itself).
 *
 * @example
 * ```ts
 * hfConfig("tiny", 4096).num_hidden_layers; // 2
 * ```
 */
export function hfConfig(shape: string, maxLength: number): Record<string, unknown> {
  const s = SHAPES[shape];
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    ...s,
    head_dim: (s.hidden_size as number) / (s.num_attention_heads as number),
    hidden_act: "silu",
    max_position_embeddings: maxLength,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    attention_bias: false,
    mlp_bias: false,
    torch_dtype: "float32",
  };
}

/** harpe's config of a shape: the HF one with HEAD_BASES as HARPE bases, one per key head (`kv`), or
 * at `query` granularity one per query head, each its group's key-head base (the same function, run
 * through the query path: one rotated key per query head). */
function modelConfig(hf: Record<string, unknown>, granularity: Granularity): ModelConfig {
  const config = parseConfig(hf);
  const kv = Array.from({ length: config.numKvHeads }, (_, j) => HEAD_BASES[j % HEAD_BASES.length]);
  const group = config.numHeads / config.numKvHeads;
  const headBases = granularity === "kv"
    ? kv
    : Array.from({ length: config.numHeads }, (_, h) => kv[Math.floor(h / group)]);
  return { ...config, rope: { ...config.rope, type: "harpe", harpe: { headBases, granularity } } };
}

/** Model FLOPs of one step of T tokens (issue 6): 6 P T for the weights, 6 L T^2 C for attention. */
function modelFlops(config: ModelConfig, parameters: number, t: number): number {
  return 6 * parameters * t + 6 * config.numLayers * t * t * config.hiddenSize;
}

/** Normal(0, INIT_STD) matrices, unit norm weights. */
function randomInit(model: Model, rng: Rng): void {
  const largest = Math.max(...model.layout.slots.map((s) => s.size));
  const values = new Float32Array(largest + INIT_SPREAD);
  for (let i = 0; i < values.length; i++) values[i] = rng.nextNormal() * INIT_STD;
  model.layout.slots.forEach((slot) => {
    const offset = rng.nextBelow(INIT_SPREAD);
    const data = slot.shape.length >= 2
      ? values.subarray(offset, offset + slot.size)
      : new Float32Array(slot.size).fill(1);
    model.setParameter(slot.name, data);
  });
}

/** Next-token inputs and targets of one random row of T tokens. */
function randomBatch(rng: Rng, t: number, vocab: number): { inputs: Int32Array; targets: Int32Array } {
  const tokens = Int32Array.from({ length: t + 1 }, () => rng.nextBelow(vocab));
  const targets = tokens.slice(1);
  targets[t - 1] = IGNORE_INDEX;
  return { inputs: tokens.slice(0, t), targets };
}

function isCuda(engine: Engine): engine is CudaEngine {
  return engine.name.startsWith("cuda");
}

/** harpe's side: one model and optimizer, every length in turn (ascending: an out-of-memory ends it). */
async function runHarpe(
  hf: Record<string, unknown>,
  options: Options,
): Promise<{ device: string; rows: Row[] }> {
  const config = modelConfig(hf, options.granularity);
  const engine = await openEngine(options.device);
  const rows: Row[] = [];
  try {
    const rng = new Rng(SEED);
    const model = Model.create(engine, config, { precision: "bf16", checkpointing: true });
    randomInit(model, rng);
    const optimizer = new AdamW(engine, model.layout, { params: model.params, grads: model.grads }, {
      beta1: 0.9,
      beta2: 0.95,
      eps: 1e-8,
      weightDecay: 0.1,
    });
    let update = 0;
    const step = async (batch: { inputs: Int32Array; targets: Int32Array }) => {
      model.zeroGrads();
      const loss = await model.forwardBackward(batch.inputs, batch.targets, { batch: 1 });
      const norm = await optimizer.gradNorm();
      optimizer.step({ lr: LR, step: ++update, gradScale: norm > GRAD_CLIP ? GRAD_CLIP / norm : 1 });
      await engine.sync();
      return loss;
    };
    for (const t of [...options.lengths].sort((a, b) => a - b)) {
      const estimate = estimateTrainingMemory(config, {
        seqLen: t,
        batch: 1,
        precision: "bf16",
        checkpointing: true,
        device: options.device,
      });
      const row: Row = { t, estimate_bytes: estimate.total };
      rows.push(row);
      const capacity = memoryCapacity(engine);
      if (capacity.available !== undefined && estimate.total > capacity.available) {
        row.error = `estimate ${(estimate.total / GIB).toFixed(1)} GiB > ${
          (capacity.available / GIB).toFixed(1)
        } GiB available`;
        continue;
      }
      if (isCuda(engine)) engine.device.allocator.peak = engine.device.allocator.inUse;
      const steps = options.steps ?? defaultSteps(t);
      const seconds: number[] = [];
      let loss = NaN;
      try {
        for (let i = 0; i < options.warmup + steps; i++) {
          const batch = randomBatch(rng, t, config.vocabSize);
          const started = performance.now();
          loss = await step(batch);
          if (i >= options.warmup) seconds.push((performance.now() - started) / 1000);
        }
      } catch (error) {
        row.error = (error as Error).message.split("\n")[0];
        console.error(`harpe T=${t}: ${row.error}`);
        break;
      }
      const total = seconds.reduce((a, b) => a + b, 0);
      Object.assign(row, {
        steps,
        seconds,
        loss,
        tokens_per_s: steps * t / total,
        mfu: steps * modelFlops(config, model.layout.size, t) / total / MFU_PEAK_FLOPS,
      });
      if (isCuda(engine)) {
        const stats = engine.memoryStats();
        const info = engine.device.driver.memInfo();
        Object.assign(row, {
          peak_bytes: stats.peak,
          reserved_bytes: stats.reserved,
          device_used_bytes: info.total - info.free,
        });
        await step(randomBatch(rng, SHRINK_TOKENS, config.vocabSize));
        engine.device.allocator.emptyCache();
      }
      console.error(`harpe T=${t}: ${row.tokens_per_s?.toFixed(0)} tokens/s, loss ${loss.toFixed(3)}`);
    }
    return { device: engine.name, rows };
  } finally {
    engine.dispose();
  }
}

/** The peer's side through peer.py (one JSON object per length on its stdout). */
async function runPeer(
  hf: Record<string, unknown>,
  options: Options,
): Promise<{ rows: Row[]; note: string }> {
  const request = {
    config: hf,
    head_bases: HEAD_BASES.slice(0, hf.num_key_value_heads as number),
    lengths: options.lengths.map((t) => ({ t, steps: options.steps ?? defaultSteps(t) })),
    warmup: options.warmup,
    lr: LR,
    grad_clip: GRAD_CLIP,
    seed: SEED,
  };
  const rows: Row[] = [];
  let note = "";
  try {
    const script = new URL("./peer.py", import.meta.url).pathname;
    const result = await new Deno.Command("python3", {
      args: [script, JSON.stringify(request)],
      stderr: "inherit",
    })
      .output();
    for (const line of new TextDecoder().decode(result.stdout).split("\n")) {
      if (line.trim()) rows.push(JSON.parse(line));
    }
    if (!result.success) note = `peer.py exited with ${result.code}`;
  } catch (error) {
    note = `peer.py did not run: ${(error as Error).message}`;
  }
  return { rows, note };
}

/** The peer's rows at `query` granularity: not run, with the reason (peer.py patches one rotation per
 * key head into transformers, i.e. `kv`; compare harpe's query rows with a kv run instead). */
function queryPeer(options: Options): { rows: Row[]; note: string } {
  return {
    rows: options.lengths.map((t) => ({ t, error: "kv only" })),
    note: "peer: not run at --granularity query (peer.py rotates per key head, i.e. kv granularity, only); " +
      "compare these harpe rows with a --granularity kv run",
  };
}

/**
 * Runs the benchmark with command-line style `args` (see the file's first lines).
 *
 * @example
 * ```ts
 * await run(["--device", "cpu", "--shape", "tiny", "--lengths", "64,128", "--side", "harpe"]);
 * ```
 */
export async function run(args: string[] = []): Promise<void> {
  const options = parseOptions(args);
  if (options.device === "cuda" && options.side !== "peer" && !hasCuda()) {
    console.log(
      "bench train: skipped, no CUDA device here (--device cpu --shape tiny runs the harpe side on the CPU)",
    );
    return;
  }
  const hf = hfConfig(options.shape, Math.max(...options.lengths));
  const config = modelConfig(hf, options.granularity);
  const parameters = parameterLayout(config).size;
  const harpe = options.side === "peer" ? undefined : await runHarpe(hf, options);
  const peer = options.side === "harpe"
    ? undefined
    : options.granularity === "query"
    ? queryPeer(options)
    : await runPeer(hf, options);
  for (const row of peer?.rows ?? []) {
    if (row.tokens_per_s !== undefined) {
      row.mfu = row.tokens_per_s * modelFlops(config, parameters, row.t) / row.t / MFU_PEAK_FLOPS;
    }
  }
  const num = (x: number | undefined, digits = 0) => x === undefined ? "-" : x.toFixed(digits);
  const gib = (x: number | undefined) => x === undefined ? "-" : (x / GIB).toFixed(1);
  const cell = (row: Row | undefined, value: string) => row?.error ? `(${row.error})` : value;
  const table = options.lengths.map((t) => {
    const h = harpe?.rows.find((r) => r.t === t), p = peer?.rows.find((r) => r.t === t);
    const ratio = h?.tokens_per_s && p?.tokens_per_s ? (h.tokens_per_s / p.tokens_per_s).toFixed(2) : "-";
    return [
      String(t),
      cell(h, num(h?.tokens_per_s)),
      cell(p, num(p?.tokens_per_s)),
      ratio,
      num(h?.mfu, 2),
      num(p?.mfu, 2),
      gib(h?.peak_bytes),
      gib(h?.estimate_bytes),
      gib(p?.peak_bytes),
      gib(p?.reserved_bytes),
    ];
  });
  const header = [
    "T",
    "harpe tok/s",
    "peer tok/s",
    "harpe/peer",
    "harpe MFU",
    "peer MFU",
    "harpe peak GiB",
    "harpe estimate GiB",
    "peer peak GiB",
    "peer reserved GiB",
  ];
  console.log(
    `device: ${harpe?.device ?? options.device}; shape ${options.shape} (P = ${parameters}); ` +
      `granularity ${options.granularity}; MFU vs ${MFU_PEAK_FLOPS / 1e12} TFLOP/s, FLOPs 6*P*T + 6*L*T^2*C`,
  );
  console.log(`| ${header.join(" | ")} |\n|${header.map(() => "---").join("|")}|`);
  for (const row of table) console.log(`| ${row.join(" | ")} |`);
  if (peer?.note) console.log(peer.note);
  const result = {
    date: new Date().toISOString(),
    device: harpe?.device ?? options.device,
    shape: options.shape,
    config: hf,
    granularity: options.granularity,
    head_bases: config.rope.harpe?.headBases,
    parameters,
    mfu_peak_flops: MFU_PEAK_FLOPS,
    harpe: harpe?.rows ?? [],
    peer: peer?.rows ?? [],
    peer_note: peer?.note ?? "",
  };
  const slash = options.out.lastIndexOf("/");
  if (slash > 0) await Deno.mkdir(options.out.slice(0, slash), { recursive: true });
  await writeTextFileAtomically(options.out, JSON.stringify(result, null, 2) + "\n");
  console.log(`wrote ${options.out}`);
}

if (import.meta.main) await run(Deno.args);
