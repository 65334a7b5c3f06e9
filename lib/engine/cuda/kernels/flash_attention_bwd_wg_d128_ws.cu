// Flash-attention backward at head dim 128 on Hopper wgmma (sm_90a), warp-specialized: same contract,
// grid and per-step math as flash_attention_bwd_wg_d128 (flash_attention_bwd_wg_d128.cu, whose wd_*
// helpers it uses), with the loads moved to a producer warpgroup as in flash_attention_fwd_wg_d128
// (fd_load_rows, the fw_mbar_* helpers). One block = WD_KEYS (128) keys of one key head: two consumer
// warpgroups (warpgroup w: keys 64w..64w+63) + a producer warpgroup; BQ (48 or 64) queries per step.
// The producer copies k and v once, then per step the q and dout tiles [2 halves][BQ][64] and the lse /
// delta rows into one of STAGES stages (cp.async; full[stage] completes when they have landed, count
// 128, cp.async.mbarrier.arrive.noinc); each consumer thread arrives on empty[stage] (count 256) once its
// dv / dk products of that step are done, and the producer waits on it before refilling the stage.
// setmaxnreg 240 / 24 as in the D128 forward (the block starts at 65536 / 384 = 168 per thread:
// 2 x 128 x 240 + 128 x 24 <= 384 x 168).
// Per consumer step it at BQ 48 (as flash_attention_bwd_wg_d128): s^T, dp^T [64 keys x 48 queries]
// issued; dq^T of step it - 1 (k^T ds^T over both warpgroups' 128 keys of ds^T) queued behind them once
// the other warpgroup's ds^T of step it - 1 is in shared memory; p^T, ds^T in registers, ds^T also to
// shared memory; dv += p^T dout, dk += ds^T q issued; dq^T of step it - 1 reduced into dq_acc while they
// run. At BQ 64 the registers do not hold dq^T [64 dims x 64 queries] next to s^T / dp^T (ptxas spills
// and serializes), so dq^T of step it - 1 is issued, waited for and reduced first, then s^T / dp^T:
// within a warpgroup nothing overlaps the exponentials, only the other warpgroup's products can.
// The two consumer warpgroups exchange ds^T through named barriers (the only block-wide wait left):
//   DC = 0: one 256-thread bar.sync (id WH_BAR0) per step, before dq^T of step it - 1 is issued (at BQ 48
//           after the s^T / dp^T issue: the products run during the wait); ds^T double-buffered (buffer
//           it % 2 is last read by dq^T of step it - 2, which both warpgroups finished before reaching
//           the barrier of step it);
//   DC = 1: one direction per barrier, so a warpgroup can run ahead of the other: after storing ds^T of
//           step it, warpgroup w fences and bar.arrives on WH_BAR0 + 2w + it % 2 (128 arrive, 128 sync,
//           count 256), and the other warpgroup bar.syncs there before issuing dq^T of step it. Barriers
//           alternate by step parity so no barrier ever holds two arrivals (warpgroup w arrives for step
//           it + 2 only after passing the sync for it + 1, which the other warpgroup arrived at after
//           its sync for step it). At BQ 48 ds^T triple-buffered: warpgroup w writes buffer it % 3 after
//           its sync for step it - 1, which the other warpgroup arrived at after finishing dq^T of step
//           it - 3 (dq^T of step it - 2 may still be in flight there); at BQ 64 double-buffered (dq^T of
//           step it - 2 is done before the other warpgroup's ds^T of step it - 1).
// Per consumer thread: dk, dv 64 + 64 f32; at BQ 48 s^T, dp^T, dq^T 24 each, p^T / ds^T fragments 12
// u32 each; at BQ 64 32 and 16.
// The protocol (stages, ds^T buffers, both barrier schemes, both step orders) was checked by a host
// emulation of random interleavings of the warpgroups and the copies landing (explore/bwd_wg128v_protocol.py).
// Never run on a GPU yet (explore/bwd_wg128v.ts times these against flash_attention_bwd_wg_d128).
// Grid: (K, B, ceil(T / WD_KEYS)), 384 threads, WH_SHARED_BYTES(BQ, BUFS, STAGES) bytes.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

#define WH_THREADS 384
#define WH_PRODUCER_REGS 24
#define WH_CONSUMER_REGS 240
/** First named barrier of the ds^T exchange (0 is __syncthreads'). */
#define WH_BAR0 1
/** Shared-memory layout (byte offsets from the 1024-aligned base) for BQ queries per step, BUFS ds^T
 * buffers and STAGES stages: k, v [2 halves][128][64]; ds^T [BUFS][128 keys][64] (BQ columns used); per
 * stage q, dout [2 halves][BQ][64]; lse, delta [STAGES][2][BQ] f32; full, empty mbarriers [STAGES] 8
 * bytes each. */
#define WH_SK 0
#define WH_SV (2 * WD_TILE_K)
#define WH_SDS (4 * WD_TILE_K)
#define WH_SQ(BUFS) (WH_SDS + (BUFS) * WD_TILE_K)
#define WH_STAGE(BQ) (4 * WD_TILE_Q(BQ))
#define WH_STATS(BQ, BUFS, STAGES) (WH_SQ(BUFS) + (STAGES) * WH_STAGE(BQ))
#define WH_BARS(BQ, BUFS, STAGES) (WH_STATS(BQ, BUFS, STAGES) + (STAGES) * 2 * (BQ) * 4)
/** Dynamic shared memory (+ 1024 bytes to align the tiles): at BQ 48 149280 (2 buffers, 2 stages), 174256
 * (2, 3), 165664 (3, 2), 190640 (3, 3); at BQ 64 165920 (2, 2). */
#define WH_SHARED_BYTES(BQ, BUFS, STAGES) (WH_BARS(BQ, BUFS, STAGES) + 16 * (STAGES) + 1024)

__device__ __forceinline__ void wh_bar_sync(int id) { asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ void wh_bar_arrive(int id) { asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory"); }

/** d[64 x BQ] (+)= a[64x16] * b[16 x BQ] from descriptors, BQ 48 or 64 (as wd_mma_m64n48k16). */
template <int BQ, int TA, int TB, int ZERO = 0>
__device__ __forceinline__ void wh_mma(float* d, u64 da, u64 db) {
  if constexpr (BQ == 48) {
    wd_mma_m64n48k16<TA, TB, ZERO>(d, da, db);
  } else {
    wg_mma_m64n64k16<TA, TB, ZERO>(d, da, db);
  }
}

extern __shared__ u32x4 wh_shared[];

/** BUFS: ds^T buffers; 3 only where a warpgroup can write one while the other may still be reading it two
 * steps back (BQ 48 with one-way barriers, see the header). */
template <int BQ, int STAGES, int DC, int BUFS = (DC && BQ == 48) ? 3 : 2>
__device__ __forceinline__ void wh_backward(float* dq_acc, bf16* dk, bf16* dv, float* dv_keys, const bf16* q,
                                            const bf16* k, const bf16* v, const bf16* dout, const float* lse,
                                            const float* delta, int T, int H, int HK, int HV, float scale_log2,
                                            float scale) {
  constexpr int D = 128, PRODUCERS = 128, TILE_Q = WD_TILE_Q(BQ), STAGE = WH_STAGE(BQ);
  constexpr u32 SQ = WH_SQ(BUFS), STATS = WH_STATS(BQ, BUFS, STAGES);
  const u32 base = (fa_smem(wh_shared) + 1023u) & ~1023u;
  const u32 full = base + WH_BARS(BQ, BUFS, STAGES), empty = full + 8 * STAGES;
  const float* stats =
      reinterpret_cast<const float*>(reinterpret_cast<char*>(wh_shared) + (base - fa_smem(wh_shared)) + STATS);
  const int hk = blockIdx.x, b = blockIdx.y, k0 = blockIdx.z * WD_KEYS;
  const int group = H / HK, hv = hk / (HK / HV);
  const int wg = __shfl_sync(0xffffffffu, threadIdx.x >> 7, 0); // warp-uniform to the compiler
  const i64 qstride = (i64)H * D;
  const int qfirst = k0 / BQ, qblocks = (T + BQ - 1) / BQ - qfirst, steps = group * qblocks;
  auto step_head = [&](int it) { return hk * group + it / qblocks; };
  auto step_q0 = [&](int it) { return (qfirst + it % qblocks) * BQ; };
  if (threadIdx.x == 0) {
    for (int st = 0; st < STAGES; st++) {
      fw_mbar_init(full + 8 * st, PRODUCERS);
      fw_mbar_init(empty + 8 * st, 256);
    }
  }
  __syncthreads();

  if (wg == 2) { // the producers: k and v with step 0's tiles (full[0] covers them), then one step per stage
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(WH_PRODUCER_REGS));
    const int pi = threadIdx.x - 256;
    fw_load_rows<128, WD_KEYS, PRODUCERS>(base + WH_SK, k + ((i64)b * T * HK + hk) * D, (i64)HK * D, k0, T, pi);
    fw_load_rows<128, WD_KEYS, PRODUCERS>(base + WH_SV, v + ((i64)b * T * HV + hv) * D, (i64)HV * D, k0, T, pi);
    for (int t = 0; t < steps; t++) {
      const int st = t % STAGES, h = step_head(t), q0 = step_q0(t);
      if (t >= STAGES) fw_mbar_wait(empty + 8 * st, (t / STAGES - 1) & 1);
      const i64 head = (i64)b * T * H + h;
      const u32 sq = base + SQ + st * STAGE;
      fw_load_rows<128, BQ, PRODUCERS>(sq, q + head * D, qstride, q0, T, pi);
      fw_load_rows<128, BQ, PRODUCERS>(sq + 2 * TILE_Q, dout + head * D, qstride, q0, T, pi);
      // lse and delta rows; rows past T read 0 (their q and dout rows are zero: p = 1 adds nothing, ds = 0).
      if (pi < 2 * BQ) {
        const int row = pi < BQ ? pi : pi - BQ;
        const bool inside = q0 + row < T;
        const float* src = (pi < BQ ? lse : delta) + ((i64)b * H + h) * T + (inside ? q0 + row : 0);
        wd_cp4(base + STATS + 4u * (st * 2 * BQ + pi), src, inside ? 4 : 0);
      }
      fw_mbar_arrive_cp(full + 8 * st);
    }
    fa_cp_wait<0>();
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(WH_CONSUMER_REGS));

  const int wi = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  // dq^T [dims 64wg.., BQ queries] of step `it` = k^T ds^T over the 128 keys (ds^T buffer it % BUFS).
  auto issue_dq = [&](float* acc, int it) {
    const u32 sds = base + WH_SDS + WD_TILE_K * (it % BUFS), sk = base + WH_SK + WD_TILE_K * wg;
    wh_mma<BQ, 1, 1, 1>(acc, wg_desc(sk, WB_LBO_MN, WB_SBO_MN), wg_desc(sds, WB_LBO_MN, WB_SBO_MN));
#pragma unroll
    for (int kc = 1; kc < WD_KEYS / 16; kc++) {
      wh_mma<BQ, 1, 1>(acc, wg_desc(sk + 2048u * kc, WB_LBO_MN, WB_SBO_MN),
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
  // Waits until ds^T of step `it` is in shared memory from both warpgroups (see the header).
  auto await_ds = [&](int it) {
    if constexpr (DC) {
      wh_bar_sync(WH_BAR0 + 2 * (wg ^ 1) + (it & 1));
    } else {
      wg_fence_shared();
      wh_bar_sync(WH_BAR0);
    }
  };

  float dka[64], dva[64], acc[BQ / 2];
#pragma unroll
  for (int i = 0; i < 64; i++) dka[i] = dva[i] = 0.f;
  const int krow = 64 * wg + 16 * wi + g; // this thread's key rows in the block: krow, krow + 8

  // s^T and dp^T for this warpgroup's 64 keys x the BQ queries (k-step kk: dims 16kk.., in tile kk / 4 at
  // byte 32 (kk % 4) of each row).
  auto issue_s_dp = [&](float* st, float* dpt, u32 sq, u32 sdo) {
    const u32 sk = base + WH_SK + 8192u * wg, sv = base + WH_SV + 8192u * wg;
    wh_mma<BQ, 0, 0, 1>(st, wg_desc(sk, WB_LBO_K, WB_SBO_K), wg_desc(sq, WB_LBO_K, WB_SBO_K));
    wh_mma<BQ, 0, 0, 1>(dpt, wg_desc(sv, WB_LBO_K, WB_SBO_K), wg_desc(sdo, WB_LBO_K, WB_SBO_K));
#pragma unroll
    for (int kk = 1; kk < D / 16; kk++) {
      const u32 ka = (kk >> 2) * WD_TILE_K + 32u * (kk & 3), qa = (kk >> 2) * TILE_Q + 32u * (kk & 3);
      wh_mma<BQ, 0, 0>(st, wg_desc(sk + ka, WB_LBO_K, WB_SBO_K), wg_desc(sq + qa, WB_LBO_K, WB_SBO_K));
      wh_mma<BQ, 0, 0>(dpt, wg_desc(sv + ka, WB_LBO_K, WB_SBO_K), wg_desc(sdo + qa, WB_LBO_K, WB_SBO_K));
    }
  };

  for (int it = 0; it < steps; it++) {
    const int stage = it % STAGES;
    fw_mbar_wait(full + 8 * stage, (it / STAGES) & 1);
    wg_fence_shared();
    const int q0 = step_q0(it);
    const u32 sq = base + SQ + stage * STAGE, sdo = sq + 2 * TILE_Q;
    const float* lrow = stats + stage * 2 * BQ;
    const float* drow = lrow + BQ;

    // 1. s^T, dp^T of step it and dq^T of step it - 1: at BQ 48 dq^T queued behind s^T / dp^T and reduced
    //    in 4. (the tensor cores compute it during the exponentials); at BQ 64 dq^T issued, waited for and
    //    reduced before s^T / dp^T are issued (see the header).
    float st[BQ / 2], dpt[BQ / 2];
    wg_fence();
    if constexpr (BQ == 48) {
      issue_s_dp(st, dpt, sq, sdo);
      wg_commit();
      if (it > 0) {
        await_ds(it - 1);
        issue_dq(acc, it - 1);
      }
      wg_commit();
      wg_wait<1>();
    } else {
      if (it > 0) {
        await_ds(it - 1);
        issue_dq(acc, it - 1);
        wg_commit();
        wg_wait<0>();
        wg_fence_operands<BQ / 2>(acc);
        reduce_dq(acc, it - 1);
        wg_fence();
      }
      issue_s_dp(st, dpt, sq, sdo);
      wg_commit();
      wg_wait<0>();
    }
    wg_fence_operands<BQ / 2>(st);
    wg_fence_operands<BQ / 2>(dpt);

    // 2. p^T = exp(s - lse) (0 above the diagonal), ds^T = p^T (dp^T - delta); both as A fragments.
    const bool diagonal = q0 < k0 + WD_KEYS;
    const u32 sds = base + WH_SDS + WD_TILE_K * (it % BUFS);
    u32 pa[BQ / 4], da[BQ / 4]; // bf16 pairs: [n-tile j][half]: keys krow (+8), queries 8j + 2c (+1)
    wb_p_ds<BQ / 8>(pa, da, st, dpt, {lrow, drow, FA_LOG2E}, {scale_log2, diagonal, k0, krow, q0, c}, sds);
    if constexpr (DC) {
      wg_fence_shared();
      wh_bar_arrive(WH_BAR0 + 2 * wg + (it & 1));
    }
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
    // 4. (BQ 48) dq^T of step it - 1 into dq_acc while dv / dk run.
    if constexpr (BQ == 48) {
      if (it > 0) {
        wg_wait<1>();
        wg_fence_operands<BQ / 2>(acc);
        reduce_dq(acc, it - 1);
      }
    }
    // dv / dk done (waiting here keeps ptxas from serializing the wgmmas): the stage goes back.
    wg_wait<0>();
    fw_mbar_arrive(empty + 8 * stage);
  }
  // dq^T of the last step.
  await_ds(steps - 1);
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

/** The variants: _ws (48 queries per step, 2 stages, one shared barrier per step), _ws_s3 (3 stages),
 * _ws_dc (one-way barriers, 2 stages), _ws_dc_s3; _ws_q64 (64 queries per step, 2 stages, one shared
 * barrier), _ws_q64_dc (one-way barriers). */
#define WH_KERNEL(name, BQ, STAGES, DC)                                                                   \
  extern "C" __global__ void __launch_bounds__(WH_THREADS, 1)                                         \
      name(float* dq_acc, bf16* dk, bf16* dv, float* dv_keys, const bf16* q, const bf16* k,           \
           const bf16* v, const bf16* dout, const float* lse, const float* delta, int T, int H, int HK, \
           int HV, float scale_log2, float scale) {                                                   \
    wh_backward<BQ, STAGES, DC>(dq_acc, dk, dv, dv_keys, q, k, v, dout, lse, delta, T, H, HK, HV,     \
                                scale_log2, scale);                                                   \
  }
WH_KERNEL(flash_attention_bwd_wg_d128_ws, 48, 2, 0)
WH_KERNEL(flash_attention_bwd_wg_d128_ws_s3, 48, 3, 0)
WH_KERNEL(flash_attention_bwd_wg_d128_ws_dc, 48, 2, 1)
WH_KERNEL(flash_attention_bwd_wg_d128_ws_dc_s3, 48, 3, 1)
WH_KERNEL(flash_attention_bwd_wg_d128_ws_q64, 64, 2, 0)
WH_KERNEL(flash_attention_bwd_wg_d128_ws_q64_dc, 64, 2, 1)

#endif
