// Flash-attention backward on Hopper wgmma (sm_90a) for head dim 64: same contract as flash_bwd
// (flash_attention_bwd.cu: dq_acc f32 reductions, dv_keys when KV < K). Warp-specialized: one block =
// 128 keys of one key head in two consumer warpgroups (warpgroup w: keys 64w..64w+63) plus a producer
// warpgroup that copies k, v once and q, dout, lse, delta of every query step (64 queries) into 4
// shared-memory stages with cp.async, signalling full / empty mbarriers (as the forward,
// flash_attention_fwd_wg.cu; wg_mbar_* and wg_load_rows of wgmma.cu); setmaxnreg 40 / 232 (2 x 128 x 232
// + 128 x 40 = 384 x 168, the registers the block starts with; ptxas: the producer spills at 24, the
// consumers also fit in 216).
// All tiles are 128-byte swizzled bf16 rows of 64 (wg_swizzle128).
// Per step, per consumer warpgroup:
//   1. s^T = k q^T, dp^T = v dout^T [64 keys x 64 queries], K-major operands, K = 64 dims;
//   2. p^T, ds^T in registers (accumulator layout = A-fragment layout); ds^T also to shared memory;
//   3. dv += p^T dout, dk += ds^T q [64 keys x 64 dims], A from registers, B (dout, q) MN-major;
//   4. dq = ds k [64 queries x 32 dims: warpgroup w takes dims 32w..] over the 128 keys (A = ds^T stored
//      [keys][queries] MN-major, B = k [keys][dims] MN-major), added to dq_acc with 16-byte reductions.
// FlashAttention-3's intra-warpgroup overlap: 3 and 4 of step s - 1 are queued behind 1 of step s, so
// the tensor cores run them during step s's exponentials; the p^T / ds^T fragments of step s - 1 wait in
// registers, and its stage is released one step later (hence 4 stages). First k-steps use ZERO
// accumulation (no register zeroing: ptxas serializes a wgmma pipeline when other instructions write
// its accumulators).
// dq needs both warpgroups' ds^T, so they meet there, through mbarriers instead of a block barrier:
// ready[p] (count 256) completes when both have stored ds^T of a step of parity p, free[p] (count 256)
// when both have finished dq of it (then ds^T buffer p may be overwritten). Each mbarrier of a pair
// serves every second step, and a thread arrives for step s + 2 only after waiting the other mbarrier's
// phase of step s, so no phase is skipped. The warpgroups may drift apart by about a step, so one's
// exponentials overlap the other's products.
// Measured on the H200 (bench/results/2026-11-29-h200-session4/variants_backward_d64.txt, kernel only,
// B4 T8k / B1 T32k / B1 T128k, H32 K4, TFLOP/s): 313 / 309 / 302 against 274 / 284 / 270 for the
// previous kernel (removed from wgmma.cu: 256 threads without a producer, cp.async double buffer, a
// __syncthreads per step, dq of step s - 1 behind s^T / dp^T of step s). Warp-specialized variants of the same session
// (removed; 3 stages unless noted): dq of step s - 1 behind s^T / dp^T of step s 313 / 303 / 300, behind
// dv / dk of step s 308 / 305 / 299; dq^T = k^T ds^T instead (warpgroups split the queries, 8-byte
// reductions) with the overlap (4 stages) 271 / 275 / 275, behind s^T / dp^T 278 / 283 / 278, behind
// dv / dk 277 / 278 / 278, and with 96 queries per step 294 / 294 / 290 (behind dv / dk 293 / 297 /
// 291), 128 per step behind dv / dk 313 / 305 / 299. All agreed with the previous kernel (dk, dv bit for
// bit) at T 8k-128k, 3000, 520 and 77. This kernel compiles to the PTX of the measured variant
// (flash_attention_bwd_wg_d64_ws_ip_dq4); under this name it passed tests/cuda_flash_attention_test.ts and
// gave 299-313 TFLOP/s in bench/attention (delta and the dq cast included; SDPA 257-288).
// Grid: (K, B, ceil(T / 128)).
// Shared memory (byte offsets from the 1024-aligned base): k, v [128][64]; q, dout [4 stages][64][64];
// ds^T [2 step parities][128 keys][64 queries] (warpgroup w stores key rows 64w..); lse, delta [4
// stages][2][64] f32; mbarriers full, empty [4], ready, free [2]: WQ_SHARED_BYTES = 134240.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

#define WQ_THREADS 384
#define WQ_KEYS 128
#define WQ_BQ 64 /* queries per step */
#define WQ_STAGES 4
#define WQ_TILE_K 16384 /* [128][64] bf16 */
#define WQ_TILE_Q 8192  /* [64][64] bf16 */
#define WQ_PRODUCER_REGS 40
#define WQ_CONSUMER_REGS 232
#define WQ_SQ (2 * WQ_TILE_K)
#define WQ_SDO (WQ_SQ + WQ_STAGES * WQ_TILE_Q)
#define WQ_SDS (WQ_SDO + WQ_STAGES * WQ_TILE_Q)
#define WQ_STATS (WQ_SDS + 2 * WQ_TILE_K)
#define WQ_BARS (WQ_STATS + WQ_STAGES * 2 * WQ_BQ * 4)
/** Dynamic shared memory (flash_attention.ts: WGMMA_BACKWARD): 134240 bytes. */
#define WQ_SHARED_BYTES (WQ_BARS + 8 * (2 * WQ_STAGES + 4) + 1024)

extern __shared__ u32x4 wq_shared[];

extern "C" __global__ void __launch_bounds__(WQ_THREADS, 1) flash_attention_bwd_wg_d64(
    float* dq_acc, bf16* dk, bf16* dv, float* dv_keys, const bf16* q, const bf16* k, const bf16* v,
    const bf16* dout, const float* lse, const float* delta, int T, int H, int HK, int HV, float scale_log2,
    float scale) {
  constexpr int D = 64, BQ = WQ_BQ, STAGES = WQ_STAGES;
  const u32 base = (fa_smem(wq_shared) + 1023u) & ~1023u;
  const u32 sk = base, sv = base + WQ_TILE_K, bars = base + WQ_BARS;
  const u32 full = bars, empty = bars + 8 * STAGES, ready = bars + 16 * STAGES, freed = ready + 16;
  float* stats = reinterpret_cast<float*>(reinterpret_cast<char*>(wq_shared) + (base - fa_smem(wq_shared)) +
                                          WQ_STATS);
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
      wg_mbar_init(full + 8 * st, 128);
      wg_mbar_init(empty + 8 * st, 256);
    }
    for (int p = 0; p < 2; p++) {
      wg_mbar_init(ready + 8 * p, 256);
      wg_mbar_init(freed + 8 * p, 256);
    }
  }
  __syncthreads();

  if (wg == 2) { // the producers: k and v (covered by the first full phase), then the steps' rows
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(WQ_PRODUCER_REGS));
    const int pi = threadIdx.x - 256;
    wg_load_rows<D, WQ_KEYS, 128>(sk, k + ((i64)b * T * HK + hk) * D, (i64)HK * D, k0, T, pi);
    wg_load_rows<D, WQ_KEYS, 128>(sv, v + ((i64)b * T * HV + hv) * D, (i64)HV * D, k0, T, pi);
    for (int t = 0; t < steps; t++) {
      const int st = t % STAGES;
      if (t >= STAGES) wg_mbar_wait(empty + 8 * st, (t / STAGES - 1) & 1);
      const int h = step_head(t), q0 = step_q0(t);
      const i64 head = (i64)b * T * H + h;
      wg_load_rows<D, BQ, 128>(base + WQ_SQ + st * WQ_TILE_Q, q + head * D, qstride, q0, T, pi);
      wg_load_rows<D, BQ, 128>(base + WQ_SDO + st * WQ_TILE_Q, dout + head * D, qstride, q0, T, pi);
      // Rows past T read lse = delta = 0: their q and dout rows are zero, so p = 1 adds nothing to dv and
      // ds = 0.
      for (int r = pi; r < 2 * BQ; r += 128) {
        const int row = r < BQ ? r : r - BQ;
        const bool inside = q0 + row < T;
        const float* src = (r < BQ ? lse : delta) + ((i64)b * H + h) * T + (inside ? q0 + row : 0);
        fa_cp4(base + WQ_STATS + 4u * (st * 2 * BQ + r), src, inside ? 4 : 0);
      }
      wg_mbar_arrive_cp(full + 8 * st);
    }
    fa_cp_wait<0>();
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(WQ_CONSUMER_REGS));

  // ds^T buffer of step parity p.
  auto ds_buf = [&](int p) { return base + WQ_SDS + WQ_TILE_K * p; };
  // 4. dq [64 queries x dims 32wg..] of step `it` = ds k over the 128 keys.
  auto issue_dq = [&](float* acc, int it) {
    const u32 sds = ds_buf(it & 1), skd = sk + 64u * wg;
    wg_mma_m64n32k16<1, 1, 1>(acc, wg_desc(sds, WB_LBO_MN, WB_SBO_MN), wg_desc(skd, WB_LBO_MN, WB_SBO_MN));
#pragma unroll
    for (int kc = 1; kc < WQ_KEYS / 16; kc++) {
      wg_mma_m64n32k16<1, 1>(acc, wg_desc(sds + 2048u * kc, WB_LBO_MN, WB_SBO_MN),
                             wg_desc(skd + 2048u * kc, WB_LBO_MN, WB_SBO_MN));
    }
  };
  // acc[4j..]: queries 16wi + g (+8), dims 32wg + 8j + 2c (+1). Lanes c, c ^ 1 swap two values each, so
  // each adds 4 adjacent dims of one query (16-byte reductions).
  auto reduce_dq = [&](const float* acc, int it) {
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
  };

  float dka[32], dva[32], acc[16];
#pragma unroll
  for (int i = 0; i < 32; i++) dka[i] = dva[i] = 0.f;
  const int krow = 64 * wg + 16 * wi + g; // this thread's key rows in the block: krow, krow + 8
  const u32 skw = sk + 8192u * wg, svw = sv + 8192u * wg;
  auto stage_q = [&](int stage) { return base + WQ_SQ + stage * WQ_TILE_Q; };
  auto stage_dout = [&](int stage) { return base + WQ_SDO + stage * WQ_TILE_Q; };
  auto wait_full = [&](int it) {
    wg_mbar_wait(full + 8 * (it % STAGES), (it / STAGES) & 1);
    wg_fence_shared();
  };
  // Both warpgroups' ds^T of step it stored / their dq of step it done (buffer it & 1 free again).
  auto wait_ready = [&](int it) { wg_mbar_wait(ready + 8 * (it & 1), (it >> 1) & 1); };
  auto wait_freed = [&](int it) { wg_mbar_wait(freed + 8 * (it & 1), (it >> 1) & 1); };
  // 1. s^T and dp^T for this warpgroup's 64 keys x 64 queries of the stage's tiles.
  auto issue_sdp = [&](float* st, float* dpt, u32 sq, u32 sdo) {
    wg_mma_m64n64k16<0, 0, 1>(st, wg_desc(skw, WB_LBO_K, WB_SBO_K), wg_desc(sq, WB_LBO_K, WB_SBO_K));
    wg_mma_m64n64k16<0, 0, 1>(dpt, wg_desc(svw, WB_LBO_K, WB_SBO_K), wg_desc(sdo, WB_LBO_K, WB_SBO_K));
#pragma unroll
    for (int kk = 1; kk < D / 16; kk++) {
      wg_mma_m64n64k16<0, 0>(st, wg_desc(skw + 32u * kk, WB_LBO_K, WB_SBO_K), wg_desc(sq + 32u * kk, WB_LBO_K, WB_SBO_K));
      wg_mma_m64n64k16<0, 0>(dpt, wg_desc(svw + 32u * kk, WB_LBO_K, WB_SBO_K), wg_desc(sdo + 32u * kk, WB_LBO_K, WB_SBO_K));
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
    for (int j = 0; j < BQ / 8; j++) {
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
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sds + wg_swizzle128(krow + 8 * half, col)),
                     "r"(da[2 * j + half]));
      }
    }
    wg_fence_shared();
    wg_mbar_arrive(ready + 8 * (it & 1));
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

  // dv / dk and dq of step it - 1 are queued behind s^T / dp^T of step it and run during its
  // exponentials; the fragments of step it - 1 wait in pp, dd, its stage is released one step later.
  u32 pp[BQ / 4], dd[BQ / 4];
  for (int it = 0; it < steps; it++) {
    const int stage = it % STAGES, prev = (it + STAGES - 1) % STAGES;
    wait_full(it);
    if (it > 0) wait_ready(it - 1);
    // ds^T of step it goes to buffer it & 1 once both warpgroups are done with dq of step it - 2.
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
    if (it > 0) { // step it - 1 done: its stage and ds^T buffer are free, its dq into dq_acc
      wg_fence_operands<16>(acc);
      wg_mbar_arrive(empty + 8 * prev);
      wg_mbar_arrive(freed + 8 * ((it - 1) & 1));
      reduce_dq(acc, it - 1);
    }
#pragma unroll
    for (int i = 0; i < BQ / 4; i++) pp[i] = pa[i], dd[i] = da[i];
  }
  // dv / dk and dq of the last step.
  wait_ready(steps - 1);
  wg_fence();
  issue_dvdk(pp, dd, stage_q((steps - 1) % STAGES), stage_dout((steps - 1) % STAGES));
  issue_dq(acc, steps - 1);
  wg_commit();
  wg_wait<0>();
  wg_fence_operands<16>(acc);
  wg_fence_operands<32>(dka);
  wg_fence_operands<32>(dva);
  reduce_dq(acc, steps - 1);

  wb_store_dkdv<D>(dk, dv, dv_keys, dka, dva, {b, T, HK, hk, HV, hv, k0 + krow, c}, scale);
}

#endif
