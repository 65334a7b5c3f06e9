// Flash-attention backward on Hopper wgmma (sm_90a) for head dim 128: same contract and launch as
// flash_attention_bwd_d128 (flash_attention_bwd.cu: dq_acc f32 reductions, dv_keys when KV < K) apart from
// the block size. Warp-specialized as the forwards (flash_attention_fwd_wg.cu; wg_load_rows, wg_mbar_* of wgmma.cu):
// one block = WD_KEYS (128) keys of one key head in two consumer warpgroups (warpgroup w: keys 64w..64w+63)
// + a producer warpgroup; WD_BQ (64) queries per step. A 128-wide row is two 128-byte swizzled tiles
// [rows][64] side by side (dims 0..63, 64..127; wg_swizzle128).
// The producer copies k and v once, then per step the q and dout tiles [2 halves][64][64] and the lse /
// delta rows into one of WD_STAGES (2) stages (cp.async; full[stage] completes when they have landed, count
// 128, cp.async.mbarrier.arrive.noinc); each consumer thread arrives on empty[stage] (count 256) once its
// dv / dk products of that step are done, and the producer waits on it before refilling the stage.
// setmaxnreg 240 / 24 as in the D128 forward (the block starts at 65536 / 384 = 168 per thread:
// 2 x 128 x 240 + 128 x 24 <= 384 x 168).
// Per consumer step it, per warpgroup:
//   1. dq^T of step it - 1 = k^T ds^T [64 dims (warpgroup w: dims 64w..) x 64 queries] (m64n64k16, A = k
//      tile w MN-major, B = ds^T [keys][queries] of both warpgroups MN-major, K = 128 keys), once the other
//      warpgroup's ds^T of step it - 1 is in shared memory; waited for and added to dq_acc [.., query, dim]
//      with 8-byte reductions (lane pairs swap values so each holds two adjacent dims of one query);
//   2. s^T = k q^T, dp^T = v dout^T [64 keys x 64 queries] (m64n64k16, K-major operands, K = 128 dims; the
//      first k-step with zero accumulation);
//   3. p^T, ds^T in registers (accumulator layout = A-fragment layout); ds^T also to shared memory;
//   4. dv += p^T dout, dk += ds^T q [64 keys x 128 dims] with A from registers, B (dout, q) MN-major: two
//      m64n64k16 per k-step (one per 64-dim tile); waited for at the end of the step (waiting later makes
//      ptxas serialize the wgmmas), then empty[stage].
// dq^T [64 dims x 64 queries] does not fit in the registers next to s^T / dp^T (ptxas spills and
// serializes), hence 1. before 2.: within a warpgroup nothing overlaps the exponentials, only the other
// warpgroup's products can.
// The two consumer warpgroups exchange ds^T through named barriers, one direction per barrier, so a
// warpgroup can run ahead of the other: after storing ds^T of step it, warpgroup w fences and bar.arrives
// on WD_BAR0 + 2w + it % 2 (128 arrive, 128 sync, count 256), and the other warpgroup bar.syncs there
// before issuing dq^T of step it. Barriers alternate by step parity so no barrier ever holds two arrivals
// (warpgroup w arrives for step it + 2 only after passing the sync for it + 1, which the other warpgroup
// arrived at after its sync for step it). ds^T double-buffered (buffer it % 2): dq^T of step it - 2 is
// done before a warpgroup's ds^T of step it - 1 is stored, so the other warpgroup's ds^T of step it, stored
// after its sync for step it - 1, never overwrites a buffer still read. This protocol (and the variants'
// below) was checked by a host emulation of random interleavings of the warpgroups and the copies landing
// (session 4, removed). Query steps start at multiples of 64 below the block's first key (masked where
// causal).
// Shapes: k, v [2 halves][128][64], ds^T [2][128][64], per stage q, dout [2 halves][64][64] bf16 and lse,
// delta [2][64] f32; per consumer thread dk, dv 64 + 64 f32, s^T, dp^T, dq^T 32 each, p^T / ds^T fragments
// 16 u32 each.
// Measured on the H200 (bench/results/2026-11-29-h200-session4/variants_backward_d128.txt, kernel only,
// B4 T8k / B1 T32k / B1 T128k, H16 K2): 360 / 327 / 328 TFLOP/s against 318 / 301 / 309 for the kernel it
// replaced (two warpgroups loading their own tiles, 48 queries per step, dq^T of step it - 1 queued behind
// s^T / dp^T, one __syncthreads per step); dk / dv bit-identical to it. Warp-specialized variants: 48
// queries per step with one shared barrier per step 337 / 315 / 310, with 3 stages 336 / 313 / 316,
// one-way barriers (3 ds^T buffers) 339 / 310 / 318, with 3 stages 343 / 314 / 321; 64 queries with one
// shared barrier 343 / 317 / 322 (removed). In bench/attention (delta and the dq cast included): 324-346
// against SDPA's 290-324; tests/cuda_flash_attention_test.ts passed on it. Earlier (session 3): 32 queries per step 279-290, dv / dk as
// one m64n128k16 spanning both 64-dim tiles 281-290, the mma.sync kernel 249-273.
// Grid: (K, B, ceil(T / WD_KEYS)), WD_THREADS (384) threads, WD_SHARED_BYTES (165920) bytes.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

#define WD_THREADS 384
#define WD_PRODUCER_REGS 24
#define WD_CONSUMER_REGS 240
#define WD_KEYS 128
#define WD_BQ 64
#define WD_STAGES 2
/** First named barrier of the ds^T exchange (0 is __syncthreads'): WD_BAR0 .. WD_BAR0 + 3. */
#define WD_BAR0 1
#define WD_TILE_K 16384 /* [128][64] bf16: half of a k or v tile; one ds^T buffer */
#define WD_TILE_Q (WD_BQ * 128) /* [64][64] bf16: half of a q or dout tile */
/** Shared-memory layout (byte offsets from the 1024-aligned base): k, v [2 halves][128][64]; ds^T [2
 * step parities][128 keys][64 queries]; per stage q, dout [2 halves][64][64]; lse, delta [stages][2][64]
 * f32; full, empty mbarriers [stages] 8 bytes each. */
#define WD_SK 0
#define WD_SV (2 * WD_TILE_K)
#define WD_SDS (4 * WD_TILE_K)
#define WD_SQ (WD_SDS + 2 * WD_TILE_K)
#define WD_STAGE (4 * WD_TILE_Q)
#define WD_STATS (WD_SQ + WD_STAGES * WD_STAGE)
#define WD_BARS (WD_STATS + WD_STAGES * 2 * WD_BQ * 4)
/** Dynamic shared memory (+ 1024 bytes to align the tiles): 165920. */
#define WD_SHARED_BYTES (WD_BARS + 16 * WD_STAGES + 1024)

__device__ __forceinline__ void wd_bar_sync(int id) { asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ void wd_bar_arrive(int id) { asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory"); }

/** red.global.add of two adjacent f32 (8-byte aligned). */
__device__ __forceinline__ void wd_red2(float* p, float a, float b) {
  asm volatile("red.global.add.v2.f32 [%0], {%1,%2};\n" ::"l"(p), "f"(a), "f"(b) : "memory");
}

extern __shared__ u32x4 wd_shared[];

extern "C" __global__ void __launch_bounds__(WD_THREADS, 1) flash_attention_bwd_wg_d128(
    float* dq_acc, bf16* dk, bf16* dv, float* dv_keys, const bf16* q, const bf16* k, const bf16* v,
    const bf16* dout, const float* lse, const float* delta, int T, int H, int HK, int HV, float scale_log2,
    float scale) {
  constexpr int D = 128, BQ = WD_BQ, STAGES = WD_STAGES, PRODUCERS = 128;
  const u32 base = (fa_smem(wd_shared) + 1023u) & ~1023u;
  const u32 full = base + WD_BARS, empty = full + 8 * STAGES;
  const float* stats =
      reinterpret_cast<const float*>(reinterpret_cast<char*>(wd_shared) + (base - fa_smem(wd_shared)) + WD_STATS);
  const int hk = blockIdx.x, b = blockIdx.y, k0 = blockIdx.z * WD_KEYS;
  const int group = H / HK, hv = hk / (HK / HV);
  const int wg = __shfl_sync(0xffffffffu, threadIdx.x >> 7, 0); // warp-uniform to the compiler
  const i64 qstride = (i64)H * D;
  const int qfirst = k0 / BQ, qblocks = (T + BQ - 1) / BQ - qfirst, steps = group * qblocks;
  auto step_head = [&](int it) { return hk * group + it / qblocks; };
  auto step_q0 = [&](int it) { return (qfirst + it % qblocks) * BQ; };
  if (threadIdx.x == 0) {
    for (int st = 0; st < STAGES; st++) {
      wg_mbar_init(full + 8 * st, PRODUCERS);
      wg_mbar_init(empty + 8 * st, 256);
    }
  }
  __syncthreads();

  if (wg == 2) { // the producers: k and v with step 0's tiles (full[0] covers them), then one step per stage
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(WD_PRODUCER_REGS));
    const int pi = threadIdx.x - 256;
    wg_load_rows<128, WD_KEYS, PRODUCERS>(base + WD_SK, k + ((i64)b * T * HK + hk) * D, (i64)HK * D, k0, T, pi);
    wg_load_rows<128, WD_KEYS, PRODUCERS>(base + WD_SV, v + ((i64)b * T * HV + hv) * D, (i64)HV * D, k0, T, pi);
    for (int t = 0; t < steps; t++) {
      const int st = t % STAGES, h = step_head(t), q0 = step_q0(t);
      if (t >= STAGES) wg_mbar_wait(empty + 8 * st, (t / STAGES - 1) & 1);
      const i64 head = (i64)b * T * H + h;
      const u32 sq = base + WD_SQ + st * WD_STAGE;
      wg_load_rows<128, BQ, PRODUCERS>(sq, q + head * D, qstride, q0, T, pi);
      wg_load_rows<128, BQ, PRODUCERS>(sq + 2 * WD_TILE_Q, dout + head * D, qstride, q0, T, pi);
      // lse and delta rows; rows past T read 0 (their q and dout rows are zero: p = 1 adds nothing, ds = 0).
      if (pi < 2 * BQ) {
        const int row = pi < BQ ? pi : pi - BQ;
        const bool inside = q0 + row < T;
        const float* src = (pi < BQ ? lse : delta) + ((i64)b * H + h) * T + (inside ? q0 + row : 0);
        fa_cp4(base + WD_STATS + 4u * (st * 2 * BQ + pi), src, inside ? 4 : 0);
      }
      wg_mbar_arrive_cp(full + 8 * st);
    }
    fa_cp_wait<0>();
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(WD_CONSUMER_REGS));

  const int wi = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  // dq^T [dims 64wg.., BQ queries] of step `it` = k^T ds^T over the 128 keys (ds^T buffer it % 2).
  auto issue_dq = [&](float* acc, int it) {
    const u32 sds = base + WD_SDS + WD_TILE_K * (it % 2), sk = base + WD_SK + WD_TILE_K * wg;
    wg_mma_m64n64k16<1, 1, 1>(acc, wg_desc(sk, WB_LBO_MN, WB_SBO_MN), wg_desc(sds, WB_LBO_MN, WB_SBO_MN));
#pragma unroll
    for (int kc = 1; kc < WD_KEYS / 16; kc++) {
      wg_mma_m64n64k16<1, 1>(acc, wg_desc(sk + 2048u * kc, WB_LBO_MN, WB_SBO_MN),
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
  auto await_ds = [&](int it) { wd_bar_sync(WD_BAR0 + 2 * (wg ^ 1) + (it & 1)); };

  float dka[64], dva[64], acc[BQ / 2];
#pragma unroll
  for (int i = 0; i < 64; i++) dka[i] = dva[i] = 0.f;
  const int krow = 64 * wg + 16 * wi + g; // this thread's key rows in the block: krow, krow + 8

  for (int it = 0; it < steps; it++) {
    const int stage = it % STAGES;
    wg_mbar_wait(full + 8 * stage, (it / STAGES) & 1);
    wg_fence_shared();
    const int q0 = step_q0(it);
    const u32 sq = base + WD_SQ + stage * WD_STAGE, sdo = sq + 2 * WD_TILE_Q;
    const float* lrow = stats + stage * 2 * BQ;
    const float* drow = lrow + BQ;

    // 1. dq^T of step it - 1, issued, waited for and reduced.
    float st[BQ / 2], dpt[BQ / 2];
    wg_fence();
    if (it > 0) {
      await_ds(it - 1);
      issue_dq(acc, it - 1);
      wg_commit();
      wg_wait<0>();
      wg_fence_operands<BQ / 2>(acc);
      reduce_dq(acc, it - 1);
      wg_fence();
    }
    // 2. s^T and dp^T for this warpgroup's 64 keys x the BQ queries (k-step kk: dims 16kk.., in tile
    //    kk / 4 at byte 32 (kk % 4) of each row).
    const u32 sk = base + WD_SK + 8192u * wg, sv = base + WD_SV + 8192u * wg;
    wg_mma_m64n64k16<0, 0, 1>(st, wg_desc(sk, WB_LBO_K, WB_SBO_K), wg_desc(sq, WB_LBO_K, WB_SBO_K));
    wg_mma_m64n64k16<0, 0, 1>(dpt, wg_desc(sv, WB_LBO_K, WB_SBO_K), wg_desc(sdo, WB_LBO_K, WB_SBO_K));
#pragma unroll
    for (int kk = 1; kk < D / 16; kk++) {
      const u32 ka = (kk >> 2) * WD_TILE_K + 32u * (kk & 3), qa = (kk >> 2) * WD_TILE_Q + 32u * (kk & 3);
      wg_mma_m64n64k16<0, 0>(st, wg_desc(sk + ka, WB_LBO_K, WB_SBO_K), wg_desc(sq + qa, WB_LBO_K, WB_SBO_K));
      wg_mma_m64n64k16<0, 0>(dpt, wg_desc(sv + ka, WB_LBO_K, WB_SBO_K), wg_desc(sdo + qa, WB_LBO_K, WB_SBO_K));
    }
    wg_commit();
    wg_wait<0>();
    wg_fence_operands<BQ / 2>(st);
    wg_fence_operands<BQ / 2>(dpt);

    // 3. p^T = exp(s - lse) (0 above the diagonal), ds^T = p^T (dp^T - delta); both as A fragments; ds^T
    //    to buffer it % 2, then the other warpgroup may read it.
    const bool diagonal = q0 < k0 + WD_KEYS;
    const u32 sds = base + WD_SDS + WD_TILE_K * (it % 2);
    u32 pa[BQ / 4], da[BQ / 4]; // bf16 pairs: [n-tile j][half]: keys krow (+8), queries 8j + 2c (+1)
    wb_p_ds<BQ / 8>(pa, da, st, dpt, {lrow, drow, FA_LOG2E}, {scale_log2, diagonal, k0, krow, q0, c}, sds);
    wg_fence_shared();
    wd_bar_arrive(WD_BAR0 + 2 * wg + (it & 1));
    // 4. dv += p^T dout, dk += ds^T q: A fragment of k-step kq (queries 16kq..): tiles 2kq, 2kq + 1;
    //    B rows 16kq.. are 2048 bytes into each 64-dim tile.
    wg_fence();
#pragma unroll
    for (int kq = 0; kq < BQ / 16; kq++) {
      const u32 fp[4] = {pa[4 * kq], pa[4 * kq + 1], pa[4 * kq + 2], pa[4 * kq + 3]};
      const u32 fd[4] = {da[4 * kq], da[4 * kq + 1], da[4 * kq + 2], da[4 * kq + 3]};
#pragma unroll
      for (int n = 0; n < 2; n++) {
        const u32 at = n * WD_TILE_Q + 2048u * kq;
        wg_mma_m64n64k16_rega<1>(dva + 32 * n, fp, wg_desc(sdo + at, WB_LBO_MN, WB_SBO_MN));
        wg_mma_m64n64k16_rega<1>(dka + 32 * n, fd, wg_desc(sq + at, WB_LBO_MN, WB_SBO_MN));
      }
    }
    wg_commit();
    // dv / dk done: the stage goes back.
    wg_wait<0>();
    wg_mbar_arrive(empty + 8 * stage);
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

#endif
