// How the cross-entropy row kernels (kernels/cross_entropy.cu) lay out and split a row of V logits:
// the padded row stride, blocks per row (cluster size), columns per block and dynamic shared memory.
// The engine and bench/gpu_ops both launch from it, so they launch alike; it needs no device.

import type { TensorDType } from "../engine.ts";

/** Threads per block of the cross-entropy row kernels (CE_PREFETCH_THREADS in cross_entropy.cu). */
export const CE_THREADS = 1024;
/** Columns of a block's slice held in registers: 8 float4 per thread (CE_PREFETCH_HELD). */
export const CE_HELD_COLUMNS = 8 * 4 * CE_THREADS;
/** Columns past the held ones a block reads from shared memory: 6 float4 per thread
 * (CE_OVERFLOW_CHUNKS), so a slice holds at most 57344 columns. */
export const CE_OVERFLOW_COLUMNS = 6 * 4 * CE_THREADS;
/** Static shared memory of the kernels (512 bytes per tools/kernel-check.sh, rounded up): it counts
 * against the same per-block limit as the dynamic shared memory. */
const CE_STATIC_SHARED_BYTES = 1024;
/** Row strides of the logits / dlogits buffers are multiples of this many elements: 16-byte aligned
 * rows of f32 for the kernels' cp.async / float4 accesses whatever V is, and of bf16 dlogits for the
 * GEMMs that read them. */
export const CE_ROW_ALIGN = 8;
/** Blocks per row compiled (cross_entropy_rows_prefetch{,2..8}; clusters from sm_90 on, where the
 * cluster kernels are built); rows wider than the largest take the two-pass kernel. */
const CE_CLUSTERS = [1, 2, 3, 4, 5, 6, 7, 8] as const;
/** The first architecture with thread-block clusters. */
export const CLUSTER_MIN_ARCH = 90;

/**
 * The row stride (elements) of the engine's f32 logits and dlogits buffers for V columns: V rounded up
 * to CE_ROW_ALIGN. The logits GEMM writes columns [0, V) with ldc = stride, the kernels read V
 * columns per row at that stride, the dlogits GEMMs read them with lda = stride.
 *
 * @example
 * ```ts
 * crossEntropyStride(50257); // 50264
 * ```
 */
export function crossEntropyStride(v: number): number {
  return Math.ceil(v / CE_ROW_ALIGN) * CE_ROW_ALIGN;
}

/** One launch shape of the prefetching kernels. */
export interface PrefetchPlan {
  /** Blocks per row: one, or a thread-block cluster of 2..8. */
  cluster: number;
  /** Columns per block (a multiple of 4); the cluster's last block may hold fewer. A block copies
   * ceil(columns / 4) float4s, so the last float4 of a row may reach up to 3 columns into the row's
   * padding (the kernel masks them). */
  slice: number;
  /** Dynamic shared memory per block (prefetchSharedBytes(slice)). */
  sharedBytes: number;
}

/**
 * Dynamic shared memory of a block whose slice has `slice` columns: the next row's held columns (up to
 * CE_HELD_COLUMNS), then one buffer of the overflow columns past them (the current row's until its
 * gradient is written, then the next row's), 4 bytes per column.
 *
 * @example
 * ```ts
 * prefetchSharedBytes(50260); // 4 * 32768 + 4 * 17492 = 201040
 * ```
 */
export function prefetchSharedBytes(slice: number): number {
  return 4 * slice;
}

/**
 * The widest slice (a multiple of 4) one block can hold on a device that allows `maxSharedBytes` of
 * shared memory per block (opt-in): as many columns as the shared memory holds (prefetchSharedBytes),
 * at most the held columns plus the overflow columns the kernel reads.
 *
 * @example
 * ```ts
 * prefetchMaxSlice(232448); // 57344 on sm_90 (227 KB)
 * ```
 */
export function prefetchMaxSlice(maxSharedBytes: number): number {
  const fits = Math.floor((maxSharedBytes - CE_STATIC_SHARED_BYTES) / 16) * 4;
  return Math.max(0, Math.min(CE_HELD_COLUMNS + CE_OVERFLOW_COLUMNS, fits));
}

/**
 * How to launch the prefetching kernels on rows of `v` columns (any v; rows stored at
 * crossEntropyStride(v), aligned): the fewest
 * blocks per row whose slices hold the row, so each block moves as many bytes per row barrier as it
 * can; `cluster` asks for that many blocks instead (bench comparisons). `clusters`: the device has
 * thread-block clusters (sm_90 and later, CLUSTER_MIN_ARCH); without them only one block per row.
 * Undefined when no allowed block count holds the row (the two-pass kernel takes it).
 *
 * @example
 * ```ts
 * prefetchPlan(151936, 232448, { clusters: true }); // { cluster: 3, slice: 50648, sharedBytes: 202592 }
 * ```
 */
export function prefetchPlan(
  v: number,
  maxSharedBytes: number,
  options: { clusters: boolean; cluster?: number },
): PrefetchPlan | undefined {
  const maxSlice = prefetchMaxSlice(maxSharedBytes);
  const sliceOf = (c: number) => Math.ceil(v / c / 4) * 4;
  const candidates = CE_CLUSTERS.filter((c) =>
    (options.cluster === undefined || c === options.cluster) && (c === 1 || options.clusters)
  );
  const cluster = candidates.find((c) => sliceOf(c) <= maxSlice);
  if (cluster === undefined) return undefined;
  const slice = sliceOf(cluster);
  return { cluster, slice, sharedBytes: prefetchSharedBytes(slice) };
}

/**
 * The kernel a plan launches for dlogits of type `dtype`.
 *
 * @example
 * ```ts
 * prefetchKernelName(4, "bf16"); // "cross_entropy_rows_prefetch4_bf16"
 * ```
 */
export function prefetchKernelName(cluster: number, dtype: TensorDType): string {
  return `cross_entropy_rows_prefetch${cluster === 1 ? "" : cluster}_${dtype}`;
}
