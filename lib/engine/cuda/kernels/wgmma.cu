// Hopper warpgroup matrix multiply (wgmma, sm_90a) building blocks and probe kernels that check them
// (tests/cuda_wgmma_probe_test.ts): 128-byte swizzled shared-memory tiles, matrix descriptors, and
// m64n64k16 / m64n32k16 bf16 -> f32 with either operand K-major or MN-major (transposed) or A from
// registers; then what the flash-attention kernels share: descriptor offsets (WB_*), the mbarriers and
// the producer's row copies of the warp-specialized kernels (wg_mbar_*, wg_load_rows), and the pieces the
// flash-attention backwards share (wb_p_ds, wb_store_dkdv; kernels in flash_attention_bwd_wg_d64.cu and
// flash_attention_bwd_wg_d128.cu).
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

/** Operand lists of the wgmma wrappers: accumulator registers d[0..N) as the asm operands %0..%N-1,
 * read and written (WG_RW) or only written (WG_W: zero accumulation). */
#define WG_RW(i) "+f"(d[i])
#define WG_W(i) "=f"(d[i])
#define WG_D8(C, o) C(o), C(o + 1), C(o + 2), C(o + 3), C(o + 4), C(o + 5), C(o + 6), C(o + 7)
#define WG_D16(C) WG_D8(C, 0), WG_D8(C, 8)
#define WG_D32(C) WG_D16(C), WG_D8(C, 16), WG_D8(C, 24)
#define WG_D64(C) WG_D32(C), WG_D8(C, 32), WG_D8(C, 40), WG_D8(C, 48), WG_D8(C, 56)
#define WG_OPS16 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}"
#define WG_OPS32 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define WG_OPS64 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
/** Waits until at most N committed wgmma groups are in flight. */
template <int N>
__device__ __forceinline__ void wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/** Keeps the compiler from moving reads or writes of these registers (accumulators, A fragments) across
 * a wgmma wait. */
template <int N>
__device__ __forceinline__ void wg_fence_operands(float* r) {
#pragma unroll
  for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N>
__device__ __forceinline__ void wg_fence_operands(u32* r) {
#pragma unroll
  for (int i = 0; i < N; i++) asm volatile("" : "+r"(r[i])::"memory");
}
/** Makes this thread's generic-proxy shared-memory writes visible to wgmma (the async proxy). */
__device__ __forceinline__ void wg_fence_shared() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

/** d[64x64] += a[64x16] * b[16x64] from descriptors (ZERO: d = a * b, the old d neither read nor kept
 * live, so no instruction has to write zeros into registers a wgmma pipeline owns: ptxas serializes the
 * wgmmas when one does); TA / TB: the operand is MN-major (transposed). */
template <int TA, int TB, int ZERO = 0>
__device__ __forceinline__ void wg_mma_m64n64k16(float* d, u64 da, u64 db) {
  if constexpr (ZERO) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 0, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        WG_OPS32 ", %32, %33, p, 1, 1, %34, %35;\n}\n"
        : WG_D32(WG_W)
        : "l"(da), "l"(db), "n"(TA), "n"(TB));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        WG_OPS32 ", %32, %33, p, 1, 1, %34, %35;\n}\n"
        : WG_D32(WG_RW)
        : "l"(da), "l"(db), "n"(TA), "n"(TB));
  }
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
      WG_OPS32 ", {%32, %33, %34, %35}, %36, p, 1, 1, %37;\n}\n"
      : WG_D32(WG_RW)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "n"(TB));
}

/** d[64x32] += a[64x16] * b[16x32], both from descriptors (ZERO: d = a * b, as wg_mma_m64n64k16);
 * TA / TB: MN-major. */
template <int TA, int TB, int ZERO = 0>
__device__ __forceinline__ void wg_mma_m64n32k16(float* d, u64 da, u64 db) {
  if constexpr (ZERO) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 0, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
        WG_OPS16 ", %16, %17, p, 1, 1, %18, %19;\n}\n"
        : WG_D16(WG_W)
        : "l"(da), "l"(db), "n"(TA), "n"(TB));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
        WG_OPS16 ", %16, %17, p, 1, 1, %18, %19;\n}\n"
        : WG_D16(WG_RW)
        : "l"(da), "l"(db), "n"(TA), "n"(TB));
  }
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
// ---- flash-attention helpers (flash_attention_fwd_wg.cu, flash_attention_bwd_wg_d64.cu, _d128.cu) ---
/** Descriptor byte offsets (leading, stride) of K-major and MN-major tiles: with 128-byte swizzled
 * tiles whose MN extent fits one atom, SBO (1024: the step between 8-row groups) is what the hardware
 * reads; LBO 16, 1024 and 0 all matched in tests/cuda_wgmma_probe_test.ts on the H200. */
#define WB_LBO_K 16
#define WB_SBO_K 1024
#define WB_LBO_MN 1024
#define WB_SBO_MN 1024

/** Bytes of one [rows][64] bf16 tile row: the step between rows inside a 64-dim tile. */
#define WG_ROW_BYTES 128

/** mbarriers of the warp-specialized kernels: the producer warpgroup arrives on full[stage] through
 * wg_mbar_arrive_cp when its copies have landed, consumers arrive on empty[stage] when done with it. */
__device__ __forceinline__ void wg_mbar_init(u32 bar, u32 count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void wg_mbar_arrive(u32 bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/** Arrives on `bar` when all of this thread's earlier cp.async copies have completed. */
__device__ __forceinline__ void wg_mbar_arrive_cp(u32 bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
/** Waits until the phase of `bar` with this parity has completed. */
__device__ __forceinline__ void wg_mbar_wait(u32 bar, u32 parity) {
  u32 done;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}

/** Copies rows row0.. (D bf16 each, `stride` elements apart) into D / 64 swizzled [ROWS][64] tiles at
 * `dst` (dims 64.. ROWS * 128 bytes further) by the LANES producer threads (this one: `lane`); rows at
 * or past `rows` are zero-filled. */
template <int D, int ROWS, int LANES>
__device__ __forceinline__ void wg_load_rows(u32 dst, const bf16* base, i64 stride, int row0, int rows, int lane) {
  constexpr int CHUNK_BITS = D / 64 + 2; // log2 of the 16-byte chunks per row (D / 8)
#pragma unroll 4
  for (int j = 0; j < (ROWS << CHUNK_BITS) / LANES; j++) {
    const int i = lane + LANES * j, r = i >> CHUNK_BITS, chunk = i & ((1 << CHUNK_BITS) - 1);
    const bool inside = row0 + r < rows;
    fa_cp16(dst + (chunk >> 3) * ROWS * WG_ROW_BYTES + wg_swizzle128(r, (chunk & 7) * 8),
            base + (inside ? (i64)(row0 + r) * stride + chunk * 8 : 0), inside ? 16 : 0);
  }
}

/** The lse and delta rows of a backward step's queries; lse * lse_scale is in log2 units (lse_scale 1
 * when the rows were staged already scaled). */
struct WbStats {
  const float* lse;
  const float* delta;
  float lse_scale;
};
/** A backward thread's place in its step: scale_log2, whether the step touches the diagonal, the block's
 * first key k0, the thread's key row krow in the block (and krow + 8), the step's first query q0, its lane
 * column pair c. */
struct WbStep {
  float scale_log2;
  bool diagonal;
  int k0, krow, q0, c;
};
/** From a warpgroup's s^T and dp^T accumulators over NT tiles of 8 queries: p^T = exp(s - lse) (0 above
 * the diagonal) and ds^T = p^T (dp^T - delta), both packed to bf16 as A fragments (pa, da [2 NT]: [tile
 * j][half]: keys krow (+8), queries 8j + 2c (+1)); ds^T is also stored to the swizzled tile at sds. */
template <int NT>
__device__ __forceinline__ void wb_p_ds(u32* pa, u32* da, const float* st, const float* dpt, WbStats r,
                                        WbStep w, u32 sds) {
#pragma unroll
  for (int j = 0; j < NT; j++) {
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const int key = w.k0 + w.krow + 8 * half, col = 8 * j + 2 * w.c;
      float p0 = fa_exp2(st[4 * j + 2 * half] * w.scale_log2 - r.lse[col] * r.lse_scale);
      float p1 = fa_exp2(st[4 * j + 2 * half + 1] * w.scale_log2 - r.lse[col + 1] * r.lse_scale);
      if (w.diagonal) {
        if (key > w.q0 + col) p0 = 0.f;
        if (key > w.q0 + col + 1) p1 = 0.f;
      }
      const float d0 = p0 * (dpt[4 * j + 2 * half] - r.delta[col]);
      const float d1 = p1 * (dpt[4 * j + 2 * half + 1] - r.delta[col + 1]);
      pa[2 * j + half] = fa_pack(p0, p1);
      da[2 * j + half] = fa_pack(d0, d1);
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sds + wg_swizzle128(w.krow + 8 * half, col)),
                   "r"(da[2 * j + half]));
    }
  }
}

/** Where a backward thread's dk / dv rows go: batch b, T, key heads HK (this block's hk), value heads HV
 * (its hv), the thread's first key row `key` (and key + 8) and its lane column pair c. */
struct WbRows {
  int b, T, HK, hk, HV, hv, key, c;
};
/** Writes a backward thread's dk (times scale) and dv accumulators, dims 8j + 2c (+1) at [4j..] for
 * j < D / 8, for rows key and key + 8 (rows >= T skipped): dk and dv in bf16, or dv as f32 shares into
 * dv_keys ([B, T, K, D]) when the value heads are fewer than the key heads. */
template <int D>
__device__ __forceinline__ void wb_store_dkdv(bf16* dk, bf16* dv, float* dv_keys, const float* dka,
                                              const float* dva, WbRows r, float scale) {
#pragma unroll
  for (int half = 0; half < 2; half++) {
    const int key = r.key + 8 * half;
    if (key >= r.T) continue;
    const i64 at = ((i64)r.b * r.T * r.HK + (i64)key * r.HK + r.hk) * D + 2 * r.c;
    u32* kdst = reinterpret_cast<u32*>(dk + at);
#pragma unroll
    for (int j = 0; j < D / 8; j++) kdst[4 * j] = fa_pack(dka[4 * j + 2 * half] * scale, dka[4 * j + 2 * half + 1] * scale);
    if (dv_keys) {
#pragma unroll
      for (int j = 0; j < D / 8; j++) {
        dv_keys[at + 8 * j] = dva[4 * j + 2 * half];
        dv_keys[at + 8 * j + 1] = dva[4 * j + 2 * half + 1];
      }
    } else {
      u32* vdst = reinterpret_cast<u32*>(dv + ((i64)r.b * r.T * r.HV + (i64)key * r.HV + r.hv) * D + 2 * r.c);
#pragma unroll
      for (int j = 0; j < D / 8; j++) vdst[4 * j] = fa_pack(dva[4 * j + 2 * half], dva[4 * j + 2 * half + 1]);
    }
  }
}

#endif
