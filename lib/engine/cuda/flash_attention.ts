// Flash attention on the CUDA engine: launches the FlashAttention-2 kernels of
// kernels/flash_attention_*.cu (mma.sync tensor cores; bf16, causal, grouped heads, head dims 64, 128),
// and on sm_90 the Hopper wgmma kernels (forward: flash_attention_fwd_wg.cu at both head dims; backward:
// flash_attention_bwd_wg_d64.cu at 64, flash_attention_bwd_wg_d128.cu at 128).
// The CudaEngine's attention ops call these for bf16 tensors with those head dims and keep the simple
// kernels (attention.cu) for the rest. dq is summed over key blocks with f32 vector reductions into
// a zeroed [B, T, H, D] f32 buffer (4 bytes per element of q, freed after the call), then scaled and
// rounded to bf16. Fewer value than key heads (`query` granularity: one rotated key per query head,
// the checkpoint's value heads) works too: dv is summed over the key heads sharing a value head
// through an f32 [B, T, K, D] buffer.

import { ShapeError } from "../../errors.ts";
import type { AttentionDims } from "../checks.ts";
import type { CudaDevice } from "./device.ts";

/** Head dims the flash kernels are instantiated for. */
export const FLASH_HEAD_DIMS: readonly number[] = [64, 128];
/** Query rows per forward block (4 warps of 32 rows: FA_BR, FA_FWD_THREADS) and key rows per tile
 * (FA_BC). */
const FWD_ROWS = 128;
const FWD_KEYS = 64;
const FWD_THREADS = 128;
/** Keys per backward block (FB_BN, 8 warps) and query rows per backward step (FB_BM) of the mma.sync
 * kernels. */
const BWD_KEYS = 128;
const BWD_THREADS = 256;
const BWD_ROWS = 64;
/** A flash kernel and its launch shape: `rows` = query rows per forward block or keys per backward
 * block, `threads` per block, dynamic shared bytes. */
interface FlashKernel {
  name: string;
  rows: number;
  threads: number;
  sharedBytes: number;
}
/** The Hopper (sm_90) kernels for head dim 64. Forward (kernels/flash_attention_fwd_wg.cu): 192 query
 * rows in three consumer warpgroups + a producer warpgroup; shared memory FW_SHARED_BYTES(64): q [192][64],
 * 3 stages of k and v [128][64] bf16, 6 mbarriers, 1024 bytes to align the tiles. Backward
 * (kernels/flash_attention_bwd_wg_d64.cu): 128 keys in two consumer warpgroups + a producer warpgroup,
 * 64 queries per step; shared memory WQ_SHARED_BYTES: k, v [128][64], q and dout [4 stages][64][64],
 * ds^T [2 steps][128][64] bf16, lse and delta [4 stages][2][64] f32, 12 mbarriers (full, empty [4],
 * ready, free [2]), 1024 to align. */
const WGMMA_FORWARD: FlashKernel = {
  name: "flash_attention_fwd_wg_d64",
  rows: 192,
  threads: 512,
  sharedBytes: 3 * 8192 + 3 * 2 * 16384 + 6 * 8 + 1024,
};
/** The Hopper forward for head dim 128 (kernels/flash_attention_fwd_wg.cu): 128 query rows in two
 * consumer warpgroups + a producer warpgroup; shared memory FW_SHARED_BYTES(128): q [2][128][64], 3 stages
 * of k and v [2][128][64] bf16, 6 mbarriers, 1024 bytes to align the tiles. */
const WGMMA_FORWARD_D128: FlashKernel = {
  name: "flash_attention_fwd_wg_d128",
  rows: 128,
  threads: 384,
  sharedBytes: 2 * 16384 + 3 * 4 * 16384 + 6 * 8 + 1024,
};
const WGMMA_BACKWARD: FlashKernel = {
  name: "flash_attention_bwd_wg_d64",
  rows: BWD_KEYS,
  threads: 384,
  sharedBytes: 2 * 16384 + 2 * 4 * 8192 + 2 * 16384 + 4 * 2 * 64 * 4 + 12 * 8 + 1024,
};
/** The Hopper backward for head dim 128 (kernels/flash_attention_bwd_wg_d128.cu): 128 keys in two
 * consumer warpgroups + a producer warpgroup, 64 queries per step; shared memory WD_SHARED_BYTES
 * (165920): k, v [2][128][64] and ds^T [2][128][64] bf16, 2 stages of q and dout [2][64][64] bf16 and lse
 * and delta [2][64] f32, 2 x 2 mbarriers, 1024 to align. */
const WGMMA_BACKWARD_D128: FlashKernel = {
  name: "flash_attention_bwd_wg_d128",
  rows: BWD_KEYS,
  threads: 384,
  sharedBytes: 4 * 16384 + 2 * 16384 + 2 * (4 * 64 * 128 + 2 * 64 * 4) + 2 * 2 * 8 + 1024,
};
/** bf16 elements of padding per shared-memory row (FA_PAD). */
const PAD = 8;
/** Threads per block of the delta and dq kernels; dq blocks per multiprocessor. */
const ROW_THREADS = 256;
const DQ_BLOCKS_PER_SM = 8;
/** Largest grid z (query or key blocks per head). */
const MAX_GRID_Z = 65535;

/** Device pointers of the forward: out [B, T, H, D], lse f32 [B, H, T], q [B, T, H, D], k [B, T, K,
 * D], v [B, T, KV, D] (bf16 unless noted, 16-byte aligned). */
export interface FlashForwardArgs {
  out: bigint;
  lse: bigint;
  q: bigint;
  k: bigint;
  v: bigint;
  dims: AttentionDims;
}

/** Device pointers of the backward: dq [B, T, H, D], dk [B, T, K, D], dv [B, T, KV, D], then the forward's
 * inputs, out and lse, and dout [B, T, H, D]. */
export interface FlashBackwardArgs extends FlashForwardArgs {
  dq: bigint;
  dk: bigint;
  dv: bigint;
  dout: bigint;
}

/**
 * Throws a ShapeError unless the flash kernels take these sizes: head dim 64 or 128, H a multiple of
 * K, K a multiple of KV, T small enough for the grid.
 *
 * @example
 * ```ts
 * checkFlashDims({ b: 1, t: 4096, h: 32, hk: 4, hv: 4, d: 64 }); // ok
 * checkFlashDims({ b: 1, t: 4096, h: 32, hk: 4, hv: 4, d: 96 }); // ShapeError
 * ```
 */
export function checkFlashDims(dims: AttentionDims): void {
  const { t, h, hk, d } = dims;
  if (!FLASH_HEAD_DIMS.includes(d)) {
    throw new ShapeError(`flash attention: head dim ${d} is not supported`, {
      expected: FLASH_HEAD_DIMS.join(" or "),
      actual: d,
      hint: `use a model with head dim ${FLASH_HEAD_DIMS.join(" or ")}, or the simple attention kernels`,
    });
  }
  if (!(hk > 0 && h % hk === 0)) {
    throw new ShapeError(`flash attention: ${h} query heads are not a multiple of ${hk} key heads`, {
      expected: `a divisor of ${h}`,
      actual: hk,
    });
  }
  if (!(dims.hv > 0 && hk % dims.hv === 0)) {
    throw new ShapeError(`flash attention: ${hk} key heads are not a multiple of ${dims.hv} value heads`, {
      expected: `a divisor of ${hk}`,
      actual: dims.hv,
    });
  }
  if (Math.ceil(t / Math.min(FWD_ROWS, BWD_KEYS)) > MAX_GRID_Z) {
    throw new ShapeError(`flash attention: ${t} tokens are too many for one call`, {
      expected: MAX_GRID_Z * Math.min(FWD_ROWS, BWD_KEYS),
      actual: t,
    });
  }
}

/**
 * Whether the engine should use the flash kernels: bf16 tensors, a supported head dim, key heads a
 * multiple of the value heads, and 16-byte aligned pointers.
 *
 * @example
 * ```ts
 * flashAttentionApplies({ b: 1, t: 128, h: 4, hk: 2, hv: 2, d: 64 }, { dtype: "bf16", pointers: [q, k, v] }); // true
 * ```
 */
export function flashAttentionApplies(
  dims: AttentionDims,
  tensors: { dtype: string; pointers: readonly bigint[] },
): boolean {
  return tensors.dtype === "bf16" && FLASH_HEAD_DIMS.includes(dims.d) && dims.hv > 0 &&
    dims.hk % dims.hv === 0 &&
    Math.ceil(dims.t / BWD_KEYS) <= MAX_GRID_Z && tensors.pointers.every((p) => (p & 15n) === 0n);
}

/** Dynamic shared memory of the forward kernel for head dim `d` (bytes). */
function forwardSharedBytes(d: number): number {
  return (FWD_ROWS + 4 * FWD_KEYS) * (d + PAD) * 2;
}

/** Dynamic shared memory of the backward kernel for head dim `d` (bytes): k and v [BWD_KEYS][d + PAD],
 * q and dout tiles [2][BWD_ROWS][d + PAD], p and ds [BWD_ROWS][BWD_KEYS + PAD], the staged lse and
 * delta rows. */
function backwardSharedBytes(d: number): number {
  return (2 * BWD_KEYS + 4 * BWD_ROWS) * (d + PAD) * 2 + 2 * BWD_ROWS * (BWD_KEYS + PAD) * 2 +
    4 * BWD_ROWS * 4;
}

/** The forward kernel for head dim `d` on `device`: wgmma on sm_90, else mma.sync. */
function forwardKernel(device: CudaDevice, d: number): FlashKernel {
  if (d === 64 && device.info.arch === 90) return WGMMA_FORWARD;
  if (d === 128 && device.info.arch === 90) return WGMMA_FORWARD_D128;
  return {
    name: `flash_attention_fwd_d${d}`,
    rows: FWD_ROWS,
    threads: FWD_THREADS,
    sharedBytes: forwardSharedBytes(d),
  };
}

/** The backward kernel for head dim `d` on `device`: wgmma on sm_90, else mma.sync. */
function backwardKernel(device: CudaDevice, d: number): FlashKernel {
  if (device.info.arch === 90 && d === 64) return WGMMA_BACKWARD;
  if (device.info.arch === 90 && d === 128) return WGMMA_BACKWARD_D128;
  return {
    name: `flash_attention_bwd_d${d}`,
    rows: BWD_KEYS,
    threads: BWD_THREADS,
    sharedBytes: backwardSharedBytes(d),
  };
}

/**
 * Enqueues the causal flash-attention forward: writes out and lse (see FlashForwardArgs).
 *
 * @example
 * ```ts
 * flashAttentionForward(engine.device, { out, lse, q, k, v, dims: { b: 1, t: 8192, h: 32, hk: 4, d: 64 } });
 * ```
 */
export function flashAttentionForward(device: CudaDevice, args: FlashForwardArgs): void {
  const { dims } = args;
  checkFlashDims(dims);
  if (dims.b * dims.t === 0 || dims.h === 0) return;
  const scale = 1 / Math.sqrt(dims.d);
  const kernel = forwardKernel(device, dims.d);
  device.launch(
    kernel.name,
    [dims.h, dims.b, Math.ceil(dims.t / kernel.rows)],
    kernel.threads,
    [
      args.out,
      args.lse,
      args.q,
      args.k,
      args.v,
      { i32: dims.t },
      { i32: dims.h },
      { i32: dims.hk },
      { i32: dims.hv },
      { f32: scale * Math.LOG2E },
    ],
    kernel.sharedBytes,
  );
}

/**
 * Enqueues the causal flash-attention backward: writes dq, dk, dv (see FlashBackwardArgs). Uses
 * temporary f32 buffers: delta [B, H, T], the dq accumulator [B, T, H, D] and, with fewer value than
 * key heads, the per-key-head dv shares [B, T, K, D].
 *
 * @example
 * ```ts
 * flashAttentionBackward(engine.device, { dq, dk, dv, dout, out, lse, q, k, v, dims });
 * ```
 */
export function flashAttentionBackward(device: CudaDevice, args: FlashBackwardArgs): void {
  const { dims } = args;
  checkFlashDims(dims);
  const { b, t, h, hk, hv, d } = dims;
  const rows = b * t * h;
  if (rows === 0) return;
  const { driver, stream, allocator } = device;
  const scale = 1 / Math.sqrt(d);
  const delta = allocator.alloc(rows * 4);
  const dqAcc = allocator.alloc(rows * d * 4);
  const dvKeys = hv === hk ? 0n : allocator.alloc(b * t * hk * d * 4);
  driver.memsetD32(dqAcc, 0, rows * d, stream);
  device.launch("flash_attention_delta", Math.ceil(rows / ROW_THREADS), ROW_THREADS, [
    delta,
    args.dout,
    args.out,
    { i32: b },
    { i32: t },
    { i32: h },
    { i32: d },
  ]);
  const kernel = backwardKernel(device, d);
  device.launch(
    kernel.name,
    [hk, b, Math.ceil(t / kernel.rows)],
    kernel.threads,
    [
      dqAcc,
      args.dk,
      args.dv,
      dvKeys,
      args.q,
      args.k,
      args.v,
      args.dout,
      args.lse,
      delta,
      { i32: t },
      { i32: h },
      { i32: hk },
      { i32: hv },
      { f32: scale * Math.LOG2E },
      { f32: scale },
    ],
    kernel.sharedBytes,
  );
  if (dvKeys !== 0n) {
    const vRows = b * t * hv;
    const blocks = Math.min(
      Math.ceil(vRows * d / 8 / ROW_THREADS),
      device.info.multiprocessors * DQ_BLOCKS_PER_SM,
    );
    device.launch("flash_attention_dv_sum", blocks, ROW_THREADS, [args.dv, dvKeys, BigInt(vRows), {
      i32: hk / hv,
    }, { i32: d }]);
    allocator.release(dvKeys);
  }
  const chunks = rows * d / 8;
  const blocks = Math.min(Math.ceil(chunks / ROW_THREADS), device.info.multiprocessors * DQ_BLOCKS_PER_SM);
  device.launch("flash_attention_dq", blocks, ROW_THREADS, [args.dq, dqAcc, BigInt(rows * d), {
    f32: scale,
  }]);
  allocator.release(delta);
  allocator.release(dqAcc);
}
