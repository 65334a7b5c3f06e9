// The CUDA engine: the Engine interface over device memory, with kernels from kernels/*.cu and GEMMs
// from cuBLASLt. Tensors may be f32 or bf16 (bf16 activations and working weights, f32 master weights,
// optimizer state and accumulation); every kernel accumulates in f32.

import { UnsupportedError } from "../../errors.ts";
import { bf16ToF32, f32ToBf16 } from "../../safetensors/dtypes.ts";
import type {
  AdamWArgs,
  AttentionBackwardArgs,
  CrossEntropyArgs,
  Engine,
  HostArray,
  MatmulArgs,
  RmsnormBackwardArgs,
  Tensor,
  TensorDType,
} from "../engine.ts";
import {
  type AttentionDims,
  attentionDims,
  expectDType,
  expectRank,
  expectShape,
  expectSize,
  expectSizes,
  floatType,
  ropeDims,
  type RopeTensors,
  sameFloatType,
} from "../checks.ts";
import { CudaDevice, type CudaDeviceOptions } from "./device.ts";
import type { KernelArg } from "./ffi/args.ts";
import { flashAttentionApplies, flashAttentionBackward, flashAttentionForward } from "./flash_attention.ts";
import {
  CE_THREADS,
  CLUSTER_MIN_ARCH,
  crossEntropyStride,
  prefetchKernelName,
  prefetchPlan,
} from "./cross_entropy_plan.ts";

/** Threads per block of elementwise kernels. */
const BLOCK = 256;
/** Elements one thread of a vectorized kernel handles per access (16 bytes of bf16). */
const VEC = 8;
/** Resident blocks per multiprocessor that grid-stride kernels aim for. */
const BLOCKS_PER_SM = 16;
/** Rows each block of a column-sum kernel (bias and RMSNorm weight gradients) adds up. */
const ROWS_PER_COLUMN_BLOCK = 256;
/** Warps of a column-sum block (COLUMN_WARPS in common.cuh). */
const COLUMN_WARPS = 8;
/** Warps per block of the attention kernels (one warp per query or key row). */
const ATTENTION_WARPS = 4;
/** Largest head dim the simple attention kernels hold in registers (8 per lane). */
const ATTENTION_MAX_HEAD_DIM = 256;
/** Bytes of f32 logits one chunk of the fused lm head + cross-entropy may hold. */
export const LOGITS_CHUNK_BYTES = 256 * 1024 * 1024;

/** A launch of the prefetching cross-entropy kernel (CudaEngine.crossEntropyLaunch). */
export interface CrossEntropyLaunch {
  /** Kernel name (prefetchKernelName). */
  name: string;
  /** Blocks per row. */
  cluster: number;
  /** Columns per block. */
  slice: number;
  /** Dynamic shared memory per block. */
  sharedBytes: number;
  /** Rows (clusters) resident at once: the grid is cluster x min(rows, resident). */
  resident: number;
}

const BYTES: Record<TensorDType, number> = { f32: 4, bf16: 2, i32: 4 };

/** A tensor in device memory; views share their base's allocation. */
export class CudaTensor implements Tensor {
  readonly size: number;
  constructor(
    readonly shape: readonly number[],
    readonly dtype: TensorDType,
    /** Device address of element 0. */
    readonly pointer: bigint,
    /** True for tensors from `alloc` (they own their memory). */
    readonly owner: boolean,
  ) {
    this.size = shape.reduce((a, b) => a * b, 1);
  }

  /** Address of element `index`. */
  at(index: number): bigint {
    return this.pointer + BigInt(index * BYTES[this.dtype]);
  }
}

/** Options of the CUDA engine. */
export interface CudaEngineOptions extends CudaDeviceOptions {
  /** For f32 GEMMs: "f32" (default, full precision) or "tf32" (tensor cores, ~1e-3 relative). */
  f32Compute?: "f32" | "tf32";
  /** Rows per chunk of the fused lm head + cross-entropy (default: as many as fit LOGITS_CHUNK_BYTES
   * of f32 logits); fewer rows use less memory. */
  crossEntropyChunkRows?: number;
}

function shapeSize(shape: readonly number[]): number {
  let size = 1;
  for (const d of shape) {
    expectShape("alloc", Number.isInteger(d) && d >= 0, `invalid tensor shape [${shape.join(", ")}]`);
    size *= d;
  }
  return size;
}

function i64(n: number): bigint {
  return BigInt(n);
}

/**
 * The GPU engine.
 *
 * @example
 * ```ts
 * const engine = await CudaEngine.open({ ordinal: 0 });
 * const x = engine.alloc([2, 3], "bf16");
 * engine.upload(x, new Float32Array([1, 2, 3, 4, 5, 6]));
 * console.log(await engine.download(x));
 * engine.dispose();
 * ```
 */
export class CudaEngine implements Engine {
  readonly name: string;
  /** Resident clusters of each prefetching cross-entropy kernel by "name:shared bytes" (a driver query). */
  readonly #residentClusters = new Map<string, number>();
  private constructor(
    readonly device: CudaDevice,
    private readonly f32Compute: "f32" | "tf32",
    private readonly chunkRows: number | undefined,
  ) {
    this.name = `cuda:${device.info.name}`;
  }

  /** Opens device `ordinal` (libraries, context, kernels). Throws CudaUnavailableError without CUDA. */
  static async open(options: CudaEngineOptions = {}): Promise<CudaEngine> {
    const chunkRows = options.crossEntropyChunkRows;
    expectShape(
      "CudaEngine",
      chunkRows === undefined || (Number.isInteger(chunkRows) && chunkRows > 0),
      `crossEntropyChunkRows must be a positive integer, got ${chunkRows}`,
    );
    return new CudaEngine(await CudaDevice.open(options), options.f32Compute ?? "f32", chunkRows);
  }

  // ---- memory ----------------------------------------------------------------------------------

  alloc(shape: readonly number[], dtype: TensorDType = "f32"): Tensor {
    const size = shapeSize(shape);
    const bytes = size * BYTES[dtype];
    const pointer = this.device.allocator.alloc(Math.max(bytes, 1));
    if (bytes > 0) this.device.driver.memsetD8(pointer, 0, bytes, this.device.stream);
    return new CudaTensor([...shape], dtype, pointer, true);
  }

  view(base: Tensor, shape: readonly number[], offset = 0): Tensor {
    const t = this.#t("view", "base", base);
    const size = shapeSize(shape);
    if (!Number.isInteger(offset) || offset < 0 || offset + size > t.size) {
      expectShape(
        "view",
        false,
        `elements ${offset}..${offset + size} do not fit in a tensor of ${t.size} elements`,
      );
    }
    return new CudaTensor([...shape], t.dtype, t.at(offset), false);
  }

  free(tensor: Tensor): void {
    const t = this.#t("free", "tensor", tensor);
    if (t.owner) this.device.allocator.release(t.pointer);
  }

  upload(tensor: Tensor, data: HostArray): void {
    const t = this.#t("upload", "tensor", tensor);
    expectSize("upload", "data", tensor, data.length);
    expectShape(
      "upload",
      (t.dtype === "i32") === (data instanceof Int32Array),
      `${data.constructor.name} cannot go into a ${t.dtype} tensor`,
    );
    const host = t.dtype === "bf16" ? f32ToBf16(data as Float32Array) : data;
    if (host.byteLength > 0) {
      this.device.upload(t.pointer, new Uint8Array(host.buffer, host.byteOffset, host.byteLength));
    }
  }

  download(tensor: Tensor): Promise<HostArray> {
    const t = this.#t("download", "tensor", tensor);
    const bytes = new Uint8Array(t.size * BYTES[t.dtype]);
    if (bytes.byteLength > 0) this.device.download(bytes, t.pointer);
    else this.device.synchronize();
    if (t.dtype === "i32") return Promise.resolve(new Int32Array(bytes.buffer));
    if (t.dtype === "bf16") return Promise.resolve(bf16ToF32(new Uint16Array(bytes.buffer)));
    return Promise.resolve(new Float32Array(bytes.buffer));
  }

  sync(): Promise<void> {
    this.device.synchronize();
    return Promise.resolve();
  }

  dispose(): void {
    this.device.dispose();
  }

  /** Device memory held by tensors now, at most so far, and reserved from the driver (bytes). */
  memoryStats(): { inUse: number; peak: number; reserved: number } {
    const a = this.device.allocator;
    return { inUse: a.inUse, peak: a.peak, reserved: a.reserved };
  }

  // ---- elementwise -------------------------------------------------------------------------------

  fill({ out, value }: { out: Tensor; value: number }): void {
    const t = this.#t("fill", "out", out);
    if (t.size === 0) return;
    const { driver, stream } = this.device;
    if (t.dtype === "bf16") {
      driver.memsetD16(t.pointer, f32ToBf16(new Float32Array([value]))[0], t.size, stream);
    } else {
      const bits = t.dtype === "i32"
        ? new Uint32Array(new Int32Array([value]).buffer)[0]
        : new Uint32Array(new Float32Array([value]).buffer)[0];
      driver.memsetD32(t.pointer, bits, t.size, stream);
    }
  }

  copy({ out, x }: { out: Tensor; x: Tensor }): void {
    const o = this.#t("copy", "out", out), s = this.#t("copy", "x", x);
    expectSize("copy", "x", x, out.size);
    expectShape(
      "copy",
      (o.dtype === "i32") === (s.dtype === "i32"),
      `cannot copy ${s.dtype} into ${o.dtype}`,
    );
    if (o.dtype === s.dtype) {
      if (o.size > 0) {
        this.device.driver.copyDtoD(o.pointer, s.pointer, o.size * BYTES[o.dtype], this.device.stream);
      }
    } else {
      this.#grid(`cast_${o.dtype}_${s.dtype}`, o.size, [o.pointer, s.pointer, i64(o.size)]);
    }
  }

  add({ out, a, b }: { out: Tensor; a: Tensor; b: Tensor }): void {
    const o = this.#t("add", "out", out), x = this.#t("add", "a", a), y = this.#t("add", "b", b);
    expectSize("add", "a", a, out.size);
    expectSize("add", "b", b, out.size);
    const name = `add_${floatType("add", "out", o)}_${floatType("add", "a", x)}_${floatType("add", "b", y)}`;
    this.#grid(name, o.size, [o.pointer, x.pointer, y.pointer, i64(o.size)]);
  }

  scale({ x, alpha }: { x: Tensor; alpha: number }): void {
    const t = this.#t("scale", "x", x);
    this.#grid(`scale_${floatType("scale", "x", t)}`, t.size, [t.pointer, { f32: alpha }, i64(t.size)]);
  }

  // ---- linear algebra ----------------------------------------------------------------------------

  matmul(args: MatmulArgs): void {
    const op = "matmul";
    const transA = args.transA ?? false, transB = args.transB ?? false;
    const o = this.#t(op, "out", args.out), a = this.#t(op, "a", args.a), b = this.#t(op, "b", args.b);
    const [ar, ac] = matrixDims("a", a), [br, bc] = matrixDims("b", b);
    const m = transA ? ac : ar, p = transA ? ar : ac;
    const pb = transB ? bc : br, n = transB ? br : bc;
    expectShape(op, p === pb, `inner dimensions differ: op(a) is [${m}, ${p}], op(b) is [${pb}, ${n}]`);
    expectSize(op, "out", o, m * n);
    const inputType = sameFloatType(op, { a, b });
    const outputType = floatType(op, "out", o);
    if (inputType === "f32" && outputType === "bf16") {
      throw new UnsupportedError(`${op}: f32 inputs with a bf16 out are not supported`, {
        hint: "compute into an f32 tensor and copy it to bf16",
      });
    }
    if (m === 0 || n === 0) return;
    if (p === 0) {
      if ((args.beta ?? 0) === 0) this.fill({ out: o, value: 0 });
      else this.scale({ x: o, alpha: args.beta ?? 0 });
      return;
    }
    this.device.blas.matmul(
      { m, n, k: p, transA, transB, inputType, outputType, compute: this.f32Compute },
      a.pointer,
      b.pointer,
      o.pointer,
      { alpha: args.alpha ?? 1, beta: args.beta ?? 0, stream: this.device.stream },
    );
  }

  biasAdd({ out, bias }: { out: Tensor; bias: Tensor }): void {
    const o = this.#t("biasAdd", "out", out), w = this.#t("biasAdd", "bias", bias);
    expectShape(
      "biasAdd",
      w.size > 0 && o.size % w.size === 0,
      `out (${o.size}) is not rows of bias (${w.size})`,
    );
    const name = `bias_add_${floatType("biasAdd", "out", o)}_${floatType("biasAdd", "bias", w)}`;
    if (o.size > 0) {
      this.device.launch(name, o.size / w.size, rowThreads(w.size), [o.pointer, w.pointer, { i32: w.size }]);
    }
  }

  biasBackward({ dbias, dout }: { dbias: Tensor; dout: Tensor }): void {
    const op = "biasBackward";
    const g = this.#t(op, "dbias", dbias), d = this.#t(op, "dout", dout);
    expectShape(op, g.size > 0 && d.size % g.size === 0, `dout (${d.size}) is not rows of dbias (${g.size})`);
    this.#columnSum(
      `column_sum_${floatType(op, "dbias", g)}_${floatType(op, "dout", d)}`,
      g.size,
      d.size / g.size,
      [g.pointer, d.pointer],
      [d.pointer],
    );
  }

  // ---- embedding ---------------------------------------------------------------------------------

  embeddingForward({ out, table, tokens }: { out: Tensor; table: Tensor; tokens: Tensor }): void {
    const op = "embeddingForward";
    const [v, c] = expectRank(op, "table", table, 2);
    const o = this.#t(op, "out", out), w = this.#t(op, "table", table), ids = this.#t(op, "tokens", tokens);
    expectDType(op, "tokens", ids, "i32");
    expectSize(op, "out", o, ids.size * c);
    const name = `embedding_fwd_${floatType(op, "out", o)}_${floatType(op, "table", w)}`;
    if (ids.size > 0) {
      this.device.launch(name, ids.size, rowThreads(c), [o.pointer, w.pointer, ids.pointer, { i32: c }, {
        i32: v,
      }]);
    }
  }

  embeddingBackward({ dtable, dout, tokens }: { dtable: Tensor; dout: Tensor; tokens: Tensor }): void {
    const op = "embeddingBackward";
    const [v, c] = expectRank(op, "dtable", dtable, 2);
    const g = this.#t(op, "dtable", dtable),
      d = this.#t(op, "dout", dout),
      ids = this.#t(op, "tokens", tokens);
    expectDType(op, "tokens", ids, "i32");
    expectSize(op, "dout", d, ids.size * c);
    const name = `embedding_bwd_${floatType(op, "dtable", g)}_${floatType(op, "dout", d)}`;
    if (ids.size > 0) {
      this.device.launch(name, ids.size, BLOCK, [g.pointer, d.pointer, ids.pointer, { i32: c }, { i32: v }]);
    }
  }

  // ---- normalization -----------------------------------------------------------------------------

  rmsnormForward(args: { out: Tensor; rstd: Tensor; x: Tensor; weight: Tensor; eps: number }): void {
    const op = "rmsnormForward";
    const rows = this.#normRows(op, args.x, args.weight, args.rstd);
    expectSize(op, "out", args.out, args.x.size);
    const act = sameFloatType(op, { x: args.x, out: args.out });
    const w = floatType(op, "weight", args.weight);
    expectDType(op, "rstd", args.rstd, "f32");
    if (rows === 0) return;
    const width = args.weight.size;
    this.device.launch(`rmsnorm_fwd_${act}_${w}`, rows, rowThreads(width), [
      this.#p(op, "out", args.out),
      this.#p(op, "rstd", args.rstd),
      this.#p(op, "x", args.x),
      this.#p(op, "weight", args.weight),
      { i32: width },
      { f32: args.eps },
    ]);
  }

  rmsnormBackward(args: RmsnormBackwardArgs): void {
    const op = "rmsnormBackward";
    const rows = this.#normRows(op, args.x, args.weight, args.rstd);
    expectSize(op, "dx", args.dx, args.x.size);
    expectSize(op, "dout", args.dout, args.x.size);
    expectSize(op, "dweight", args.dweight, args.weight.size);
    const act = sameFloatType(op, { x: args.x, dx: args.dx, dout: args.dout });
    const w = floatType(op, "weight", args.weight), g = floatType(op, "dweight", args.dweight);
    expectDType(op, "rstd", args.rstd, "f32");
    if (rows === 0) return;
    const width = args.weight.size;
    const dout = this.#p(op, "dout", args.dout),
      x = this.#p(op, "x", args.x),
      rstd = this.#p(op, "rstd", args.rstd);
    this.device.launch(`rmsnorm_bwd_${act}_${w}`, rows, rowThreads(width), [
      this.#p(op, "dx", args.dx),
      dout,
      x,
      this.#p(op, "weight", args.weight),
      rstd,
      { i32: width },
      { i32: args.accumulate ? 1 : 0 },
    ]);
    this.#columnSum(`rmsnorm_dweight_${g}_${act}`, width, rows, [
      this.#p(op, "dweight", args.dweight),
      dout,
      x,
      rstd,
    ], [dout, x]);
  }

  // ---- rotary position embedding -----------------------------------------------------------------

  ropeForward(
    { out, x, invFreq, positions }: { out: Tensor; x: Tensor; invFreq: Tensor; positions: Tensor },
  ): void {
    const op = "ropeForward";
    const dims = this.#ropeDims(op, { heads: out, shared: x, invFreq, positions });
    const act = sameFloatType(op, { out, x });
    const vec = ropeVectorized(dims, [this.#p(op, "out", out), this.#p(op, "x", x)]);
    const units = dims.rows * dims.ho * (dims.d - dims.half) / (vec ? VEC : 1);
    this.#units(`rope_fwd_${act}`, units, [
      this.#p(op, "out", out),
      this.#p(op, "x", x),
      this.#p(op, "invFreq", invFreq),
      this.#p(op, "positions", positions),
      i64(dims.rows),
      { i32: dims.ho },
      { i32: dims.hx },
      { i32: dims.d },
      { i32: 2 * dims.half },
      { i32: vec ? 1 : 0 },
    ]);
  }

  ropeBackward(
    { dx, dout, invFreq, positions }: { dx: Tensor; dout: Tensor; invFreq: Tensor; positions: Tensor },
  ): void {
    const op = "ropeBackward";
    const dims = this.#ropeDims(op, { heads: dout, shared: dx, invFreq, positions });
    const act = sameFloatType(op, { dx, dout });
    const vec = ropeVectorized(dims, [this.#p(op, "dx", dx), this.#p(op, "dout", dout)]);
    const units = dims.rows * dims.hx * (dims.d - dims.half) / (vec ? VEC : 1);
    this.#units(`rope_bwd_${act}`, units, [
      this.#p(op, "dx", dx),
      this.#p(op, "dout", dout),
      this.#p(op, "invFreq", invFreq),
      this.#p(op, "positions", positions),
      i64(dims.rows),
      { i32: dims.ho },
      { i32: dims.hx },
      { i32: dims.d },
      { i32: 2 * dims.half },
      { i32: vec ? 1 : 0 },
    ]);
  }

  // ---- attention ---------------------------------------------------------------------------------

  attentionForward(
    { out, lse, q, k, v }: { out: Tensor; lse: Tensor; q: Tensor; k: Tensor; v: Tensor },
  ): void {
    const op = "attentionForward";
    const dims = cudaAttentionDims(op, q, k, v);
    expectSize(op, "out", out, q.size);
    expectSize(op, "lse", lse, dims.b * dims.h * dims.t);
    expectDType(op, "lse", lse, "f32");
    const act = sameFloatType(op, { q, k, v, out });
    const rows = dims.b * dims.h * dims.t;
    if (rows === 0) return;
    const p = (name: string, t: Tensor) => this.#p(op, name, t);
    const ptrs = { out: p("out", out), lse: p("lse", lse), q: p("q", q), k: p("k", k), v: p("v", v) };
    if (flashAttentionApplies(dims, { dtype: act, pointers: [ptrs.out, ptrs.q, ptrs.k, ptrs.v] })) {
      flashAttentionForward(this.device, { ...ptrs, dims });
      return;
    }
    this.device.launch(`attention_fwd_${act}`, Math.ceil(rows / ATTENTION_WARPS), 32 * ATTENTION_WARPS, [
      this.#p(op, "out", out),
      this.#p(op, "lse", lse),
      this.#p(op, "q", q),
      this.#p(op, "k", k),
      this.#p(op, "v", v),
      ...attentionArgs(dims),
    ]);
  }

  attentionBackward(args: AttentionBackwardArgs): void {
    const op = "attentionBackward";
    const dims = cudaAttentionDims(op, args.q, args.k, args.v);
    expectSize(op, "dq", args.dq, args.q.size);
    expectSize(op, "dk", args.dk, args.k.size);
    expectSize(op, "dv", args.dv, args.v.size);
    expectSize(op, "dout", args.dout, args.q.size);
    expectSize(op, "out", args.out, args.q.size);
    expectSize(op, "lse", args.lse, dims.b * dims.h * dims.t);
    expectDType(op, "lse", args.lse, "f32");
    const { dq, dk, dv, dout, q, k, v, out } = args;
    const act = sameFloatType(op, { q, k, v, out, dout, dq, dk, dv });
    const rows = dims.b * dims.h * dims.t;
    if (rows === 0) return;
    const p = (name: string, t: Tensor) => this.#p(op, name, t);
    const ptrs = { dq: p("dq", dq), dk: p("dk", dk), dv: p("dv", dv), dout: p("dout", dout), q: p("q", q) };
    const saved = { k: p("k", k), v: p("v", v), out: p("out", out), lse: p("lse", args.lse) };
    const pointers = [...Object.values(ptrs), saved.k, saved.v, saved.out];
    if (flashAttentionApplies(dims, { dtype: act, pointers })) {
      flashAttentionBackward(this.device, { ...ptrs, ...saved, dims });
      return;
    }
    const delta = this.alloc([rows], "f32") as CudaTensor;
    const block = 32 * ATTENTION_WARPS;
    this.device.launch(`attention_delta_${act}`, Math.ceil(rows / ATTENTION_WARPS), block, [
      delta.pointer,
      p("dout", dout),
      p("out", out),
      { i32: dims.b },
      { i32: dims.t },
      { i32: dims.h },
      { i32: dims.d },
    ]);
    const shared = [
      p("dout", dout),
      p("q", q),
      p("k", k),
      p("v", v),
      p("lse", args.lse),
      delta.pointer,
      ...attentionArgs(dims),
    ];
    this.device.launch(`attention_dq_${act}`, Math.ceil(rows / ATTENTION_WARPS), block, [
      p("dq", dq),
      ...shared,
    ]);
    const kRows = dims.b * dims.hk * dims.t, vRows = dims.b * dims.hv * dims.t;
    this.device.launch(`attention_dkv_${act}`, Math.ceil(kRows / ATTENTION_WARPS), block, [
      p("dk", dk),
      ...shared,
      { i32: 1 },
    ]);
    this.device.launch(`attention_dkv_${act}`, Math.ceil(vRows / ATTENTION_WARPS), block, [
      p("dv", dv),
      ...shared,
      { i32: 0 },
    ]);
    this.free(delta);
  }

  // ---- feed-forward ------------------------------------------------------------------------------

  swigluForward({ out, gate, up }: { out: Tensor; gate: Tensor; up: Tensor }): void {
    const op = "swigluForward";
    expectSize(op, "gate", gate, out.size);
    expectSize(op, "up", up, out.size);
    const act = sameFloatType(op, { out, gate, up });
    this.#grid(`swiglu_fwd_${act}`, out.size, [
      this.#p(op, "out", out),
      this.#p(op, "gate", gate),
      this.#p(op, "up", up),
      i64(out.size),
    ]);
  }

  swigluBackward(
    { dgate, dup, dout, gate, up }: { dgate: Tensor; dup: Tensor; dout: Tensor; gate: Tensor; up: Tensor },
  ): void {
    const op = "swigluBackward";
    expectSizes(op, dout.size, { dgate, dup, gate, up });
    const act = sameFloatType(op, { dout, dgate, dup, gate, up });
    this.#grid(`swiglu_bwd_${act}`, dout.size, [
      this.#p(op, "dgate", dgate),
      this.#p(op, "dup", dup),
      this.#p(op, "dout", dout),
      this.#p(op, "gate", gate),
      this.#p(op, "up", up),
      i64(dout.size),
    ]);
  }

  // ---- loss --------------------------------------------------------------------------------------

  crossEntropy(args: CrossEntropyArgs): void {
    const op = "crossEntropy";
    const [v, c] = expectRank(op, "weight", args.weight, 2);
    const n = args.targets.size;
    expectDType(op, "targets", args.targets, "i32");
    expectDType(op, "losses", args.losses, "f32");
    expectSize(op, "hidden", args.hidden, n * c);
    expectSize(op, "losses", args.losses, n);
    if (args.dhidden) expectSize(op, "dhidden", args.dhidden, n * c);
    if (args.dweight) expectSize(op, "dweight", args.dweight, v * c);
    const act = sameFloatType(op, { hidden: args.hidden, weight: args.weight });
    const hidden = this.#t(op, "hidden", args.hidden), weight = this.#t(op, "weight", args.weight);
    const targets = this.#t(op, "targets", args.targets), losses = this.#t(op, "losses", args.losses);
    const dhidden = args.dhidden && this.#t(op, "dhidden", args.dhidden);
    const dweight = args.dweight && this.#t(op, "dweight", args.dweight);
    const wantGrad = dhidden !== undefined || dweight !== undefined;
    if (n === 0) return;
    // Logits rows padded to `stride` >= V columns (aligned rows for any V): columns [V, stride) are
    // never written by the GEMM nor read as logits, and the dlogits GEMMs read only [0, V) (lda = stride).
    const stride = crossEntropyStride(v);
    const chunk = Math.max(1, Math.min(n, this.chunkRows ?? Math.floor(LOGITS_CHUNK_BYTES / (stride * 4))));
    const logits = this.alloc([chunk, stride], "f32") as CudaTensor;
    // dlogits must have the GEMM input type: in place over the f32 logits, or a bf16 buffer.
    const dlogits = wantGrad && act === "bf16" ? this.alloc([chunk, stride], "bf16") as CudaTensor : logits;
    const blas = this.device.blas, stream = this.device.stream, compute = this.f32Compute;
    const vec = stride % 4 === 0 && aligned([logits.pointer, dlogits.pointer]);
    const prefetch = vec ? this.crossEntropyLaunch(dlogits.dtype, v) : undefined;
    for (let r0 = 0; r0 < n; r0 += chunk) {
      const rows = Math.min(chunk, n - r0);
      const hiddenChunk = hidden.at(r0 * c);
      blas.matmul(
        { m: rows, n: v, k: c, transB: true, ldc: stride, inputType: act, outputType: "f32", compute },
        hiddenChunk,
        weight.pointer,
        logits.pointer,
        { stream },
      );
      const rowArgs: KernelArg[] = [logits.pointer, dlogits.pointer, losses.at(r0), targets.at(r0)];
      const scaleArg = { f32: args.scale ?? 1 }, gradArg = { i32: wantGrad ? 1 : 0 };
      const type = dlogits.dtype;
      if (prefetch) {
        const rest = [{ i32: rows }, { i32: v }, { i32: stride }, { i32: prefetch.slice }, scaleArg, gradArg];
        this.device.launch(
          prefetch.name,
          prefetch.cluster * Math.min(rows, prefetch.resident),
          CE_THREADS,
          [...rowArgs, ...rest],
          prefetch.sharedBytes,
        );
      } else {
        const rest = [{ i32: v }, { i32: stride }, scaleArg, gradArg, { i32: vec ? 1 : 0 }];
        this.device.launch(`cross_entropy_rows_${type}`, rows, CE_THREADS, [...rowArgs, ...rest]);
      }
      if (dhidden) {
        blas.matmul(
          {
            m: rows,
            n: c,
            k: v,
            lda: stride,
            inputType: act,
            outputType: floatType(op, "dhidden", dhidden),
            compute,
          },
          dlogits.pointer,
          weight.pointer,
          dhidden.at(r0 * c),
          { stream },
        );
      }
      if (dweight) {
        blas.matmul(
          {
            m: v,
            n: c,
            k: rows,
            transA: true,
            lda: stride,
            inputType: act,
            outputType: floatType(op, "dweight", dweight),
            compute,
          },
          dlogits.pointer,
          hiddenChunk,
          dweight.pointer,
          { beta: 1, stream },
        );
      }
    }
    if (dlogits !== logits) this.free(dlogits);
    this.free(logits);
  }

  // ---- optimizer ---------------------------------------------------------------------------------

  sumSquares({ out, x, accumulate }: { out: Tensor; x: Tensor; accumulate?: boolean }): void {
    const op = "sumSquares";
    expectSize(op, "out", out, 1);
    expectDType(op, "out", out, "f32");
    const o = this.#t(op, "out", out), t = this.#t(op, "x", x);
    if (!accumulate) this.fill({ out: o, value: 0 });
    this.#grid(`sum_squares_${floatType(op, "x", t)}`, t.size, [o.pointer, t.pointer, i64(t.size)]);
  }

  adamw(args: AdamWArgs): void {
    const op = "adamw";
    expectSizes(op, args.param.size, { grad: args.grad, m: args.m, v: args.v });
    expectShape(op, args.step >= 1, `step must count from 1, got ${args.step}`);
    for (const [name, t] of [["param", args.param], ["m", args.m], ["v", args.v]] as const) {
      expectDType(op, name, t, "f32");
    }
    this.#grid(`adamw_${floatType(op, "grad", args.grad)}`, args.param.size, [
      this.#p(op, "param", args.param),
      this.#p(op, "grad", args.grad),
      this.#p(op, "m", args.m),
      this.#p(op, "v", args.v),
      { f32: args.lr },
      { f32: args.beta1 },
      { f32: args.beta2 },
      { f32: args.eps },
      { f32: args.weightDecay },
      { f32: 1 - Math.pow(args.beta1, args.step) },
      { f32: 1 - Math.pow(args.beta2, args.step) },
      { f32: args.gradScale ?? 1 },
      i64(args.param.size),
    ]);
  }

  /**
   * The launch of the prefetching cross-entropy kernel for rows of `v` columns (rows aligned, any v), as
   * crossEntropy makes it: the kernel's name, blocks per row and columns per block (prefetchPlan: the
   * fewest blocks per row whose slices hold it, or `cluster` blocks when given, for a comparison), its
   * dynamic shared memory and how many rows (clusters) can be resident at once, the grid's limit since
   * rows are assigned to blocks statically; undefined when the rows are too wide (for one block before
   * sm_90, which has no thread-block clusters, or for 8 blocks), or no such cluster can be resident.
   *
   * @example
   * ```ts
   * engine.crossEntropyLaunch("bf16", 128256); // { name: "cross_entropy_rows_prefetch3_bf16", cluster: 3, ... }
   * ```
   */
  crossEntropyLaunch(type: TensorDType, v: number, cluster?: number): CrossEntropyLaunch | undefined {
    const { info } = this.device;
    const plan = prefetchPlan(v, info.maxSharedMemoryPerBlock, {
      clusters: info.arch >= CLUSTER_MIN_ARCH,
      cluster,
    });
    if (plan === undefined) return undefined;
    const { slice, sharedBytes } = plan;
    const name = prefetchKernelName(plan.cluster, type);
    this.device.allowSharedMemory(name, sharedBytes); // before the occupancy query
    const key = `${name}:${sharedBytes}`;
    const resident = this.#residentClusters.get(key) ??
      (plan.cluster === 1
        ? info.multiprocessors
        : this.device.driver.maxActiveClusters(this.device.kernel(name), {
          clusterBlocks: plan.cluster,
          block: CE_THREADS,
          sharedBytes,
        }));
    this.#residentClusters.set(key, resident);
    if (resident === 0) return undefined;
    return { name, cluster: plan.cluster, slice, sharedBytes, resident };
  }

  // ---- helpers -----------------------------------------------------------------------------------

  #t(op: string, name: string, tensor: Tensor): CudaTensor {
    if (!(tensor instanceof CudaTensor)) {
      throw new UnsupportedError(`${op}: ${name} is not a CUDA tensor`, {
        hint: "allocate it with the same engine",
      });
    }
    return tensor;
  }

  #p(op: string, name: string, tensor: Tensor): bigint {
    return this.#t(op, name, tensor).pointer;
  }

  /** Launches an elementwise kernel over `n` elements (threads take VEC elements at a time). */
  #grid(name: string, n: number, args: KernelArg[]): void {
    if (n === 0) return;
    const blocks = Math.min(Math.ceil(n / VEC / BLOCK), this.device.info.multiprocessors * BLOCKS_PER_SM);
    this.device.launch(name, blocks, BLOCK, args);
  }

  /** Launches a grid-stride kernel with one thread per unit of work. */
  #units(name: string, n: number, args: KernelArg[]): void {
    if (n === 0) return;
    const blocks = Math.min(Math.ceil(n / BLOCK), this.device.info.multiprocessors * BLOCKS_PER_SM);
    this.device.launch(name, blocks, BLOCK, args);
  }

  /** Launches a column-sum kernel: args, then rows, width, rows per block and whether each thread
   * takes VEC columns (when the [rows, width] inputs `rowPointers` allow 16-byte accesses). */
  #columnSum(name: string, width: number, rows: number, args: KernelArg[], rowPointers: bigint[]): void {
    if (rows === 0 || width === 0) return;
    const vec = width % VEC === 0 && aligned(rowPointers);
    const columns = vec ? width / VEC : width;
    const grid: [number, number, number] = [
      Math.ceil(columns / 32),
      Math.ceil(rows / ROWS_PER_COLUMN_BLOCK),
      1,
    ];
    this.device.launch(name, grid, 32 * COLUMN_WARPS, [
      ...args,
      { i32: rows },
      { i32: width },
      { i32: ROWS_PER_COLUMN_BLOCK },
      { i32: vec ? 1 : 0 },
    ]);
  }

  #normRows(op: string, x: Tensor, weight: Tensor, rstd: Tensor): number {
    const width = weight.size;
    expectShape(op, width > 0 && x.size % width === 0, `x (${x.size}) is not rows of weight (${width})`);
    const rows = x.size / width;
    expectSize(op, "rstd", rstd, rows);
    return rows;
  }

  #ropeDims(
    op: string,
    t: RopeTensors,
  ): { rows: number; hx: number; ho: number; d: number; half: number } {
    const dims = ropeDims(op, t);
    expectDType(op, "invFreq", t.invFreq, "f32");
    expectDType(op, "positions", t.positions, "i32");
    return dims;
  }
}

/** The shared attention checks plus this engine's head-dim limit. */
function cudaAttentionDims(op: string, q: Tensor, k: Tensor, v: Tensor): AttentionDims {
  const dims = attentionDims(op, q, k, v);
  const d = dims.d;
  if (d > ATTENTION_MAX_HEAD_DIM) {
    throw new UnsupportedError(`${op}: head dim ${d} is above ${ATTENTION_MAX_HEAD_DIM}`, {
      expected: ATTENTION_MAX_HEAD_DIM,
      actual: d,
    });
  }
  return dims;
}

function attentionArgs(dims: AttentionDims): KernelArg[] {
  return [
    { i32: dims.b },
    { i32: dims.t },
    { i32: dims.h },
    { i32: dims.hk },
    { i32: dims.hv },
    { i32: dims.d },
    { f32: 1 / Math.sqrt(dims.d) },
  ];
}

/** True when every pointer allows 16-byte accesses. */
function aligned(pointers: bigint[]): boolean {
  return pointers.every((p) => (p & 15n) === 0n);
}

/** Whether the rope kernels can take 8 pairs per thread: R/2, D - R and D multiples of 8, aligned. */
function ropeVectorized(dims: { d: number; half: number }, pointers: bigint[]): boolean {
  return dims.half % VEC === 0 && (dims.d - 2 * dims.half) % VEC === 0 && aligned(pointers);
}

function matrixDims(name: string, t: Tensor): [number, number] {
  const s = t.shape;
  expectShape("matmul", s.length >= 2, `${name} must be at least 2-D, got [${s.join(", ")}]`);
  const cols = s[s.length - 1];
  return [cols === 0 ? 0 : t.size / cols, cols];
}

/** Threads for a row kernel: about 8 elements per thread, whole warps, at most 1024. */
function rowThreads(width: number): number {
  return Math.min(1024, Math.max(32, Math.ceil(width / 8 / 32) * 32));
}
