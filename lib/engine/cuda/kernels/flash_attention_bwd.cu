// Flash-attention backward (FlashAttention-2 on mma.sync tensor cores), bf16 in/out, f32 accumulation.
// q, dout [B, T, H, D]; k, dk [B, T, K, D]; v, dv [B, T, KV, D]; lse, delta f32 [B, H, T]; dq_acc f32
// [B, T, H, D]. KV divides K; when KV < K (`query` granularity) each block writes its key head's dv
// share in f32 to dv_keys [B, T, K, D] and flash_attention_dv_sum adds the K / KV shares of each value
// head.
// One block = FB_BN keys of one key head, 8 warps; dk and dv stay in registers while the block walks
// every query head of the group and every query block (BM rows) from the diagonal on. Each step runs
// three products, each with its own warp layout so that every warp computes a wide tile (operands
// read from shared memory once per tile, not once per 16 rows):
//   1. s = q k^T and dp = dout v^T [BM x BN]: warps 2 (queries) x 4 (keys), tiles BM/2 x 32;
//      p = exp(s - lse) and ds = p (dp - delta) go to shared memory as bf16 [BM][BN];
//   2. dv += p^T dout, dk += ds^T q [BN x D]: warps 4 (keys) x 2 (dims), tiles 32 x D/2 (registers);
//   3. dq = ds k [BM x D]: warps BM/32 (queries) x rest (dims), tiles 32 x D*BM/256 (32 x 16 at D 64,
//      32 x 32 at D 128), added to dq_acc (zeroed before) with 16-byte f32 vector reductions, then
//      scaled and rounded by flash_attention_dq.
// delta = rowsum(dout * out) comes from flash_attention_delta first. Query/dout tiles are double
// buffered (cp.async): step i+1's tiles load while step i computes; two barriers per step.
// Grid: (K, B, ceil(T / FB_BN)), the longest (first) key blocks first.
// Measured on the H200 (bench/attention, 2026-11-29): 250-272 TFLOP/s at D 128 and 213-226 at D 64
// with BM 64 (BM 128 at D 64: 3% slower), against 196-216 and 169-178 for the previous layout (each
// warp 16 keys x all 64 queries of a step, so every warp read the whole q and dout tiles). Both use
// 254 registers (one block per SM); capping them at 128 for two blocks per SM spills 456 bytes (D 64).

#define FB_BN 128
#define FB_WARPS 8

/** Address of the A fragment (16x16 at row m0, col k0) of the transpose of a row-major [k][m] tile
 * (fa_ldsm4t): the A operand p^T / ds^T read from p / ds stored as [query][key]. */
__device__ __forceinline__ u32 fa_at_addr(u32 base, int stride, int k0, int m0, int lane) {
  return base + 2u * (u32)((k0 + (lane & 7) + (lane >> 4) * 8) * stride + m0 + ((lane >> 3) & 1) * 8);
}

template <int D, int BM>
__device__ __forceinline__ void flash_bwd(float* dq_acc, bf16* dk, bf16* dv, float* dv_keys,
                                          const bf16* q, const bf16* k, const bf16* v, const bf16* dout,
                                          const float* lse, const float* delta, int T, int H, int HK,
                                          int HV, float scale_log2, float scale) {
  constexpr int BN = FB_BN, THREADS = FB_WARPS * 32, S = D + FA_PAD, SP = BN + FA_PAD;
  constexpr int M1 = BM / 2, MT1 = M1 / 16;          // product 1: warp tile M1 x 32 (MT1 x 4 mma tiles)
  constexpr int N2 = D / 2, NT2 = N2 / 8;            // product 2: warp tile 32 x N2
  constexpr int QW3 = BM / 32, N3 = D * QW3 / FB_WARPS, NT3 = N3 / 8; // product 3: warp tile 32 x N3
  static_assert(FB_WARPS == 8 && BN == 128 && BM % 32 == 0 && N3 % 16 == 0 && BN % BM == 0, "tiling");
  bf16* smem = reinterpret_cast<bf16*>(fa_shared);
  const u32 sk = fa_smem(smem);            // [BN][S]
  const u32 sv = sk + 2u * BN * S;         // [BN][S]
  const u32 sq = sv + 2u * BN * S;         // [2][BM][S]
  const u32 sdo = sq + 2u * 2 * BM * S;    // [2][BM][S]
  const u32 sp = sdo + 2u * 2 * BM * S;    // [BM][SP]: p as [query][key]
  const u32 sds = sp + 2u * BM * SP;       // [BM][SP]: ds as [query][key]
  float* slse = reinterpret_cast<float*>(smem + 2 * BN * S + 4 * BM * S + 2 * BM * SP); // [2][BM], x log2(e)
  float* sdelta = slse + 2 * BM;                                                        // [2][BM]

  const int hk = blockIdx.x, b = blockIdx.y, k0 = blockIdx.z * BN;
  const int group = H / HK;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const i64 qstride = (i64)H * D, kstride = (i64)HK * D, vstride = (i64)HV * D;
  const int hv = hk / (HK / HV);
  const int qfirst = k0 / BM;                           // the query block holding key k0
  const int qblocks = (T + BM - 1) / BM - qfirst;       // query blocks per head from there
  const int steps = group * qblocks;

  fa_load_tile<D, BN, THREADS>(sk, k + ((i64)b * T * HK + hk) * D, kstride, k0, T);
  fa_load_tile<D, BN, THREADS>(sv, v + ((i64)b * T * HV + hv) * D, vstride, k0, T);

  // Loads step `it` (query head, query block) into stage buffer `stage`.
  auto load_step = [&](int it, int stage) {
    const int h = hk * group + it / qblocks, q0 = (qfirst + it % qblocks) * BM;
    const i64 head = (i64)b * T * H + h;
    fa_load_tile<D, BM, THREADS>(sq + 2u * (u32)(stage * BM * S), q + head * D, qstride, q0, T);
    fa_load_tile<D, BM, THREADS>(sdo + 2u * (u32)(stage * BM * S), dout + head * D, qstride, q0, T);
    for (int r = threadIdx.x; r < BM; r += THREADS) {
      const i64 at = ((i64)b * H + h) * T + q0 + r;
      const bool inside = q0 + r < T;
      slse[stage * BM + r] = inside ? lse[at] * FA_LOG2E : F32_INFINITY;
      sdelta[stage * BM + r] = inside ? delta[at] : 0.f;
    }
  };
  load_step(0, 0);
  fa_cp_commit();

  // Product 2's accumulators: dv and dk for keys k0 + wk2 * 32 + (two 16-row tiles), dims wd2 * N2...
  const int wk2 = warp & 3, wd2 = warp >> 2;
  float dka[2][NT2][4], dva[2][NT2][4];
#pragma unroll
  for (int m = 0; m < 2; m++)
#pragma unroll
    for (int n = 0; n < NT2; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) dka[m][n][e] = dva[m][n][e] = 0.f;
  const int wq1 = warp >> 2, wk1 = warp & 3; // product 1: query half, key quarter
  const int wq3 = warp % QW3, wd3 = warp / QW3; // product 3: query rows wq3 * 32, dims wd3 * N3

  for (int it = 0; it < steps; it++) {
    const int stage = it & 1;
    fa_cp_wait<0>();
    __syncthreads(); // step it's tiles are in; every warp is done with step it - 1
    if (it + 1 < steps) load_step(it + 1, stage ^ 1);
    fa_cp_commit();
    const int h = hk * group + it / qblocks, q0 = (qfirst + it % qblocks) * BM;
    const u32 sqs = sq + 2u * (u32)(stage * BM * S), sdos = sdo + 2u * (u32)(stage * BM * S);
    const float* lrow = slse + stage * BM;
    const float* drow = sdelta + stage * BM;

    // 1. s and dp for this warp's M1 queries x 32 keys.
    {
      float st[MT1][4][4], dpt[MT1][4][4];
#pragma unroll
      for (int m = 0; m < MT1; m++)
#pragma unroll
        for (int n = 0; n < 4; n++)
#pragma unroll
          for (int e = 0; e < 4; e++) st[m][n][e] = dpt[m][n][e] = 0.f;
#pragma unroll
      for (int kk = 0; kk < D / 16; kk++) {
        u32 kb[2][4], vb[2][4];
#pragma unroll
        for (int j = 0; j < 2; j++) {
          fa_ldsm4(fa_bn_addr(sk, S, wk1 * 32 + j * 16, kk * 16, lane), kb[j]);
          fa_ldsm4(fa_bn_addr(sv, S, wk1 * 32 + j * 16, kk * 16, lane), vb[j]);
        }
#pragma unroll
        for (int m = 0; m < MT1; m++) {
          u32 a[4];
          fa_ldsm4(fa_a_addr(sqs, S, wq1 * M1 + m * 16, kk * 16, lane), a);
#pragma unroll
          for (int j = 0; j < 2; j++) {
            fa_mma(st[m][2 * j], a, kb[j][0], kb[j][1]);
            fa_mma(st[m][2 * j + 1], a, kb[j][2], kb[j][3]);
          }
          fa_ldsm4(fa_a_addr(sdos, S, wq1 * M1 + m * 16, kk * 16, lane), a);
#pragma unroll
          for (int j = 0; j < 2; j++) {
            fa_mma(dpt[m][2 * j], a, vb[j][0], vb[j][1]);
            fa_mma(dpt[m][2 * j + 1], a, vb[j][2], vb[j][3]);
          }
        }
      }
      // p = exp(s - lse) (0 above the diagonal), ds = p (dp - delta), both to shared memory.
      const bool diagonal = q0 < k0 + BN;
#pragma unroll
      for (int m = 0; m < MT1; m++) {
#pragma unroll
        for (int half = 0; half < 2; half++) {
          const int row = wq1 * M1 + m * 16 + g + half * 8;
          const float l = lrow[row], dl = drow[row];
#pragma unroll
          for (int n = 0; n < 4; n++) {
            const int col = wk1 * 32 + n * 8 + 2 * c;
            float p0 = fa_exp2(st[m][n][2 * half] * scale_log2 - l);
            float p1 = fa_exp2(st[m][n][2 * half + 1] * scale_log2 - l);
            if (diagonal) {
              if (k0 + col > q0 + row) p0 = 0.f;
              if (k0 + col + 1 > q0 + row) p1 = 0.f;
            }
            const float d0 = p0 * (dpt[m][n][2 * half] - dl), d1 = p1 * (dpt[m][n][2 * half + 1] - dl);
            const u32 at = 2u * (u32)(row * SP + col);
            asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sp + at), "r"(fa_pack(p0, p1)));
            asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sds + at), "r"(fa_pack(d0, d1)));
          }
        }
      }
    }
    __syncthreads(); // p and ds are in shared memory

    // 2. dv += p^T dout, dk += ds^T q (dk scaled at the end).
#pragma unroll
    for (int kq = 0; kq < BM / 16; kq++) {
      u32 pa[2][4], da[2][4];
#pragma unroll
      for (int m = 0; m < 2; m++) {
        fa_ldsm4t(fa_at_addr(sp, SP, kq * 16, wk2 * 32 + m * 16, lane), pa[m]);
        fa_ldsm4t(fa_at_addr(sds, SP, kq * 16, wk2 * 32 + m * 16, lane), da[m]);
      }
#pragma unroll
      for (int np = 0; np < NT2 / 2; np++) {
        u32 bf[4];
        fa_ldsm4t(fa_bk_addr(sdos, S, kq * 16, wd2 * N2 + np * 16, lane), bf);
#pragma unroll
        for (int m = 0; m < 2; m++) {
          fa_mma(dva[m][2 * np], pa[m], bf[0], bf[1]);
          fa_mma(dva[m][2 * np + 1], pa[m], bf[2], bf[3]);
        }
        fa_ldsm4t(fa_bk_addr(sqs, S, kq * 16, wd2 * N2 + np * 16, lane), bf);
#pragma unroll
        for (int m = 0; m < 2; m++) {
          fa_mma(dka[m][2 * np], da[m], bf[0], bf[1]);
          fa_mma(dka[m][2 * np + 1], da[m], bf[2], bf[3]);
        }
      }
    }

    // 3. dq[32 queries, N3 dims of this warp] += ds k over the block's keys, into dq_acc. Lane pairs
    // swap halves so that each lane holds 4 consecutive columns of one row: one 16-byte add.
    {
      float acc[2][NT3][4];
#pragma unroll
      for (int m = 0; m < 2; m++)
#pragma unroll
        for (int n = 0; n < NT3; n++) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.f;
#pragma unroll
      for (int kc = 0; kc < BN / 16; kc++) {
        u32 a[2][4];
#pragma unroll
        for (int m = 0; m < 2; m++) fa_ldsm4(fa_a_addr(sds, SP, wq3 * 32 + m * 16, kc * 16, lane), a[m]);
#pragma unroll
        for (int np = 0; np < NT3 / 2; np++) {
          u32 bf[4];
          fa_ldsm4t(fa_bk_addr(sk, S, kc * 16, wd3 * N3 + np * 16, lane), bf);
#pragma unroll
          for (int m = 0; m < 2; m++) {
            fa_mma(acc[m][2 * np], a[m], bf[0], bf[1]);
            fa_mma(acc[m][2 * np + 1], a[m], bf[2], bf[3]);
          }
        }
      }
      const bool even = (c & 1) == 0;
#pragma unroll
      for (int m = 0; m < 2; m++) {
        const int qrow = q0 + wq3 * 32 + m * 16 + g + (even ? 0 : 8);
        float* dst = dq_acc + ((i64)b * T * H + (i64)qrow * H + h) * D + wd3 * N3 + 2 * (c & ~1);
#pragma unroll
        for (int n = 0; n < NT3; n++) {
          const float s0 = __shfl_xor_sync(0xffffffffu, even ? acc[m][n][2] : acc[m][n][0], 1);
          const float s1 = __shfl_xor_sync(0xffffffffu, even ? acc[m][n][3] : acc[m][n][1], 1);
          if (qrow < T) {
            if (even) fa_red4(dst + n * 8, acc[m][n][0], acc[m][n][1], s0, s1);
            else fa_red4(dst + n * 8, s0, s1, acc[m][n][2], acc[m][n][3]);
          }
        }
      }
    }
  }

#pragma unroll
  for (int m = 0; m < 2; m++) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int key = k0 + wk2 * 32 + m * 16 + g + i * 8;
      if (key >= T) continue;
      const i64 at = ((i64)b * T * HK + (i64)key * HK + hk) * D + wd2 * N2 + 2 * c;
      u32* kdst = reinterpret_cast<u32*>(dk + at);
#pragma unroll
      for (int n = 0; n < NT2; n++) kdst[n * 4] = fa_pack(dka[m][n][2 * i] * scale, dka[m][n][2 * i + 1] * scale);
      if (dv_keys) {
#pragma unroll
        for (int n = 0; n < NT2; n++) {
          dv_keys[at + n * 8] = dva[m][n][2 * i];
          dv_keys[at + n * 8 + 1] = dva[m][n][2 * i + 1];
        }
      } else {
        u32* vdst = reinterpret_cast<u32*>(dv + ((i64)b * T * HV + (i64)key * HV + hv) * D + wd2 * N2 + 2 * c);
#pragma unroll
        for (int n = 0; n < NT2; n++) vdst[n * 4] = fa_pack(dva[m][n][2 * i], dva[m][n][2 * i + 1]);
      }
    }
  }
}

/** Query rows per backward step (mirrored in flash_attention.ts). */
#define FB_BM 64
#define FLASH_BWD(DIM, BM, NAME)                                                                   \
  extern "C" __global__ void __launch_bounds__(FB_WARPS * 32) NAME(                                \
      float* dq_acc, bf16* dk, bf16* dv, float* dv_keys, const bf16* q, const bf16* k,            \
      const bf16* v, const bf16* dout, const float* lse, const float* delta, int T, int H, int HK, \
      int HV, float scale_log2, float scale) {                                                     \
    flash_bwd<DIM, BM>(dq_acc, dk, dv, dv_keys, q, k, v, dout, lse, delta, T, H, HK, HV, scale_log2, \
                       scale);                                                                     \
  }
FLASH_BWD(64, FB_BM, flash_attention_bwd_d64)
FLASH_BWD(128, FB_BM, flash_attention_bwd_d128)

/** delta[B, H, T] = rowsum(dout * out) for rows of D elements (D a multiple of 8, 16-byte aligned). */
extern "C" __global__ void flash_attention_delta(float* delta, const bf16* dout, const bf16* out, int B,
                                                 int T, int H, int D) {
  const i64 row = (i64)blockIdx.x * blockDim.x + threadIdx.x; // ((b * T + t) * H + h)
  if (row >= (i64)B * T * H) return;
  const int h = (int)(row % H), t = (int)((row / H) % T), b = (int)(row / H / T);
  float sum = 0.f;
  for (int d = 0; d < D; d += 8) {
    float x[8], y[8];
    ld8(dout + row * D + d, x);
    ld8(out + row * D + d, y);
#pragma unroll
    for (int e = 0; e < 8; e++) sum += x[e] * y[e];
  }
  delta[((i64)b * H + h) * T + t] = sum;
}

/** dq = bf16(scale * dq_acc), n a multiple of 8, 16-byte aligned. */
extern "C" __global__ void flash_attention_dq(bf16* dq, const float* dq_acc, i64 n, float scale) {
  GRID_LOOP(i, n >> 3) {
    float x[8];
    ld8(dq_acc + (i << 3), x);
#pragma unroll
    for (int e = 0; e < 8; e++) x[e] *= scale;
    st8(dq + (i << 3), x);
  }
}

/** dv[B, T, KV, D] = bf16(sum of the K / KV key-head shares in dv_keys[B, T, K, D]) (`query`
 * granularity); D a multiple of 8, 16-byte aligned. */
extern "C" __global__ void flash_attention_dv_sum(bf16* dv, const float* dv_keys, i64 rows, int shares, int D) {
  const int chunks = D >> 3;
  GRID_LOOP(i, rows * chunks) {
    const i64 row = i / chunks; // (b * T + t) * KV + hv
    const int d = (int)(i % chunks) << 3;
    float sum[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    for (int j = 0; j < shares; j++) {
      float x[8];
      ld8(dv_keys + (row * shares + j) * D + d, x);
#pragma unroll
      for (int e = 0; e < 8; e++) sum[e] += x[e];
    }
    st8(dv + row * D + d, sum);
  }
}
