// The memory a training run will use on its device, counted buffer by buffer as lib/model, the
// optimizer and the engine allocate them, and the check that refuses a run that cannot fit.
//
// Letters as in lib/checkpoint/model_config.ts: B batch, T tokens, N = B*T, C channels, H query heads,
// K key heads, Hk rotated key heads (H at `query` granularity, else K), D head dim, R rotary dims,
// F feed-forward size, L layers, V vocabulary, P parameter count.

import type { ModelConfig } from "../checkpoint/model_config.ts";
import type { CudaEngine } from "../engine/cuda/mod.ts";
import type { Engine, TensorDType } from "../engine/engine.ts";
import { UnsupportedError } from "../errors.ts";
import { formatBytes } from "../util/progress.ts";
import { parameterLayout } from "../model/layout.ts";
import type { Precision } from "../model/model.ts";

/** Devices the estimate knows how the engine allocates on. */
export type MemoryDevice = "cpu" | "cuda";

/** Bytes per element as stored: the CPU engine keeps bf16 values in f32 arrays. */
const ELEMENT_BYTES: Readonly<Record<MemoryDevice, Readonly<Record<TensorDType, number>>>> = {
  cpu: { f32: 4, bf16: 4, i32: 4 },
  cuda: { f32: 4, bf16: 2, i32: 4 },
};

// What the CUDA engine allocates besides the model's tensors (mirrors lib/engine/cuda; the test
// tests/memory_estimate_test.ts checks these against the engine's exported values).
/** The caching allocator rounds small blocks up to CUDA_SMALL_ROUNDING bytes and blocks of at least
 * CUDA_LARGE_FROM bytes up to CUDA_LARGE_ROUNDING (lib/engine/cuda/allocator.ts). */
export const CUDA_SMALL_ROUNDING = 512;
export const CUDA_LARGE_ROUNDING = 2 * 1024 * 1024;
export const CUDA_LARGE_FROM = 1024 * 1024;
/** cuBLASLt workspace, allocated when the device opens (lib/engine/cuda/device.ts). */
export const CUDA_BLAS_WORKSPACE_BYTES = 32 * 1024 * 1024;
/** f32 logits one chunk of the fused lm head + cross-entropy may hold (lib/engine/cuda/engine.ts). */
export const CUDA_LOGITS_CHUNK_BYTES = 256 * 1024 * 1024;
/** Head dims with flash-attention kernels (lib/engine/cuda/flash_attention.ts): only they allocate the
 * f32 dQ accumulator in the backward. */
export const CUDA_FLASH_HEAD_DIMS: readonly number[] = [64, 128];

/** Rows of logits the CPU cross-entropy holds at once (lib/engine/cpu/cross_entropy.ts). */
export const CPU_CROSS_ENTROPY_CHUNK_ROWS = 64;
/** Resident memory of the Deno process before any tensor: 66-72 MiB measured for `harpe train --help`
 * and `harpe inspect` on the 2-core CI box; rounded up. */
export const CPU_RUNTIME_BYTES = 80 * 1024 * 1024;

/** One line of the breakdown. */
export interface MemoryLine {
  label: string;
  bytes: number;
  /** Scratch that exists only inside one op; only the largest of these counts toward the total. */
  transient?: boolean;
}

/** What a run will use at its peak on one device. */
export interface MemoryEstimate {
  device: MemoryDevice;
  /** Peak bytes: every persistent line plus the largest transient one. */
  total: number;
  lines: MemoryLine[];
}

/** The shape of a run (train.yaml seq_len, batch, precision, activation_checkpointing, device). */
export interface MemoryRun {
  seqLen: number; // T
  batch: number; // B
  precision: Precision;
  checkpointing: boolean;
  device: MemoryDevice;
}

/** Bytes the CUDA caching allocator takes from the driver for a request of `bytes`. */
export function cudaAllocationBytes(bytes: number): number {
  const size = Math.max(bytes, 1);
  const unit = size >= CUDA_LARGE_FROM ? CUDA_LARGE_ROUNDING : CUDA_SMALL_ROUNDING;
  return Math.ceil(size / unit) * unit;
}

/** Accumulates allocations into labelled lines, with the device's element sizes and rounding. */
class Tally {
  readonly lines: MemoryLine[] = [];
  slack = 0;
  constructor(readonly device: MemoryDevice) {}

  /** Bytes of one allocation of `elements` of `dtype`, and the rounding it adds. */
  bytes(elements: number, dtype: TensorDType): { exact: number; held: number } {
    const exact = elements * ELEMENT_BYTES[this.device][dtype];
    return { exact, held: this.device === "cuda" ? cudaAllocationBytes(exact) : exact };
  }

  /** A persistent line from allocations [elements, dtype], repeated `times`; rounding goes to slack. */
  add(label: string, allocations: [number, TensorDType][], times = 1): void {
    let exact = 0, held = 0;
    for (const [elements, dtype] of allocations) {
      if (elements === 0) continue; // a buffer this model does not have
      const b = this.bytes(elements, dtype);
      exact += b.exact;
      held += b.held;
    }
    if (exact === 0 || times === 0) return;
    this.lines.push({ label, bytes: exact * times });
    this.slack += (held - exact) * times;
  }

  /** A transient line: the bytes the allocator holds for the allocations while the op runs. */
  transient(label: string, allocations: [number, TensorDType][]): void {
    const held = allocations.reduce((sum, [elements, dtype]) => sum + this.bytes(elements, dtype).held, 0);
    if (held > 0) this.lines.push({ label, bytes: held, transient: true });
  }
}

/**
 * Counts the memory a training run of `config` uses at its peak on `run.device`: f32 master
 * parameters, gradients, AdamW m and v, the bf16 working weights, the activations (per layer, or under
 * checkpointing each layer's saved input, attention output and LSE plus one layer's recompute working
 * set), the backward scratch, and the largest op scratch (the lm-head + cross-entropy chunk buffers or
 * the attention backward's f32 buffers); on cuda also the cuBLASLt workspace and the allocator's
 * rounding, on cpu the runtime itself. The CUDA context (driver, kernels) is not counted: it is
 * already gone from the free memory the estimate is compared with.
 *
 * @example
 * ```ts
 * const estimate = estimateTrainingMemory(config, {
 *   seqLen: 131072, batch: 1, precision: "bf16", checkpointing: true, device: "cuda",
 * });
 * console.log(formatMemoryEstimate(estimate));
 * ```
 */
export function estimateTrainingMemory(config: ModelConfig, run: MemoryRun): MemoryEstimate {
  const { hiddenSize: C, intermediateSize: F, numHeads: H, numKvHeads: K, headDim: D } = config;
  const { numLayers: L, vocabSize: V } = config;
  const B = run.batch, T = run.seqLen, N = B * T;
  const Hk = config.rope.harpe?.granularity === "query" ? H : K;
  const R = config.rope.rotaryDim;
  const P = parameterLayout(config).size;
  const act: TensorDType = run.precision;
  const t = new Tally(run.device);

  // lib/model/model.ts and lib/train/optimizer.ts.
  t.add("parameters, f32 master", [[P, "f32"]]);
  t.add("gradients, f32", [[P, "f32"]]);
  t.add("AdamW m and v, f32", [[P, "f32"], [P, "f32"]]);
  if (run.precision === "bf16") t.add("working weights, bf16", [[P, "bf16"]]);

  // lib/model/activations.ts: what a layer recomputes under checkpointing (all but input, att, lse).
  const recomputable: [number, TensorDType][] = [
    [N * H * D, act], // q
    [N * K * D, act], // k
    [N * C, act], // ln1
    [N, "f32"], // rstd1
    [N * K * D, act], // v
    [N * C, act], // mid
    [N * C, act], // ln2
    [N, "f32"], // rstd2
    [N * F, act], // gate
    [N * F, act], // up
    [N * F, act], // act
  ];
  if (config.qkNorm) recomputable.push([N * H * D, act], [N * K * D, act], [N * H, "f32"], [N * K, "f32"]);
  if (Hk !== K) recomputable.push([N * Hk * D, act]); // kRot
  const savedLabel = run.checkpointing
    ? `saved per layer: input and attention output (x ${L})`
    : `activations per layer (x ${L})`;
  const saved: [number, TensorDType][] = [[N * C, act], [N * H * D, act]];
  t.add(savedLabel, run.checkpointing ? saved : [...saved, ...recomputable], L);
  t.add(`attention LSE, f32 (x ${L})`, [[B * H * T, "f32"]], L);
  if (run.checkpointing) t.add("recompute working set (one layer)", recomputable);

  const scratch: [number, TensorDType][] = [
    [N * Hk * D, act], // dkRot
    [N * C, act], // dres
    [N * C, act], // dmid
    [N * C, act], // dln
    [N * H * D, act], // datt
    [N * H * D, act], // dq
    [N * K * D, act], // dv
    [N * F, act], // dact
    [N * F, act], // dgate
    [N * F, act], // dup
  ];
  if (Hk !== K) scratch.push([N * K * D, act]); // dk
  if (config.qkNorm) scratch.push([N * H * D, act], [N * K * D, act]); // dqPre, dkPre
  t.add("backward scratch (one layer)", scratch);
  t.add("final residual stream and norm, tokens, targets, losses", [
    [N * C, act], // final (the input of layer L)
    [N * C, act], // lnf
    [N, "f32"], // rstdf
    [N, "f32"], // losses
    [N, "i32"], // tokens
    [N, "i32"], // positions
    [N, "i32"], // targets
  ]);
  t.add("RoPE tables, gradient norm", [
    [H * (R / 2), "f32"],
    [config.rope.harpe?.granularity === "query" ? 0 : K * (R / 2), "f32"],
    [1, "f32"],
  ]);

  if (run.device === "cuda") {
    t.lines.push({ label: "cuBLASLt workspace", bytes: CUDA_BLAS_WORKSPACE_BYTES });
    const chunk = Math.max(1, Math.min(N, Math.floor(CUDA_LOGITS_CHUNK_BYTES / (V * 4))));
    const logits: [number, TensorDType][] = [[chunk * V, "f32"]];
    if (run.precision === "bf16") logits.push([chunk * V, "bf16"]);
    t.transient(`lm-head + cross-entropy chunk buffers (${chunk} rows)`, logits);
    const flash = run.precision === "bf16" && CUDA_FLASH_HEAD_DIMS.includes(D) && Hk % K === 0;
    if (flash && Hk !== K) {
      t.transient("flash-attention backward: dQ f32 accumulator, delta, per-key-head dV f32", [
        [N * H * D, "f32"],
        [N * H, "f32"],
        [N * Hk * D, "f32"],
      ]);
    } else if (flash) {
      t.transient("flash-attention backward: dQ f32 accumulator and delta", [
        [N * H * D, "f32"],
        [N * H, "f32"],
      ]);
    } else t.transient("attention backward: delta f32", [[N * H, "f32"]]);
    if (t.slack > 0) t.lines.push({ label: "allocator rounding", bytes: t.slack });
  } else {
    const rows = Math.min(N, CPU_CROSS_ENTROPY_CHUNK_ROWS);
    // The CPU matmul transposes op(a) or b into a fresh array; the attention backward sums in f64.
    t.transient("largest op scratch (garbage-collected)", [[
      Math.max(
        2 * rows * V + V * C, // cross-entropy: logits, transposed logits (dweight), transposed head (dhidden)
        2 * (N * Hk * D + N * K * D), // attention backward: f64 dk and dv
        N * Math.max(F, H * D, C), // transposed dy of a weight gradient
        Math.max(F, H * D) * C, // transposed weight of an input gradient
        N * H * D, // rotated dq in the RoPE backward
      ),
      "f32",
    ]]);
    t.lines.push({ label: "Deno runtime", bytes: CPU_RUNTIME_BYTES });
  }
  const persistent = t.lines.filter((l) => !l.transient).reduce((sum, l) => sum + l.bytes, 0);
  const transient = Math.max(0, ...t.lines.filter((l) => l.transient).map((l) => l.bytes));
  return { device: run.device, total: persistent + transient, lines: t.lines };
}

/** Where a run's memory comes from: the device (or host RAM) and how much of it the run may use. */
export interface MemoryCapacity {
  /** e.g. "NVIDIA H200" or "host RAM". */
  name: string;
  /** Total bytes of the device, or undefined where unknown (RAM without --allow-sys). */
  total?: number;
  /** Bytes the run may use: free memory (plus what the engine already holds), or memory_limit. */
  available?: number;
  /** Set when `available` comes from train.yaml memory_limit. */
  limited?: boolean;
}

/** The CUDA engine, recognized by name so that nothing of lib/engine/cuda is loaded here. */
function isCuda(engine: Engine): engine is CudaEngine {
  return engine.name.startsWith("cuda");
}

/**
 * What `engine` offers a run: on cuda the device's total memory and what is free now plus what the
 * engine already holds (its workspace, counted in the estimate); on cpu the host RAM when the process
 * may read it (`--allow-sys`), else unknown. `limit` (train.yaml memory_limit) replaces the free memory.
 *
 * @example
 * ```ts
 * const capacity = memoryCapacity(engine, { limit: 60 * 2 ** 30 });
 * ```
 */
export function memoryCapacity(engine: Engine, options: { limit?: number } = {}): MemoryCapacity {
  let capacity: MemoryCapacity = { name: "host RAM" };
  if (isCuda(engine)) {
    const { free, total } = engine.device.driver.memInfo();
    capacity = { name: engine.device.info.name, total, available: free + engine.memoryStats().reserved };
  } else if (Deno.permissions.querySync({ name: "sys", kind: "systemMemoryInfo" }).state === "granted") {
    const info = Deno.systemMemoryInfo();
    capacity = { name: "host RAM", total: info.total, available: info.available };
  }
  return options.limit === undefined ? capacity : { ...capacity, available: options.limit, limited: true };
}

/** A run that will not fit: carries the estimate and the capacity it was compared with. */
export class TrainingMemoryError extends UnsupportedError {
  override name = "TrainingMemoryError";
  constructor(
    message: string,
    readonly estimate: MemoryEstimate,
    readonly capacity: MemoryCapacity,
    hint: string,
  ) {
    super(message, { expected: `<= ${capacity.available} bytes`, actual: estimate.total, hint });
  }
}

const GIB = 2 ** 30;
const gib = (bytes: number) => `${(bytes / GIB).toFixed(2)} GiB`;
/** GiB with two decimals from 1 GiB on, else the nearest unit (lines of the breakdown). */
const size = (bytes: number) => (bytes >= GIB ? gib(bytes) : formatBytes(bytes));

/** The settings that shrink a run, in the order worth trying, given how it is configured now. */
function remedies(run: MemoryRun): string {
  const steps = [`a shorter seq_len (now ${run.seqLen})`];
  if (run.batch > 1) steps.push(`a smaller batch (now ${run.batch}; raise grad_accum instead)`);
  // The CPU engine stores bf16 values in f32 arrays: there bf16 saves nothing.
  if (run.precision === "f32" && run.device === "cuda") steps.push("precision: bf16");
  if (!run.checkpointing) steps.push("activation_checkpointing: true");
  return `use ${steps.join(", or ")}`;
}

/**
 * Throws TrainingMemoryError (exit 2 through the CLI) when `estimate` exceeds `capacity.available`;
 * the hint names what to change in train.yaml. Does nothing when the capacity is unknown.
 *
 * @example
 * ```ts
 * checkMemoryFits(estimate, run, { capacity: { name: "test", total: 2 ** 30, available: 2 ** 30 } });
 * ```
 */
export function checkMemoryFits(
  estimate: MemoryEstimate,
  run: MemoryRun,
  options: { capacity: MemoryCapacity },
): void {
  const { capacity } = options;
  if (capacity.available === undefined || estimate.total <= capacity.available) return;
  const what = capacity.limited
    ? `memory_limit is ${gib(capacity.available)}`
    : `only ${gib(capacity.available)} is available on ${capacity.name}`;
  throw new TrainingMemoryError(
    `Training needs ${gib(estimate.total)} but ${what}`,
    estimate,
    capacity,
    remedies(run),
  );
}

/**
 * The estimate as text: "will use X GiB of Y GiB on <device>" and the breakdown, one line each.
 *
 * @example
 * ```ts
 * console.error(formatMemoryEstimate(estimate, { capacity: { name: "NVIDIA H200", total: 150e9 } }));
 * ```
 */
export function formatMemoryEstimate(
  estimate: MemoryEstimate,
  options: { capacity?: MemoryCapacity } = {},
): string {
  const capacity = options.capacity;
  const name = capacity?.name ?? estimate.device;
  let head = `memory: will use ${gib(estimate.total)}`;
  if (capacity?.limited && capacity.available !== undefined) {
    head += ` of ${gib(capacity.available)} (memory_limit) on ${name}`;
  } else if (capacity?.total !== undefined) {
    head += ` of ${gib(capacity.total)} on ${name}`;
    if (capacity.available !== undefined) head += ` (${gib(capacity.available)} available)`;
  } else head += ` on ${name} (its size is unknown here)`;
  const width = Math.max(...estimate.lines.map((l) => l.label.length));
  const body = estimate.lines.map((l) =>
    `  ${l.label.padEnd(width)}  ${size(l.bytes).padStart(10)}${
      l.transient ? "  (scratch; the largest counts)" : ""
    }`
  );
  return [head, ...body].join("\n");
}
