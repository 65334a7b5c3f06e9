// Flash-attention backward at head dim 64 on Hopper wgmma (sm_90a), warp-specialized: variants of
// flash_attention_bwd_wg_d64 (wgmma.cu) with the same contract and grid (K, B, ceil(T / 128)).
// One block = 128 keys of one key head: two consumer warpgroups (warpgroup w: keys 64w..64w+63) and a
// producer warpgroup that copies k, v once and q, dout, lse, delta of every query step (BQ queries) into
// S shared-memory stages (3; 4 for WQ_IP) with cp.async, signalling full / empty mbarriers (as the
// forward, flash_attention_fwd_wg.cu, whose fw_mbar_*, fw_load_rows and m64n128 wrappers this uses);
// setmaxnreg 40 / 232 (2 x 128 x 232 + 128 x 40 = 384 x 168, the registers the block starts with; the
// producer spills at 24, the consumers fit in 224 at every BQ). Per step, per consumer warpgroup:
//   1. s^T = k q^T, dp^T = v dout^T [64 keys x BQ queries], K-major operands, K = 64 dims;
//   2. p^T, ds^T in registers (accumulator layout = A-fragment layout); ds^T also to shared memory;
//   3. dv += p^T dout, dk += ds^T q [64 keys x 64 dims], A from registers, B (dout, q) MN-major;
//   4. dq^T = k^T ds^T [64 dims x BQ / 2 queries: warpgroup w takes queries w BQ / 2..] over the 128
//      keys (A = k [keys][dims] MN-major, B = ds^T [keys][queries] MN-major; as flash_attention_bwd_wg_d128),
//      added to dq_acc with 8-byte reductions.
// dq^T needs both warpgroups' ds^T, so they meet there, through mbarriers instead of a block barrier:
// ready[p] (count 256) completes when both have stored ds^T of a step of parity p, free[p] (count 256)
// when both have finished dq^T of it (then ds^T buffer p may be overwritten). Each mbarrier of a pair
// serves every second step, and a thread arrives for step s + 2 only after waiting the other mbarrier's
// phase of step s, so no phase is skipped. The warpgroups may drift apart by about a step, so one's
// exponentials overlap the other's products.
// DQT = 0 (64 queries per step only): dq = ds k [64 queries x 32 dims per warpgroup] as wgmma.cu, added with
// 16-byte reductions (half as many as the 8-byte ones of dq^T).
// MODE, where dq^T of step s - 1 is queued: WQ_EARLY behind s^T / dp^T of step s (as wgmma.cu), reduced
// while dv / dk run; WQ_LATE behind dv / dk of step s, reduced after them (more slack for the other
// warpgroup's ds^T, no dq^T accumulator live during the exponentials); WQ_IP (64 queries per step) dv /
// dk of step s - 1 and dq^T of step s - 1 both behind s^T / dp^T of step s, so they run during step s's
// exponentials (FlashAttention-3's intra-warpgroup overlap; a step's stage is released one step later,
// hence 4 stages).
// Never run on a GPU yet: explore/bwd_wg64.ts times the variants against flash_attention_bwd_wg_d64.
// Shared memory (byte offsets from the 1024-aligned base): k, v [128][64]; q, dout [S][BQ][64];
// ds^T [2 step parities]: at BQ 64 one [128 keys][64 queries] tile (warpgroup w's queries at column 32w),
// else two [128][64] tiles (one per warpgroup's BQ / 2 queries, from column 0); lse, delta [S][2][BQ]
// f32; mbarriers full, empty [S], ready, free [2].
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

#define WQ_THREADS 384
#define WQ_KEYS 128
#define WQ_TILE_K 16384 /* [128][64] bf16 */
#define WQ_PRODUCER_REGS 40
#define WQ_CONSUMER_REGS 232
#define WQ_TILE_Q(BQ) ((BQ) * 128)
#define WQ_SQ (2 * WQ_TILE_K)
#define WQ_SDO(BQ, S) (WQ_SQ + (S) * WQ_TILE_Q(BQ))
#define WQ_SDS(BQ, S) (WQ_SDO(BQ, S) + (S) * WQ_TILE_Q(BQ))
#define WQ_DS_BUF(BQ) ((BQ) == 64 ? WQ_TILE_K : 2 * WQ_TILE_K)
#define WQ_STATS(BQ, S) (WQ_SDS(BQ, S) + 2 * WQ_DS_BUF(BQ))
#define WQ_BARS(BQ, S) (WQ_STATS(BQ, S) + (S) * 2 * (BQ) * 4)
/** Dynamic shared memory: S 3: 117328 bytes at BQ 64, 175440 at 96, 200784 at 128; S 4, BQ 64: 134240. */
#define WQ_SHARED_BYTES(BQ, S) (WQ_BARS(BQ, S) + 8 * (2 * (S) + 4) + 1024)

#define WQ_OPS48 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47}"

/** d[64x96] (+)= a[64x16] * b[16x96], both K-major from descriptors (ZERO: d = a * b). */
template <int ZERO>
__device__ __forceinline__ void wq_mma_m64n96k16(float* d, u64 da, u64 db) {
  if constexpr (ZERO) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 0, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n96k16.f32.bf16.bf16 "
        WQ_OPS48 ", %48, %49, p, 1, 1, 0, 0;\n}\n"
        : WG_D32(WG_W), WG_D8(WG_W, 32), WG_D8(WG_W, 40)
        : "l"(da), "l"(db));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n96k16.f32.bf16.bf16 "
        WQ_OPS48 ", %48, %49, p, 1, 1, 0, 0;\n}\n"
        : WG_D32(WG_RW), WG_D8(WG_RW, 32), WG_D8(WG_RW, 40)
        : "l"(da), "l"(db));
  }
}

/** d[64xN] (+)= a[64x16] * b[16xN] from descriptors for the N this file uses: 32, 48, 64 with either
 * operand MN-major (TA / TB), 96 and 128 K-major only. */
template <int N, int TA, int TB, int ZERO>
__device__ __forceinline__ void wq_mma(float* d, u64 da, u64 db) {
  if constexpr (N == 32) {
    wg_mma_m64n32k16<TA, TB, ZERO>(d, da, db);
  } else if constexpr (N == 48) {
    wd_mma_m64n48k16<TA, TB, ZERO>(d, da, db);
  } else if constexpr (N == 64) {
    wg_mma_m64n64k16<TA, TB, ZERO>(d, da, db);
  } else if constexpr (N == 96) {
    static_assert(TA == 0 && TB == 0, "K-major only");
    wq_mma_m64n96k16<ZERO>(d, da, db);
  } else {
    static_assert(N == 128 && TA == 0 && TB == 0, "K-major only");
    if constexpr (ZERO) fw_mma_m64n128k16_zero(d, da, db);
    else fw_mma_m64n128k16(d, da, db);
  }
}

extern __shared__ u32x4 wq_shared[];

/** Where dq^T of step s - 1 is queued (see the top of the file). */
#define WQ_EARLY 0
#define WQ_LATE 1
#define WQ_IP 2

template <int BQ, int MODE, int DQT>
__device__ __forceinline__ void wq_bwd(float* dq_acc, bf16* dk, bf16* dv, float* dv_keys, const bf16* q,
                                       const bf16* k, const bf16* v, const bf16* dout, const float* lse,
                                       const float* delta, int T, int H, int HK, int HV, float scale_log2,
                                       float scale) {
  constexpr int D = 64, NQ = BQ / 2, NT = BQ / 8, TILE_Q = WQ_TILE_Q(BQ);
  constexpr int STAGES = MODE == WQ_IP ? 4 : 3;
  constexpr bool PACKED = BQ == 64; // both warpgroups' ds^T halves in one tile
  static_assert(DQT || PACKED, "dq = ds k needs the queries of both warpgroups in one tile");
  static_assert(MODE != WQ_IP || BQ == 64, "two steps' fragments fit the registers at 64 queries only");
  const u32 base = (fa_smem(wq_shared) + 1023u) & ~1023u;
  const u32 sk = base, sv = base + WQ_TILE_K, bars = base + WQ_BARS(BQ, STAGES);
  const u32 full = bars, empty = bars + 8 * STAGES, ready = bars + 16 * STAGES, freed = ready + 16;
  float* stats = reinterpret_cast<float*>(reinterpret_cast<char*>(wq_shared) + (base - fa_smem(wq_shared)) +
                                          WQ_STATS(BQ, STAGES));
  const int hk = blockIdx.x, b = blockIdx.y, k0 = blockIdx.z * WQ_KEYS;
  const int group = H / HK, hv = hk / (HK / HV);
  const int wg = __shfl_sync(0xffffffffu, threadIdx.x >> 7, 0); // warp-uniform to the compiler
  const int wi = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const i64 qstride = (i64)H * D;
  const int qfirst = k0 / BQ, qblocks = (T + BQ - 1) / BQ - qfirst, steps = group * qblocks;
  auto step_head = [&](int it) { return hk * group + it / qblocks; };
  auto step_q0 = [&](int it) { return (qfirst + it % qblocks) * BQ; };
  if (threadIdx.x == 0) {
    for (int st = 0; st < STAGES; st++) {
      fw_mbar_init(full + 8 * st, 128);
      fw_mbar_init(empty + 8 * st, 256);
    }
    for (int p = 0; p < 2; p++) {
      fw_mbar_init(ready + 8 * p, 256);
      fw_mbar_init(freed + 8 * p, 256);
    }
  }
  __syncthreads();

  if (wg == 2) { // the producers: k and v (covered by the first full phase), then the steps' rows
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(WQ_PRODUCER_REGS));
    const int pi = threadIdx.x - 256;
    fw_load_rows<D, WQ_KEYS, 128>(sk, k + ((i64)b * T * HK + hk) * D, (i64)HK * D, k0, T, pi);
    fw_load_rows<D, WQ_KEYS, 128>(sv, v + ((i64)b * T * HV + hv) * D, (i64)HV * D, k0, T, pi);
    for (int t = 0; t < steps; t++) {
      const int st = t % STAGES;
      if (t >= STAGES) fw_mbar_wait(empty + 8 * st, (t / STAGES - 1) & 1);
      const int h = step_head(t), q0 = step_q0(t);
      const i64 head = (i64)b * T * H + h;
      fw_load_rows<D, BQ, 128>(base + WQ_SQ + st * TILE_Q, q + head * D, qstride, q0, T, pi);
      fw_load_rows<D, BQ, 128>(base + WQ_SDO(BQ, STAGES) + st * TILE_Q, dout + head * D, qstride, q0, T, pi);
      // Rows past T read lse = delta = 0: their q and dout rows are zero, so p = 1 adds nothing to dv and
      // ds = 0.
      for (int r = pi; r < 2 * BQ; r += 128) {
        const int row = r < BQ ? r : r - BQ;
        const bool inside = q0 + row < T;
        const float* src = (r < BQ ? lse : delta) + ((i64)b * H + h) * T + (inside ? q0 + row : 0);
        wd_cp4(base + WQ_STATS(BQ, STAGES) + 4u * (st * 2 * BQ + r), src, inside ? 4 : 0);
      }
      fw_mbar_arrive_cp(full + 8 * st);
    }
    fa_cp_wait<0>();
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(WQ_CONSUMER_REGS));

  // ds^T buffer of step parity p, and where warpgroup half h's queries start in it.
  auto ds_buf = [&](int p) { return base + WQ_SDS(BQ, STAGES) + WQ_DS_BUF(BQ) * p; };
  auto ds_half = [&](int h) { return PACKED ? 64u * h : (u32)WQ_TILE_K * h; };
  // dq^T [64 dims x NQ queries (wg NQ..)] of step `it` = k^T ds^T over the 128 keys; DQT = 0 (BQ 64):
  // dq [64 queries x dims 32wg..] = ds k instead, as wgmma.cu.
  auto issue_dq = [&](float* acc, int it) {
    if constexpr (!DQT) {
      const u32 sds = ds_buf(it & 1), skd = sk + 64u * wg;
      wg_mma_m64n32k16<1, 1, 1>(acc, wg_desc(sds, WB_LBO_MN, WB_SBO_MN), wg_desc(skd, WB_LBO_MN, WB_SBO_MN));
#pragma unroll
      for (int kc = 1; kc < WQ_KEYS / 16; kc++) {
        wg_mma_m64n32k16<1, 1>(acc, wg_desc(sds + 2048u * kc, WB_LBO_MN, WB_SBO_MN),
                               wg_desc(skd + 2048u * kc, WB_LBO_MN, WB_SBO_MN));
      }
      return;
    }
    const u32 sds = ds_buf(it & 1) + ds_half(wg);
    wq_mma<NQ, 1, 1, 1>(acc, wg_desc(sk, WB_LBO_MN, WB_SBO_MN), wg_desc(sds, WB_LBO_MN, WB_SBO_MN));
#pragma unroll
    for (int kc = 1; kc < WQ_KEYS / 16; kc++) {
      wq_mma<NQ, 1, 1, 0>(acc, wg_desc(sk + 2048u * kc, WB_LBO_MN, WB_SBO_MN),
                          wg_desc(sds + 2048u * kc, WB_LBO_MN, WB_SBO_MN));
    }
  };
  // acc[4j + 2half + e]: dim 16wi + g + 8half, query wg NQ + 8j + 2c + e. Lanes g, g ^ 1 swap one value
  // each: the even-g lane adds dims g, g + 1 of query 2c, the odd-g lane those of query 2c + 1.
  auto reduce_dq = [&](const float* acc, int it) {
    if constexpr (!DQT) { // acc[4j..]: queries 16wi + g (+8), dims 32wg + 8j + 2c (+1); 16-byte reductions
      const bool even = (c & 1) == 0;
      const int qrow = step_q0(it) + 16 * wi + g + (even ? 0 : 8);
      float* dst = dq_acc + ((i64)b * T * H + (i64)qrow * H + step_head(it)) * D + 32 * wg + 2 * (c & ~1);
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const float s0 = __shfl_xor_sync(0xffffffffu, even ? acc[4 * j + 2] : acc[4 * j], 1);
        const float s1 = __shfl_xor_sync(0xffffffffu, even ? acc[4 * j + 3] : acc[4 * j + 1], 1);
        if (qrow < T) {
          if (even) fa_red4(dst + 8 * j, acc[4 * j], acc[4 * j + 1], s0, s1);
          else fa_red4(dst + 8 * j, s0, s1, acc[4 * j + 2], acc[4 * j + 3]);
        }
      }
      return;
    }
    const bool odd = (g & 1) != 0;
    const i64 head = (i64)b * T * H + step_head(it);
    const int q0 = step_q0(it) + NQ * wg, dim = 16 * wi + (g & ~1);
#pragma unroll
    for (int j = 0; j < NQ / 8; j++) {
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

  float dka[32], dva[32], acc[NQ / 2];
#pragma unroll
  for (int i = 0; i < 32; i++) dka[i] = dva[i] = 0.f;
  const int krow = 64 * wg + 16 * wi + g; // this thread's key rows in the block: krow, krow + 8
  const u32 skw = sk + 8192u * wg, svw = sv + 8192u * wg;
  auto stage_q = [&](int stage) { return base + WQ_SQ + stage * TILE_Q; };
  auto stage_dout = [&](int stage) { return base + WQ_SDO(BQ, STAGES) + stage * TILE_Q; };
  auto wait_full = [&](int it) {
    fw_mbar_wait(full + 8 * (it % STAGES), (it / STAGES) & 1);
    wg_fence_shared();
  };
  // Both warpgroups' ds^T of step it stored / their dq^T of step it done (buffer it & 1 free again).
  auto wait_ready = [&](int it) { fw_mbar_wait(ready + 8 * (it & 1), (it >> 1) & 1); };
  auto wait_freed = [&](int it) { fw_mbar_wait(freed + 8 * (it & 1), (it >> 1) & 1); };
  // 1. s^T and dp^T for this warpgroup's 64 keys x BQ queries of the stage's tiles.
  auto issue_sdp = [&](float* st, float* dpt, u32 sq, u32 sdo) {
    wq_mma<BQ, 0, 0, 1>(st, wg_desc(skw, WB_LBO_K, WB_SBO_K), wg_desc(sq, WB_LBO_K, WB_SBO_K));
    wq_mma<BQ, 0, 0, 1>(dpt, wg_desc(svw, WB_LBO_K, WB_SBO_K), wg_desc(sdo, WB_LBO_K, WB_SBO_K));
#pragma unroll
    for (int kk = 1; kk < D / 16; kk++) {
      wq_mma<BQ, 0, 0, 0>(st, wg_desc(skw + 32u * kk, WB_LBO_K, WB_SBO_K), wg_desc(sq + 32u * kk, WB_LBO_K, WB_SBO_K));
      wq_mma<BQ, 0, 0, 0>(dpt, wg_desc(svw + 32u * kk, WB_LBO_K, WB_SBO_K), wg_desc(sdo + 32u * kk, WB_LBO_K, WB_SBO_K));
    }
  };
  // 2. p^T = exp(s - lse) (0 above the diagonal), ds^T = p^T (dp^T - delta) of step it as A fragments
  //    (tile j: queries 8j..; pa[2j + half]: key krow + 8 half); ds^T also to buffer it & 1, then
  //    announced on ready.
  auto p_ds = [&](u32* pa, u32* da, const float* st, const float* dpt, int it) {
    const int q0 = step_q0(it);
    const float* lrow = stats + (it % STAGES) * 2 * BQ;
    const float* drow = lrow + BQ;
    const bool diagonal = q0 < k0 + WQ_KEYS;
    const u32 sds = ds_buf(it & 1);
#pragma unroll
    for (int j = 0; j < NT; j++) {
#pragma unroll
      for (int half = 0; half < 2; half++) {
        const int key = k0 + krow + 8 * half, col = 8 * j + 2 * c;
        float p0 = fa_exp2(st[4 * j + 2 * half] * scale_log2 - lrow[col] * FA_LOG2E);
        float p1 = fa_exp2(st[4 * j + 2 * half + 1] * scale_log2 - lrow[col + 1] * FA_LOG2E);
        if (diagonal) {
          if (key > q0 + col) p0 = 0.f;
          if (key > q0 + col + 1) p1 = 0.f;
        }
        const float d0 = p0 * (dpt[4 * j + 2 * half] - drow[col]);
        const float d1 = p1 * (dpt[4 * j + 2 * half + 1] - drow[col + 1]);
        pa[2 * j + half] = fa_pack(p0, p1);
        da[2 * j + half] = fa_pack(d0, d1);
        const int h = PACKED ? 0 : (8 * j) / NQ; // warpgroup half of these queries
        const u32 at = PACKED ? wg_swizzle128(krow + 8 * half, col)
                              : h * WQ_TILE_K + wg_swizzle128(krow + 8 * half, col - h * NQ);
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sds + at), "r"(da[2 * j + half]));
      }
    }
    wg_fence_shared();
    fw_mbar_arrive(ready + 8 * (it & 1));
  };
  // 3. dv += p^T dout, dk += ds^T q: A fragment of k-step kq (queries 16kq..): tiles 2kq, 2kq + 1.
  auto issue_dvdk = [&](const u32* pa, const u32* da, u32 sq, u32 sdo) {
#pragma unroll
    for (int kq = 0; kq < BQ / 16; kq++) {
      const u32 fp[4] = {pa[4 * kq], pa[4 * kq + 1], pa[4 * kq + 2], pa[4 * kq + 3]};
      const u32 fd[4] = {da[4 * kq], da[4 * kq + 1], da[4 * kq + 2], da[4 * kq + 3]};
      wg_mma_m64n64k16_rega<1>(dva, fp, wg_desc(sdo + 2048u * kq, WB_LBO_MN, WB_SBO_MN));
      wg_mma_m64n64k16_rega<1>(dka, fd, wg_desc(sq + 2048u * kq, WB_LBO_MN, WB_SBO_MN));
    }
  };

  if constexpr (MODE == WQ_IP) {
    // dv / dk and dq^T of step it - 1 are queued behind s^T / dp^T of step it and run during its
    // exponentials (FlashAttention-3's intra-warpgroup overlap); the fragments of step it - 1 wait in
    // pp, dd, its stage is released one step later.
    u32 pp[BQ / 4], dd[BQ / 4];
    for (int it = 0; it < steps; it++) {
      const int stage = it % STAGES, prev = (it + STAGES - 1) % STAGES;
      wait_full(it);
      if (it > 0) wait_ready(it - 1);
      if (it >= 2) wait_freed(it - 2);
      float st[BQ / 2], dpt[BQ / 2];
      wg_fence();
      issue_sdp(st, dpt, stage_q(stage), stage_dout(stage));
      wg_commit();
      if (it > 0) {
        issue_dvdk(pp, dd, stage_q(prev), stage_dout(prev));
        issue_dq(acc, it - 1);
      }
      wg_commit();
      wg_wait<1>();
      wg_fence_operands<BQ / 2>(st);
      wg_fence_operands<BQ / 2>(dpt);
      u32 pa[BQ / 4], da[BQ / 4];
      p_ds(pa, da, st, dpt, it);
      wg_wait<0>();
      wg_fence_operands<BQ / 4>(pp);
      wg_fence_operands<BQ / 4>(dd);
      if (it > 0) {
        wg_fence_operands<NQ / 2>(acc);
        fw_mbar_arrive(empty + 8 * prev);
        fw_mbar_arrive(freed + 8 * ((it - 1) & 1));
        reduce_dq(acc, it - 1);
      }
#pragma unroll
      for (int i = 0; i < BQ / 4; i++) pp[i] = pa[i], dd[i] = da[i];
    }
    // dv / dk and dq^T of the last step.
    wait_ready(steps - 1);
    wg_fence();
    issue_dvdk(pp, dd, stage_q((steps - 1) % STAGES), stage_dout((steps - 1) % STAGES));
    issue_dq(acc, steps - 1);
    wg_commit();
  } else {
    for (int it = 0; it < steps; it++) {
      const int stage = it % STAGES;
      const u32 sq = stage_q(stage), sdo = stage_dout(stage);
      wait_full(it);
      if (MODE == WQ_EARLY && it > 0) wait_ready(it - 1);
      float st[BQ / 2], dpt[BQ / 2];
      wg_fence();
      issue_sdp(st, dpt, sq, sdo);
      wg_commit();
      if (MODE == WQ_EARLY) { // dq^T of step it - 1 behind s^T / dp^T
        if (it > 0) issue_dq(acc, it - 1);
        wg_commit();
        wg_wait<1>();
      } else {
        wg_wait<0>();
      }
      wg_fence_operands<BQ / 2>(st);
      wg_fence_operands<BQ / 2>(dpt);
      // ds^T of step it goes to buffer it & 1 once both warpgroups are done with dq^T of step it - 2.
      if (it >= 2) wait_freed(it - 2);
      u32 pa[BQ / 4], da[BQ / 4];
      p_ds(pa, da, st, dpt, it);
      if (MODE == WQ_LATE && it > 0) wait_ready(it - 1);
      wg_fence();
      issue_dvdk(pa, da, sq, sdo);
      wg_commit();
      if (MODE == WQ_LATE) { // dq^T of step it - 1 behind dv / dk
        if (it > 0) {
          issue_dq(acc, it - 1);
          wg_commit();
          wg_wait<0>();
          fw_mbar_arrive(empty + 8 * stage);
          wg_fence_operands<NQ / 2>(acc);
          fw_mbar_arrive(freed + 8 * ((it - 1) & 1));
          reduce_dq(acc, it - 1);
        } else {
          wg_wait<0>();
          fw_mbar_arrive(empty + 8 * stage);
        }
      } else {
        // 4. dq^T of step it - 1 into dq_acc while dv / dk run.
        if (it > 0) {
          wg_wait<1>();
          wg_fence_operands<NQ / 2>(acc);
          fw_mbar_arrive(freed + 8 * ((it - 1) & 1));
          reduce_dq(acc, it - 1);
        }
        // dv / dk done: they are the last readers of this stage.
        wg_wait<0>();
        fw_mbar_arrive(empty + 8 * stage);
      }
    }
    // dq^T of the last step.
    wait_ready(steps - 1);
    wg_fence();
    issue_dq(acc, steps - 1);
    wg_commit();
  }
  wg_wait<0>();
  wg_fence_operands<NQ / 2>(acc);
  wg_fence_operands<32>(dka);
  wg_fence_operands<32>(dva);
  reduce_dq(acc, steps - 1);

  wb_store_dkdv<D>(dk, dv, dv_keys, dka, dva, {b, T, HK, hk, HV, hv, k0 + krow, c}, scale);
}

#define WQ_KERNEL(NAME, BQ, MODE, DQT)                                                                        \
  extern "C" __global__ void __launch_bounds__(WQ_THREADS, 1) NAME(                                        \
      float* dq_acc, bf16* dk, bf16* dv, float* dv_keys, const bf16* q, const bf16* k, const bf16* v,      \
      const bf16* dout, const float* lse, const float* delta, int T, int H, int HK, int HV, float scale_log2, \
      float scale) {                                                                                       \
    wq_bwd<BQ, MODE, DQT>(dq_acc, dk, dv, dv_keys, q, k, v, dout, lse, delta, T, H, HK, HV, scale_log2, scale);  \
  }
WQ_KERNEL(flash_attention_bwd_wg_d64_ws, 64, WQ_EARLY, 1)
WQ_KERNEL(flash_attention_bwd_wg_d64_ws_late, 64, WQ_LATE, 1)
WQ_KERNEL(flash_attention_bwd_wg_d64_ws_dq4, 64, WQ_EARLY, 0)
WQ_KERNEL(flash_attention_bwd_wg_d64_ws_late_dq4, 64, WQ_LATE, 0)
WQ_KERNEL(flash_attention_bwd_wg_d64_ws_ip, 64, WQ_IP, 1)
WQ_KERNEL(flash_attention_bwd_wg_d64_ws_ip_dq4, 64, WQ_IP, 0)
WQ_KERNEL(flash_attention_bwd_wg_d64_ws_q96, 96, WQ_EARLY, 1)
WQ_KERNEL(flash_attention_bwd_wg_d64_ws_q96_late, 96, WQ_LATE, 1)
WQ_KERNEL(flash_attention_bwd_wg_d64_ws_q128_late, 128, WQ_LATE, 1)

#endif
