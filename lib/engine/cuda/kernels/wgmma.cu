// Hopper warpgroup matrix multiply (wgmma, sm_90a) building blocks and a probe kernel that checks them
// (branch wip/wgmma; not used by the engine yet): 128-byte swizzled shared-memory tiles, matrix
// descriptors, and m64n64k16 bf16 -> f32 with either operand K-major or MN-major (transposed).
// Accumulator layout (per warp w of the 4-warp group: rows 16w..16w+15): d[4j + {0,1}] at row g, cols
// 8j + 2c + {0,1}; d[4j + {2,3}] at row g + 8 (lane = 4g + c), as mma.sync m16n8 per 8 columns.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
typedef unsigned long long u64;

/** Byte offset of element (r, c) of a [rows][64] bf16 tile in 128-byte swizzled atoms (8 rows x 128
 * bytes = 1024 bytes; the 16-byte chunk index is XORed with the row within the atom). */
__device__ __forceinline__ u32 wg_swizzle128(int r, int c) {
  return (u32)((r >> 3) * 1024 + (r & 7) * 128 + ((((c >> 3) ^ r) & 7) << 4) + ((c & 7) << 1));
}

/** Shared-memory matrix descriptor of a 128-byte swizzled tile at shared address `addr`: leading and
 * stride byte offsets `lbo`, `sbo` (multiples of 16). */
__device__ __forceinline__ u64 wg_desc(u32 addr, u32 lbo, u32 sbo) {
  return (u64)((addr & 0x3FFFFu) >> 4) | ((u64)((lbo >> 4) & 0x3FFFu) << 16) |
         ((u64)((sbo >> 4) & 0x3FFFu) << 32) | (1ull << 62);
}

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
/** Waits until at most N committed wgmma groups are in flight. */
template <int N>
__device__ __forceinline__ void wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/** Makes this thread's generic-proxy shared-memory writes visible to wgmma (the async proxy). */
__device__ __forceinline__ void wg_fence_shared() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

/** d[64x64] += a[64x16] * b[16x64] from descriptors; TA / TB: the operand is MN-major (transposed). */
template <int TA, int TB>
__device__ __forceinline__ void wg_mma_m64n64k16(float* d, u64 da, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, %34, %35;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(da), "l"(db), "n"(TA), "n"(TB));
}

/** Probe: d[64][64] f32 = a . b^T over K = 64 for row-major a [64 m][64 k] and b [64 n][64 k] in global
 * memory, the operands stored K-major or (AMN / BMN) MN-major in shared memory; descriptor offsets
 * given, so a test can find the ones the hardware expects. One 128-thread block. */
template <int AMN, int BMN>
__device__ __forceinline__ void wg_probe(float* d, const bf16* a, const bf16* b, u32 lbo, u32 sbo) {
  __shared__ __align__(1024) unsigned short sa[64 * 64], sb[64 * 64];
  for (int i = threadIdx.x; i < 64 * 64; i += 128) {
    const int r = i >> 6, c = i & 63; // a(m = r, k = c), b(n = r, k = c)
    sa[(AMN ? wg_swizzle128(c, r) : wg_swizzle128(r, c)) >> 1] = a[i].bits;
    sb[(BMN ? wg_swizzle128(c, r) : wg_swizzle128(r, c)) >> 1] = b[i].bits;
  }
  wg_fence_shared();
  __syncthreads();
  float acc[32];
#pragma unroll
  for (int i = 0; i < 32; i++) acc[i] = 0.f;
  wg_fence();
#pragma unroll
  for (int k = 0; k < 4; k++) {
    // K-major: the next 16 columns are 32 bytes further along each 128-byte row (the hardware applies
    // the swizzle to the address); MN-major: 16 rows further, two atoms of 8 rows.
    const u64 da = wg_desc(fa_smem(sa) + (AMN ? 2048u * k : 32u * k), lbo, sbo);
    const u64 db = wg_desc(fa_smem(sb) + (BMN ? 2048u * k : 32u * k), lbo, sbo);
    wg_mma_m64n64k16<AMN, BMN>(acc, da, db);
  }
  wg_commit();
  wg_wait<0>();
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
#pragma unroll
  for (int j = 0; j < 8; j++) {
    float* row = d + (16 * w + g) * 64 + 8 * j + 2 * c;
    row[0] = acc[4 * j], row[1] = acc[4 * j + 1];
    row[8 * 64] = acc[4 * j + 2], row[8 * 64 + 1] = acc[4 * j + 3];
  }
}

#define WG_PROBE(AMN, BMN)                                                                         \
  extern "C" __global__ void __launch_bounds__(128) wgmma_probe_##AMN##BMN(float* d, const bf16* a,  \
                                                                          const bf16* b, u32 lbo, \
                                                                          u32 sbo) {              \
    wg_probe<AMN, BMN>(d, a, b, lbo, sbo);                                                         \
  }
WG_PROBE(0, 0)
WG_PROBE(0, 1)
WG_PROBE(1, 0)
WG_PROBE(1, 1)
/** d[64x64] += a[64x16] (registers, the mma.sync A fragment per warp: rows 16w + g (+8), k 2c (+8))
 * * b[16x64] from a descriptor; TB: b is MN-major. */
template <int TB>
__device__ __forceinline__ void wg_mma_m64n64k16_rega(float* d, const u32* a, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, %37;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "n"(TB));
}

/** d[64x32] += a[64x16] * b[16x32], both from descriptors; TA / TB: MN-major. */
template <int TA, int TB>
__device__ __forceinline__ void wg_mma_m64n32k16(float* d, u64 da, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, %18, %19;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
      : "l"(da), "l"(db), "n"(TA), "n"(TB));
}

/** Probe of the two mechanisms the attention backward needs beyond wg_probe, for a [64 m][64 k] and
 * b [64 k][64 n] row-major in global memory (b stored MN-major: rows k, n contiguous):
 * REGA = 1: d[64][64] = a . b with a in registers (the A fragment built from global memory);
 * REGA = 0: d[64][32] = a . b[:, 32:64] with a K-major in shared memory and b's descriptor starting 64
 * bytes into its 128-byte rows (columns 32..63; the N-split of dq = ds k over two warpgroups). */
template <int REGA>
__device__ __forceinline__ void wg_probe2(float* d, const bf16* a, const bf16* b, u32 lbo, u32 sbo) {
  __shared__ __align__(1024) unsigned short sa[64 * 64], sb[64 * 64];
  for (int i = threadIdx.x; i < 64 * 64; i += 128) {
    const int r = i >> 6, c = i & 63; // a(m = r, k = c), b(k = r, n = c)
    sa[wg_swizzle128(r, c) >> 1] = a[i].bits;
    sb[wg_swizzle128(r, c) >> 1] = b[i].bits;
  }
  wg_fence_shared();
  __syncthreads();
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  float acc[32];
#pragma unroll
  for (int i = 0; i < 32; i++) acc[i] = 0.f;
  wg_fence();
#pragma unroll
  for (int k = 0; k < 4; k++) {
    const u64 db = wg_desc(fa_smem(sb) + 2048u * k + (REGA ? 0u : 64u), lbo, sbo);
    if (REGA) {
      const int r0 = 16 * w + g, k0 = 16 * k + 2 * c;
      const u32 frag[4] = {
          (u32)a[r0 * 64 + k0].bits | ((u32)a[r0 * 64 + k0 + 1].bits << 16),
          (u32)a[(r0 + 8) * 64 + k0].bits | ((u32)a[(r0 + 8) * 64 + k0 + 1].bits << 16),
          (u32)a[r0 * 64 + k0 + 8].bits | ((u32)a[r0 * 64 + k0 + 9].bits << 16),
          (u32)a[(r0 + 8) * 64 + k0 + 8].bits | ((u32)a[(r0 + 8) * 64 + k0 + 9].bits << 16)};
      wg_mma_m64n64k16_rega<1>(acc, frag, db);
    } else {
      wg_mma_m64n32k16<0, 1>(acc, wg_desc(fa_smem(sa) + 32u * k, lbo, sbo), db);
    }
  }
  wg_commit();
  wg_wait<0>();
  constexpr int NT = REGA ? 8 : 4, W = REGA ? 64 : 32;
#pragma unroll
  for (int j = 0; j < NT; j++) {
    float* row = d + (16 * w + g) * W + 8 * j + 2 * c;
    row[0] = acc[4 * j], row[1] = acc[4 * j + 1];
    row[8 * W] = acc[4 * j + 2], row[8 * W + 1] = acc[4 * j + 3];
  }
}

extern "C" __global__ void __launch_bounds__(128) wgmma_probe_rega(float* d, const bf16* a, const bf16* b,
                                                                   u32 lbo, u32 sbo) {
  wg_probe2<1>(d, a, b, lbo, sbo);
}
extern "C" __global__ void __launch_bounds__(128) wgmma_probe_n32(float* d, const bf16* a, const bf16* b,
                                                                  u32 lbo, u32 sbo) {
  wg_probe2<0>(d, a, b, lbo, sbo);
}
#endif
