// Flash-attention backward on Hopper wgmma (sm_90a) for head dim 128: same contract and launch as
// flash_attention_bwd_d128 (flash_attention_bwd.cu: dq_acc f32 reductions, dv_keys when KV < K).
// One block = WD_KEYS (128) keys of one key head, two warpgroups (warpgroup w: keys 64w..64w+63), WD_BQ
// (48) queries per step. A 128-wide row is two 128-byte swizzled tiles [rows][64] side by side (dims
// 0..63, 64..127; wg_swizzle128). Per step, per warpgroup:
//   1. s^T = k q^T, dp^T = v dout^T [64 keys x 48 queries] (m64n48k16, K-major operands, K = 128 dims);
//   2. p^T, ds^T in registers (accumulator layout = A-fragment layout); ds^T also to shared memory;
//   3. dv += p^T dout, dk += ds^T q [64 keys x 128 dims] with A from registers, B (dout, q) MN-major:
//      two m64n64k16 per k-step (one per 64-dim tile);
//   4. dq^T = k^T ds^T [64 dims (warpgroup w: dims 64w..) x 48 queries] (m64n48k16, A = k tile w
//      MN-major, B = ds^T [keys][queries] MN-major, K = 128 keys), added to dq_acc [.., query, dim]
//      with 8-byte reductions (lane pairs swap values so each holds two adjacent dims of one query).
// Pipelined as flash_attention_bwd_wg_d64: dq^T of step it - 1 is queued behind step it's s^T / dp^T
// (ds^T double-buffered: one [128][64] tile per step parity, 48 columns used) and reduced while
// dv / dk run; first k-steps use ZERO accumulation; the dv / dk wait is at the end of the step. q, dout
// and the lse / delta rows of step it + 1 load (cp.async, double-buffered) during step it. Query steps
// start at multiples of 48 below the block's first key (masked where causal).
// Per thread: dk, dv 64 + 64 f32, s^T, dp^T, dq^T 24 each, p^T / ds^T fragments 12 u32 each: 236
// registers, no spills.
// Measured on the H200 (session 3, bench/attention, T 8k-128k, B H16 K2): 308-320 TFLOP/s against
// 249-273 for the mma.sync kernel; 32 queries per step 279-290; dv / dk as one m64n128k16 whose B
// descriptor spans both 64-dim tiles 281-290 (both variants removed).
// Grid: (K, B, ceil(T / WD_KEYS)).
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

#define WD_THREADS 256
#define WD_KEYS 128
#define WD_BQ 48
#define WD_TILE_K 16384 /* [128][64] bf16: half of a k or v tile; one ds^T buffer */
/** Shared-memory layout for BQ queries per step (byte offsets from the 1024-aligned base): k, v [2
 * halves][128][64]; q, dout [2 stages][2 halves][BQ][64]; ds^T [2 step parities][128 keys][64] (BQ
 * columns used); lse, delta [2 stages][2][BQ] f32. */
#define WD_TILE_Q(BQ) ((BQ) * 128)
#define WD_SK 0
#define WD_SV (2 * WD_TILE_K)
#define WD_SQ (4 * WD_TILE_K)
#define WD_SDO(BQ) (WD_SQ + 4 * WD_TILE_Q(BQ))
#define WD_SDS(BQ) (WD_SDO(BQ) + 4 * WD_TILE_Q(BQ))
#define WD_STATS(BQ) (WD_SDS(BQ) + 2 * WD_TILE_K)
/** Dynamic shared memory (+ 1024 bytes to align the tiles): 149248 at BQ 48. */
#define WD_SHARED_BYTES(BQ) (WD_STATS(BQ) + 2 * 2 * (BQ) * 4 + 1024)

#define WD_OPS24 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23}"

/** d[64x48] += a[64x16] * b[16x48] from descriptors (ZERO: d = a * b, as wg_mma_m64n64k16); TA / TB:
 * MN-major. */
template <int TA, int TB, int ZERO = 0>
__device__ __forceinline__ void wd_mma_m64n48k16(float* d, u64 da, u64 db) {
  if constexpr (ZERO) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 0, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n48k16.f32.bf16.bf16 "
        WD_OPS24 ", %24, %25, p, 1, 1, %26, %27;\n}\n"
        : WG_D16(WG_W), WG_D8(WG_W, 16)
        : "l"(da), "l"(db), "n"(TA), "n"(TB));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n48k16.f32.bf16.bf16 "
        WD_OPS24 ", %24, %25, p, 1, 1, %26, %27;\n}\n"
        : WG_D16(WG_RW), WG_D8(WG_RW, 16)
        : "l"(da), "l"(db), "n"(TA), "n"(TB));
  }
}

/** red.global.add of two adjacent f32 (8-byte aligned). */
__device__ __forceinline__ void wd_red2(float* p, float a, float b) {
  asm volatile("red.global.add.v2.f32 [%0], {%1,%2};\n" ::"l"(p), "f"(a), "f"(b) : "memory");
}

/** Copies 4 bytes global -> shared asynchronously; `bytes` 0 writes zeros instead. */
__device__ __forceinline__ void wd_cp4(u32 dst, const void* src, int bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}

/** Copies rows row0.. (128 bf16 each, `stride` elements apart) into two swizzled [ROWS][64] tiles at
 * shared address `dst` (dims 0..63, then dims 64..127 ROWS * 128 bytes further); rows at or past `rows`
 * are zero-filled. */
template <int ROWS>
__device__ __forceinline__ void wd_load_rows(u32 dst, const bf16* base, i64 stride, int row0, int rows) {
#pragma unroll
  for (int j = 0; j < ROWS * 16 / WD_THREADS; j++) {
    const int i = threadIdx.x + j * WD_THREADS, r = i >> 4, chunk = i & 15;
    const bool inside = row0 + r < rows;
    fa_cp16(dst + (chunk >> 3) * ROWS * 128 + wg_swizzle128(r, (chunk & 7) * 8),
            base + (inside ? (i64)(row0 + r) * stride + chunk * 8 : 0), inside ? 16 : 0);
  }
}

extern __shared__ u32x4 wd_shared[];

extern "C" __global__ void __launch_bounds__(WD_THREADS, 1) flash_attention_bwd_wg_d128(
    float* dq_acc, bf16* dk, bf16* dv, float* dv_keys, const bf16* q, const bf16* k, const bf16* v,
    const bf16* dout, const float* lse, const float* delta, int T, int H, int HK, int HV, float scale_log2,
    float scale) {
  constexpr int BQ = WD_BQ;
  constexpr int D = 128, TILE_Q = WD_TILE_Q(BQ), SDO = WD_SDO(BQ), SDS = WD_SDS(BQ), STATS = WD_STATS(BQ);
  const u32 base = (fa_smem(wd_shared) + 1023u) & ~1023u;
  float* stats = reinterpret_cast<float*>(reinterpret_cast<char*>(wd_shared) + (base - fa_smem(wd_shared)) + STATS);
  const int hk = blockIdx.x, b = blockIdx.y, k0 = blockIdx.z * WD_KEYS;
  const int group = H / HK, hv = hk / (HK / HV);
  const int wg = threadIdx.x >> 7, wi = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const i64 qstride = (i64)H * D, kstride = (i64)HK * D, vstride = (i64)HV * D;
  const int qfirst = k0 / BQ, qblocks = (T + BQ - 1) / BQ - qfirst, steps = group * qblocks;
  auto step_head = [&](int it) { return hk * group + it / qblocks; };
  auto step_q0 = [&](int it) { return (qfirst + it % qblocks) * BQ; };

  wd_load_rows<WD_KEYS>(base + WD_SK, k + ((i64)b * T * HK + hk) * D, kstride, k0, T);
  wd_load_rows<WD_KEYS>(base + WD_SV, v + ((i64)b * T * HV + hv) * D, vstride, k0, T);
  auto load_step = [&](int it, int stage) {
    const int h = step_head(it), q0 = step_q0(it);
    const i64 head = (i64)b * T * H + h;
    wd_load_rows<BQ>(base + WD_SQ + stage * 2 * TILE_Q, q + head * D, qstride, q0, T);
    wd_load_rows<BQ>(base + SDO + stage * 2 * TILE_Q, dout + head * D, qstride, q0, T);
    // lse and delta rows by cp.async too (a plain load would stall its warps' next wgmma issue); rows
    // past T read 0: their q and dout rows are zero, so p = 1 there adds nothing to dv, ds = 0.
    for (int r = threadIdx.x; r < 2 * BQ; r += WD_THREADS) {
      const int row = r < BQ ? r : r - BQ;
      const bool inside = q0 + row < T;
      const float* src = (r < BQ ? lse : delta) + ((i64)b * H + h) * T + (inside ? q0 + row : 0);
      wd_cp4(base + STATS + 4u * (stage * 2 * BQ + r), src, inside ? 4 : 0);
    }
  };
  // dq^T [dims 64wg.., BQ queries] of step `it` = k^T ds^T over the 128 keys (ds^T buffer it & 1).
  auto issue_dq = [&](float* acc, int it) {
    const u32 sds = base + SDS + WD_TILE_K * (it & 1), sk = base + WD_SK + WD_TILE_K * wg;
    wd_mma_m64n48k16<1, 1, 1>(acc, wg_desc(sk, WB_LBO_MN, WB_SBO_MN), wg_desc(sds, WB_LBO_MN, WB_SBO_MN));
#pragma unroll
    for (int kc = 1; kc < WD_KEYS / 16; kc++) {
      wd_mma_m64n48k16<1, 1>(acc, wg_desc(sk + 2048u * kc, WB_LBO_MN, WB_SBO_MN),
                          wg_desc(sds + 2048u * kc, WB_LBO_MN, WB_SBO_MN));
    }
  };
  // acc[4j + 2half + e]: dim 64wg + 16wi + g + 8half, query 8j + 2c + e. Lanes g, g ^ 1 swap one value
  // each: the even-g lane adds dims g, g + 1 of query 2c, the odd-g lane those of query 2c + 1.
  auto reduce_dq = [&](const float* acc, int it) {
    const bool odd = (g & 1) != 0;
    const int q0 = step_q0(it);
    const i64 head = (i64)b * T * H + step_head(it);
    const int dim = 64 * wg + 16 * wi + (g & ~1);
#pragma unroll
    for (int j = 0; j < BQ / 8; j++) {
#pragma unroll
      for (int half = 0; half < 2; half++) {
        const float mine0 = acc[4 * j + 2 * half], mine1 = acc[4 * j + 2 * half + 1];
        const float other = __shfl_xor_sync(0xffffffffu, odd ? mine0 : mine1, 4);
        const int qrow = q0 + 8 * j + 2 * c + (odd ? 1 : 0);
        if (qrow < T) {
          float* dst = dq_acc + (head + (i64)qrow * H) * D + dim + 8 * half;
          if (odd) wd_red2(dst, other, mine1);
          else wd_red2(dst, mine0, other);
        }
      }
    }
  };
  load_step(0, 0);
  fa_cp_commit();

  float dka[64], dva[64], acc[BQ / 2];
#pragma unroll
  for (int i = 0; i < 64; i++) dka[i] = dva[i] = 0.f;
  const int krow = 64 * wg + 16 * wi + g; // this thread's key rows in the block: krow, krow + 8

  for (int it = 0; it < steps; it++) {
    const int stage = it & 1;
    fa_cp_wait<0>();
    wg_fence_shared();
    __syncthreads(); // step it's tiles and both warpgroups' ds^T of step it - 1 are in shared memory
    if (it + 1 < steps) load_step(it + 1, stage ^ 1);
    fa_cp_commit();
    const int q0 = step_q0(it);
    const u32 sq = base + WD_SQ + stage * 2 * TILE_Q, sdo = base + SDO + stage * 2 * TILE_Q;
    const float* lrow = stats + stage * 2 * BQ;
    const float* drow = lrow + BQ;

    // 1. s^T and dp^T for this warpgroup's 64 keys x the BQ queries (k-step kk: dims 16kk.., in tile
    //    kk / 4 at byte 32 (kk % 4) of each row); dq^T of step it - 1 queued behind them.
    float st[BQ / 2], dpt[BQ / 2];
    const u32 sk = base + WD_SK + 8192u * wg, sv = base + WD_SV + 8192u * wg;
    wg_fence();
    wd_mma_m64n48k16<0, 0, 1>(st, wg_desc(sk, WB_LBO_K, WB_SBO_K), wg_desc(sq, WB_LBO_K, WB_SBO_K));
    wd_mma_m64n48k16<0, 0, 1>(dpt, wg_desc(sv, WB_LBO_K, WB_SBO_K), wg_desc(sdo, WB_LBO_K, WB_SBO_K));
#pragma unroll
    for (int kk = 1; kk < D / 16; kk++) {
      const u32 ka = (kk >> 2) * WD_TILE_K + 32u * (kk & 3), qa = (kk >> 2) * TILE_Q + 32u * (kk & 3);
      wd_mma_m64n48k16<0, 0>(st, wg_desc(sk + ka, WB_LBO_K, WB_SBO_K), wg_desc(sq + qa, WB_LBO_K, WB_SBO_K));
      wd_mma_m64n48k16<0, 0>(dpt, wg_desc(sv + ka, WB_LBO_K, WB_SBO_K), wg_desc(sdo + qa, WB_LBO_K, WB_SBO_K));
    }
    wg_commit();
    if (it > 0) issue_dq(acc, it - 1);
    wg_commit();
    wg_wait<1>();
    wg_fence_operands<BQ / 2>(st);
    wg_fence_operands<BQ / 2>(dpt);

    // 2. p^T = exp(s - lse) (0 above the diagonal), ds^T = p^T (dp^T - delta); both as A fragments.
    const bool diagonal = q0 < k0 + WD_KEYS;
    const u32 sds = base + SDS + WD_TILE_K * stage;
    u32 pa[BQ / 4], da[BQ / 4]; // bf16 pairs: [n-tile j][half]: keys krow (+8), queries 8j + 2c (+1)
    wb_p_ds<BQ / 8>(pa, da, st, dpt, {lrow, drow, FA_LOG2E}, {scale_log2, diagonal, k0, krow, q0, c}, sds);
    // 3. dv += p^T dout, dk += ds^T q: A fragment of k-step kq (queries 16kq..): tiles 2kq, 2kq + 1;
    //    B rows 16kq.. are 2048 bytes into each 64-dim tile.
    wg_fence();
#pragma unroll
    for (int kq = 0; kq < BQ / 16; kq++) {
      const u32 fp[4] = {pa[4 * kq], pa[4 * kq + 1], pa[4 * kq + 2], pa[4 * kq + 3]};
      const u32 fd[4] = {da[4 * kq], da[4 * kq + 1], da[4 * kq + 2], da[4 * kq + 3]};
#pragma unroll
      for (int n = 0; n < 2; n++) {
        const u32 at = n * TILE_Q + 2048u * kq;
        wg_mma_m64n64k16_rega<1>(dva + 32 * n, fp, wg_desc(sdo + at, WB_LBO_MN, WB_SBO_MN));
        wg_mma_m64n64k16_rega<1>(dka + 32 * n, fd, wg_desc(sq + at, WB_LBO_MN, WB_SBO_MN));
      }
    }
    wg_commit();
    // 4. dq^T of step it - 1 into dq_acc while dv / dk run.
    if (it > 0) {
      wg_wait<1>();
      wg_fence_operands<BQ / 2>(acc);
      reduce_dq(acc, it - 1);
    }
    // dv / dk done: they are the last readers of this stage's tiles, into which step it + 1 loads step
    // it + 2 (waiting here rather than at the next step's top keeps ptxas from serializing the wgmmas).
    wg_wait<0>();
  }
  // dq^T of the last step.
  wg_fence_shared();
  __syncthreads();
  wg_fence();
  issue_dq(acc, steps - 1);
  wg_commit();
  wg_wait<0>();
  wg_fence_operands<BQ / 2>(acc);
  wg_fence_operands<64>(dka);
  wg_fence_operands<64>(dva);
  reduce_dq(acc, steps - 1);

  // dka / dva: the two n64 products hold dims 64n + 8j' + 2c (+1) at [32n + 4j'..], i.e. dims 8j + 2c
  // at [4j..] for j = 8n + j' < 16.
  wb_store_dkdv<D>(dk, dv, dv_keys, dka, dva, {b, T, HK, hk, HV, hv, k0 + krow, c}, scale);
}

#endif
