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
const KERNEL_STATIC_SHARED = 512;

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

Deno.test("cross-entropy plan: 32768 held columns and 24576 overflow columns per block", () => {
  assertEquals(CE_HELD_COLUMNS, 32768);
  assertEquals(CE_OVERFLOW_COLUMNS, 24576);
  // (232448 - 1024) / 16 * 4 = 57856 columns would fit; the kernel reads 32768 + 24576 = 57344
  assertEquals(prefetchMaxSlice(SM90_SHARED), 57344);
  // 99 KB: (101376 - 1024) / 4 = 25088 columns, no overflow
  assertEquals(prefetchMaxSlice(SM86_SHARED), 25088);
  // the next row's held part, then one overflow buffer: 4 bytes a column
  assertEquals(prefetchSharedBytes(32000), 128000);
  assertEquals(prefetchSharedBytes(50260), 131072 + 4 * 17492);
  assertEquals(prefetchSharedBytes(57344), 229376);
  assert(prefetchSharedBytes(prefetchMaxSlice(SM90_SHARED)) + KERNEL_STATIC_SHARED <= SM90_SHARED);
  assert(prefetchSharedBytes(prefetchMaxSlice(SM86_SHARED)) + KERNEL_STATIC_SHARED <= SM86_SHARED);
});

Deno.test("cross-entropy plan: the fewest blocks whose slices hold the row (sm_90)", () => {
  // [V, blocks, columns per block, 4 * slice]
  const cases = [
    [64, 1, 64, 256],
    [32000, 1, 32000, 128000],
    [32772, 1, 32772, 131072 + 4 * 4],
    [40000, 1, 40000, 131072 + 4 * 7232],
    [41000, 1, 41000, 131072 + 4 * 8232],
    [45056, 1, 45056, 131072 + 4 * 12288],
    [45060, 1, 45060, 131072 + 4 * 12292],
    // every thread's 6 overflow float4s
    [57344, 1, 57344, 131072 + 4 * 24576],
    // one column more: 2 blocks of ceil(57345 / 8) = 7169 float4s
    [57348, 2, 28676, 114704],
    [98304, 2, 49152, 131072 + 4 * 16384],
    // 128256 / 2 = 64128 > 57344: 3 blocks
    [128256, 3, 42752, 131072 + 4 * 9984],
    // Qwen: 151936 / 2 = 75968 > 57344; 3 blocks of ceil(151936 / 12) = 12662 float4s, the last holds
    // 151936 - 2 * 50648 = 50640 columns
    [151936, 3, 50648, 131072 + 4 * 17880],
    [151928, 3, 50644, 131072 + 4 * 17876],
    // 200000 / 3 = 66667 > 57344
    [200000, 4, 50000, 131072 + 4 * 17232],
    // 256000 / 4 = 64000 > 57344
    [256000, 5, 51200, 131072 + 4 * 18432],
    // 360448 / 6 = 60075 > 57344; ceil(360448 / 28) = 12874 float4s, the last holds 360448 - 6 * 51496
    [360448, 7, 51496, 131072 + 4 * 18728],
    [458752, 8, 57344, 131072 + 4 * 24576],
  ] as const;
  assertSm90Plans(cases);
  assertEquals(prefetchPlan(458756, SM90_SHARED, { clusters: true }), undefined);
});

Deno.test("cross-entropy plan: a forced cluster size, a small shared memory, kernel names", () => {
  assertEquals(prefetchPlan(128256, SM90_SHARED, { clusters: true, cluster: 4 }), {
    cluster: 4,
    slice: 32064,
    sharedBytes: 128256,
  });
  // Qwen on 4 blocks (the double-buffered kernel's plan): ceil(151936 / 16) = 9496 float4s
  assertEquals(prefetchPlan(151936, SM90_SHARED, { clusters: true, cluster: 4 }), {
    cluster: 4,
    slice: 37984,
    sharedBytes: 151936,
  });
  // GPT-2 on 2 blocks (the double-buffered kernel's plan): ceil(50257 / 8) = 6283 float4s
  assertEquals(prefetchPlan(50257, SM90_SHARED, { clusters: true, cluster: 2 }), {
    cluster: 2,
    slice: 25132,
    sharedBytes: 100528,
  });
  assertEquals(prefetchPlan(151936, SM90_SHARED, { clusters: true, cluster: 2 }), undefined);
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
    [40001, 1, 40004, 131072 + 4 * 7236],
    [45057, 1, 45060, 131072 + 4 * 12292],
    // GPT-2: one block of ceil(50257 / 4) = 12565 float4s
    [50257, 1, 50260, 131072 + 4 * 17492],
    // ceil(57341 / 4) = 14336 float4s: the widest single block
    [57341, 1, 57344, 131072 + 4 * 24576],
    // ceil(57345 / 8) = 7169 float4s per block; the second holds 57345 - 28676 = 28669 columns
    [57345, 2, 28676, 114704],
    // ceil(151937 / 12) = 12662 float4s per block; the last holds 151937 - 2 * 50648 = 50641 columns
    [151937, 3, 50648, 131072 + 4 * 17880],
    // ceil(458749 / 32) = 14336 float4s per block: the widest 8 blocks hold
    [458749, 8, 57344, 131072 + 4 * 24576],
  ] as const;
  assertSm90Plans(cases);
  // ceil(458753 / 32) = 14337 float4s = 57348 columns > 57344: the two-pass kernel
  assertEquals(prefetchPlan(458753, SM90_SHARED, { clusters: true }), undefined);
  assertEquals(prefetchPlan(458757, SM90_SHARED, { clusters: true }), undefined);
});
