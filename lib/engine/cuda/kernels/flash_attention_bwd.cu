// Flash-attention backward (FlashAttention-2 on mma.sync tensor cores), bf16 in/out, f32 accumulation.
// q, dout [B, T, H, D]; k, v, dk, dv [B, T, K, D]; lse, delta f32 [B, H, T]; dq_acc f32 [B, T, H, D].
// One block = 16 * FB_WARPS keys of one key head (16 per warp): dk and dv stay in registers while the
// block walks every query head of the group and every query block (FB_BR rows) from the diagonal on;
// the block's dq contribution (ds k over its keys, through shared memory) is added to dq_acc (zeroed
// before) with 16-byte f32 vector reductions, then scaled and rounded by flash_attention_dq.
// delta = rowsum(dout * out) comes from flash_attention_delta first. Query/dout tiles are double
// buffered (cp.async). Measured on the H200 at T 32k: 8-warp blocks (128 keys) reach 212 TFLOP/s at
// D 128 against 202 for 4-warp blocks (64 keys, single-buffered to keep two blocks per SM), and tie
// at D 64 (175 vs 177); those 4-warp blocks with 4-byte dq atomics instead of the 16-byte vector
// reductions ran at 149 (D 128) and 143 (D 64).
// Grid: (K, B, ceil(T / (16 * FB_WARPS))), the longest (first) key blocks first.

#define FB_BR 64
#define FB_WARPS 8
/** Shared-memory buffers of the query and dout tiles. */
#define FB_STAGES 2
/** Columns of dq one warp accumulates per pass (registers: 16 x FB_DQ_COLS / 32 floats). */
#define FB_DQ_COLS 64

template <int D>
__device__ __forceinline__ void flash_bwd(float* dq_acc, bf16* dk, bf16* dv, const bf16* q,
                                          const bf16* k, const bf16* v, const bf16* dout,
                                          const float* lse, const float* delta, int T, int H, int HK,
                                          float scale_log2, float scale) {
  constexpr int WARPS = FB_WARPS, STAGES = FB_STAGES;
  constexpr int BC = 16 * WARPS, S = D + FA_PAD, SDS = BC + FA_PAD, THREADS = WARPS * 32;
  constexpr int NT = FB_BR / 8, DT = D / 8;
  // dq: warp w takes query rows 16 * (w % ROW_GROUPS) and columns [(w / ROW_GROUPS) * DQ_WIDTH, +DQ_WIDTH).
  constexpr int ROW_GROUPS = FB_BR / 16, DQ_WIDTH = D * ROW_GROUPS / WARPS;
  constexpr int DQ_PASS = DQ_WIDTH < FB_DQ_COLS ? DQ_WIDTH : FB_DQ_COLS;
  static_assert(BC % FB_BR == 0 && WARPS % ROW_GROUPS == 0 && DQ_WIDTH % DQ_PASS == 0, "tiling");
  bf16* smem = reinterpret_cast<bf16*>(fa_shared);
  const u32 sk = fa_smem(smem);                 // [BC][S]
  const u32 sv = sk + 2u * BC * S;               // [BC][S]
  const u32 sq = sv + 2u * BC * S;               // [STAGES][FB_BR][S]
  const u32 sdo = sq + 2u * STAGES * FB_BR * S;  // [STAGES][FB_BR][S]
  bf16* ds = smem + (2 * BC + 2 * STAGES * FB_BR) * S; // [FB_BR][SDS]: dS as [query][key]
  const u32 sds = fa_smem(ds);
  float* slse = reinterpret_cast<float*>(ds + FB_BR * SDS); // [STAGES][FB_BR], times log2(e)
  float* sdelta = slse + STAGES * FB_BR;                     // [STAGES][FB_BR]

  const int hk = blockIdx.x, b = blockIdx.y, k0 = blockIdx.z * BC;
  const int group = H / HK;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const i64 qstride = (i64)H * D, kstride = (i64)HK * D;
  const int qfirst = k0 / FB_BR;                          // the query block holding key k0
  const int qblocks = (T + FB_BR - 1) / FB_BR - qfirst;   // query blocks per head from there
  const int steps = group * qblocks;

  fa_load_tile<D, BC, THREADS>(sk, k + ((i64)b * T * HK + hk) * D, kstride, k0, T);
  fa_load_tile<D, BC, THREADS>(sv, v + ((i64)b * T * HK + hk) * D, kstride, k0, T);

  // Loads step `it` (query head, query block) into stage buffer `stage`.
  auto load_step = [&](int it, int stage) {
    const int h = hk * group + it / qblocks, q0 = (qfirst + it % qblocks) * FB_BR;
    const i64 head = (i64)b * T * H + h;
    fa_load_tile<D, FB_BR, THREADS>(sq + 2u * (u32)(stage * FB_BR * S), q + head * D, qstride, q0, T);
    fa_load_tile<D, FB_BR, THREADS>(sdo + 2u * (u32)(stage * FB_BR * S), dout + head * D, qstride, q0, T);
    for (int r = threadIdx.x; r < FB_BR; r += THREADS) {
      const i64 at = ((i64)b * H + h) * T + q0 + r;
      const bool inside = q0 + r < T;
      slse[stage * FB_BR + r] = inside ? lse[at] * FA_LOG2E : F32_INFINITY;
      sdelta[stage * FB_BR + r] = inside ? delta[at] : 0.f;
    }
  };
  load_step(0, 0);
  fa_cp_commit();

  float dka[DT][4], dva[DT][4];
#pragma unroll
  for (int d = 0; d < DT; d++) {
    dka[d][0] = dka[d][1] = dka[d][2] = dka[d][3] = 0.f;
    dva[d][0] = dva[d][1] = dva[d][2] = dva[d][3] = 0.f;
  }
  const int key0 = k0 + warp * 16 + g; // this lane's keys: key0 and key0 + 8

  for (int it = 0; it < steps; it++) {
    const int stage = it & 1;
    if (it + 1 < steps) load_step(it + 1, stage ^ 1);
    fa_cp_commit();
    fa_cp_wait<1>();
    __syncthreads();
    const int h = hk * group + it / qblocks, q0 = (qfirst + it % qblocks) * FB_BR;
    const u32 sqs = sq + 2u * (u32)(stage * FB_BR * S), sdos = sdo + 2u * (u32)(stage * FB_BR * S);
    const float* lrow = slse + stage * FB_BR;
    const float* drow = sdelta + stage * FB_BR;

    // st = k q^T and dpt = v dout^T for this warp's 16 keys x FB_BR queries.
    float st[NT][4], dpt[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++) {
      st[n][0] = st[n][1] = st[n][2] = st[n][3] = 0.f;
      dpt[n][0] = dpt[n][1] = dpt[n][2] = dpt[n][3] = 0.f;
    }
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
      u32 ka[4], va[4];
      fa_ldsm4(fa_a_addr(sk, S, warp * 16, kk * 16, lane), ka);
      fa_ldsm4(fa_a_addr(sv, S, warp * 16, kk * 16, lane), va);
#pragma unroll
      for (int np = 0; np < NT / 2; np++) {
        u32 bf[4];
        fa_ldsm4(fa_bn_addr(sqs, S, np * 16, kk * 16, lane), bf);
        fa_mma(st[2 * np], ka, bf[0], bf[1]);
        fa_mma(st[2 * np + 1], ka, bf[2], bf[3]);
        fa_ldsm4(fa_bn_addr(sdos, S, np * 16, kk * 16, lane), bf);
        fa_mma(dpt[2 * np], va, bf[0], bf[1]);
        fa_mma(dpt[2 * np + 1], va, bf[2], bf[3]);
      }
    }
    // p = exp(s - lse) (0 above the diagonal), ds = p (dp - delta); ds also goes to shared memory.
    const bool diagonal = q0 < k0 + BC;
#pragma unroll
    for (int n = 0; n < NT; n++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int col = n * 8 + 2 * c + (e & 1), key = key0 + (e >> 1) * 8;
        float p = fa_exp2(st[n][e] * scale_log2 - lrow[col]);
        if (diagonal && key > q0 + col) p = 0.f;
        st[n][e] = p;
        dpt[n][e] = p * (dpt[n][e] - drow[col]);
      }
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int col = n * 8 + 2 * c + (e & 1), key = warp * 16 + g + (e >> 1) * 8;
        ds[col * SDS + key].bits = f32_to_bf16_bits(dpt[n][e]);
      }
    }
    // dv += p^T dout and dk += ds^T q (scaled at the end), A operands straight from registers.
#pragma unroll
    for (int kc = 0; kc < FB_BR / 16; kc++) {
      const u32 pa[4] = {fa_pack(st[2 * kc][0], st[2 * kc][1]), fa_pack(st[2 * kc][2], st[2 * kc][3]),
                         fa_pack(st[2 * kc + 1][0], st[2 * kc + 1][1]),
                         fa_pack(st[2 * kc + 1][2], st[2 * kc + 1][3])};
      const u32 da[4] = {fa_pack(dpt[2 * kc][0], dpt[2 * kc][1]), fa_pack(dpt[2 * kc][2], dpt[2 * kc][3]),
                         fa_pack(dpt[2 * kc + 1][0], dpt[2 * kc + 1][1]),
                         fa_pack(dpt[2 * kc + 1][2], dpt[2 * kc + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; dp++) {
        u32 bf[4];
        fa_ldsm4t(fa_bk_addr(sdos, S, kc * 16, dp * 16, lane), bf);
        fa_mma(dva[2 * dp], pa, bf[0], bf[1]);
        fa_mma(dva[2 * dp + 1], pa, bf[2], bf[3]);
        fa_ldsm4t(fa_bk_addr(sqs, S, kc * 16, dp * 16, lane), bf);
        fa_mma(dka[2 * dp], da, bf[0], bf[1]);
        fa_mma(dka[2 * dp + 1], da, bf[2], bf[3]);
      }
    }
    __syncthreads();
    // dq[16 queries, DQ_WIDTH columns of this warp] += ds k over the block's keys, into dq_acc. Lane
    // pairs swap halves so that each lane holds 4 consecutive columns of one row: one 16-byte add.
    {
      const int rows0 = (warp % ROW_GROUPS) * 16, cols0 = (warp / ROW_GROUPS) * DQ_WIDTH;
      const bool even = (c & 1) == 0;
      const int qrow = q0 + rows0 + g + (even ? 0 : 8);
      float* dst = dq_acc + ((i64)b * T * H + (i64)qrow * H + h) * D + cols0 + 2 * (c & ~1);
#pragma unroll
      for (int pass = 0; pass < DQ_WIDTH / DQ_PASS; pass++) {
        float acc[DQ_PASS / 8][4];
#pragma unroll
        for (int n = 0; n < DQ_PASS / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll
        for (int kc = 0; kc < BC / 16; kc++) {
          u32 dsa[4];
          fa_ldsm4(fa_a_addr(sds, SDS, rows0, kc * 16, lane), dsa);
#pragma unroll
          for (int dp = 0; dp < DQ_PASS / 16; dp++) {
            u32 bf[4];
            fa_ldsm4t(fa_bk_addr(sk, S, kc * 16, cols0 + pass * DQ_PASS + dp * 16, lane), bf);
            fa_mma(acc[2 * dp], dsa, bf[0], bf[1]);
            fa_mma(acc[2 * dp + 1], dsa, bf[2], bf[3]);
          }
        }
#pragma unroll
        for (int n = 0; n < DQ_PASS / 8; n++) {
          const float s0 = __shfl_xor_sync(0xffffffffu, even ? acc[n][2] : acc[n][0], 1);
          const float s1 = __shfl_xor_sync(0xffffffffu, even ? acc[n][3] : acc[n][1], 1);
          if (qrow < T) {
            float* p = dst + pass * DQ_PASS + n * 8;
            if (even) fa_red4(p, acc[n][0], acc[n][1], s0, s1);
            else fa_red4(p, s0, s1, acc[n][2], acc[n][3]);
          }
        }
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 2; i++) {
    const int key = key0 + i * 8;
    if (key >= T) continue;
    const i64 at = ((i64)b * T * HK + (i64)key * HK + hk) * D + 2 * c;
    u32* kdst = reinterpret_cast<u32*>(dk + at);
    u32* vdst = reinterpret_cast<u32*>(dv + at);
#pragma unroll
    for (int d = 0; d < DT; d++) {
      kdst[d * 4] = fa_pack(dka[d][2 * i] * scale, dka[d][2 * i + 1] * scale);
      vdst[d * 4] = fa_pack(dva[d][2 * i], dva[d][2 * i + 1]);
    }
  }
}

#define FLASH_BWD(DIM)                                                                             \
  extern "C" __global__ void __launch_bounds__(FB_WARPS * 32) flash_attention_bwd_d##DIM(         \
      float* dq_acc, bf16* dk, bf16* dv, const bf16* q, const bf16* k, const bf16* v,              \
      const bf16* dout, const float* lse, const float* delta, int T, int H, int HK,                \
      float scale_log2, float scale) {                                                             \
    flash_bwd<DIM>(dq_acc, dk, dv, q, k, v, dout, lse, delta, T, H, HK, scale_log2, scale);        \
  }
FLASH_BWD(64)
FLASH_BWD(128)

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
