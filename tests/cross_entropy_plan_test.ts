// How the prefetching cross-entropy kernels split a row (lib/engine/cuda/cross_entropy_plan.ts), checked
// against hand-computed cluster sizes, slices and shared-memory bytes; no GPU needed.

import {
  CE_HELD_COLUMNS,
  CE_OVERFLOW_COLUMNS,
  crossEntropyStride,
  prefetchKernelName,
  prefetchMaxSlice,
  prefetchPlan,
  prefetchSharedBytes,
} from "../lib/engine/cuda/cross_entropy_plan.ts";
import { assert, assertEquals } from "./assert.ts";

/** Opt-in shared memory per block on sm_90 (227 KB). */
const SM90_SHARED = 232448;
/** Opt-in shared memory per block on sm_86 (99 KB): less than one block's held columns. */
const SM86_SHARED = 101376;
/** Static shared memory of the kernels per tools/kernel-check.sh. */
const KERNEL_STATIC_SHARED = 288;

/** Checks the sm_90 plans of [V, blocks, columns per block, shared bytes] cases, and that the last block
 * of each cluster holds at least one column and at most its slice. */
function assertSm90Plans(cases: readonly (readonly [number, number, number, number])[]): void {
  for (const [v, cluster, slice, sharedBytes] of cases) {
    assertEquals(
      prefetchPlan(v, SM90_SHARED, { clusters: true }),
      { cluster, slice, sharedBytes },
      `V = ${v}`,
    );
    const last = v - (cluster - 1) * slice;
    assert(last > 0 && last <= slice, `V = ${v}: last block holds ${last}`);
  }
}

Deno.test("cross-entropy plan: 32768 held columns and 12288 overflow columns per block", () => {
  assertEquals(CE_HELD_COLUMNS, 32768);
  assertEquals(CE_OVERFLOW_COLUMNS, 12288);
  // (232448 - 1024 - 131072) / 8 = 12544 overflow columns would fit; the kernel reads 12288
  assertEquals(prefetchMaxSlice(SM90_SHARED), 45056);
  // 99 KB: (101376 - 1024) / 4 = 25088 columns, no overflow
  assertEquals(prefetchMaxSlice(SM86_SHARED), 25088);
  assertEquals(prefetchSharedBytes(32000), 128000);
  assertEquals(prefetchSharedBytes(45056), 229376);
  assert(prefetchSharedBytes(prefetchMaxSlice(SM90_SHARED)) + KERNEL_STATIC_SHARED <= SM90_SHARED);
  assert(prefetchSharedBytes(prefetchMaxSlice(SM86_SHARED)) + KERNEL_STATIC_SHARED <= SM86_SHARED);
});

Deno.test("cross-entropy plan: the fewest blocks whose slices hold the row (sm_90)", () => {
  // [V, blocks, columns per block, 4 * min(slice, 32768) + 8 * overflow]
  const cases = [
    [64, 1, 64, 256],
    [32000, 1, 32000, 128000],
    [32772, 1, 32772, 131072 + 8 * 4],
    [40000, 1, 40000, 131072 + 8 * 7232],
    [41000, 1, 41000, 131072 + 8 * 8232],
    [45056, 1, 45056, 131072 + 8 * 12288],
    [45060, 2, 22532, 90128],
    [98304, 3, 32768, 131072],
    [128256, 3, 42752, 131072 + 8 * 9984],
    [151936, 4, 37984, 131072 + 8 * 5216],
    [151928, 4, 37984, 131072 + 8 * 5216],
    [200000, 5, 40000, 131072 + 8 * 7232],
    [256000, 6, 42668, 131072 + 8 * 9900],
    [360448, 8, 45056, 131072 + 8 * 12288],
  ] as const;
  assertSm90Plans(cases);
  assertEquals(prefetchPlan(360452, SM90_SHARED, { clusters: true }), undefined);
});

Deno.test("cross-entropy plan: a forced cluster size, a small shared memory, kernel names", () => {
  assertEquals(prefetchPlan(128256, SM90_SHARED, { clusters: true, cluster: 4 }), {
    cluster: 4,
    slice: 32064,
    sharedBytes: 128256,
  });
  assertEquals(prefetchPlan(151936, SM90_SHARED, { clusters: true, cluster: 3 }), undefined);
  // 25088 columns per block at most: with clusters 32000 takes 2 blocks of 16000, 128256 takes 6 of
  // 21376; sm_86 has no clusters, so one block holds up to 25088 and wider rows go to the two-pass kernel
  assertEquals(prefetchPlan(32000, SM86_SHARED, { clusters: true }), {
    cluster: 2,
    slice: 16000,
    sharedBytes: 64000,
  });
  assertEquals(prefetchPlan(128256, SM86_SHARED, { clusters: true }), {
    cluster: 6,
    slice: 21376,
    sharedBytes: 85504,
  });
  assertEquals(prefetchPlan(24000, SM86_SHARED, { clusters: false }), {
    cluster: 1,
    slice: 24000,
    sharedBytes: 96000,
  });
  assertEquals(prefetchPlan(32000, SM86_SHARED, { clusters: false }), undefined);
  assertEquals(prefetchPlan(40000, SM90_SHARED, { clusters: false, cluster: 2 }), undefined);
  assertEquals(prefetchKernelName(1, "f32"), "cross_entropy_rows_prefetch_f32");
  assertEquals(prefetchKernelName(4, "bf16"), "cross_entropy_rows_prefetch4_bf16");
});

Deno.test("cross-entropy plan: any V takes the prefetching kernels, rows padded to a multiple of 8", () => {
  // [V, padded row stride]: 16-byte f32 rows and 16-byte bf16 rows
  for (const [v, stride] of [[50, 56], [64, 64], [32772, 32776], [50257, 50264], [151937, 151944]]) {
    assertEquals(crossEntropyStride(v), stride, `V = ${v}`);
  }
  // [V, blocks, columns per block, shared bytes]: slices from V (not the stride), multiples of 4; a
  // block copies ceil(width / 4) float4s, so the last float4 of a row reaches into the padding
  const cases = [
    [50, 1, 52, 208],
    [40001, 1, 40004, 131072 + 8 * 7236],
    [45053, 1, 45056, 131072 + 8 * 12288],
    // ceil(45057 / 8) = 5633 float4s per block
    [45057, 2, 22532, 90128],
    // GPT-2: ceil(50257 / 8) = 6283 float4s per block; the second block holds 25125 columns
    [50257, 2, 25132, 100528],
    // ceil(151937 / 16) = 9497 float4s per block; the last holds 151937 - 3 * 37988 = 37973 columns
    [151937, 4, 37988, 131072 + 8 * 5220],
    // ceil(360445 / 32) = 11264 float4s per block: the widest 8 blocks hold
    [360445, 8, 45056, 131072 + 8 * 12288],
  ] as const;
  assertSm90Plans(cases);
  // ceil(360449 / 32) = 11265 float4s = 45060 columns > 45056: the two-pass kernel
  assertEquals(prefetchPlan(360449, SM90_SHARED, { clusters: true }), undefined);
  assertEquals(prefetchPlan(360453, SM90_SHARED, { clusters: true }), undefined);
});
