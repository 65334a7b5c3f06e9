// Flash-attention forward (FlashAttention-2 on mma.sync tensor cores), bf16 in/out, f32 accumulation,
// causal, grouped heads. q, out [B, T, H, D]; k [B, T, K, D]; v [B, T, KV, D] (KV divides K: fewer
// value than key heads is `query` granularity, one rotated key per query head); lse f32 [B, H, T] (natural log of
// each query row's sum of exp(scaled scores)). One block = FA_BR query rows of one head, 16 * FA_MT
// rows per warp (the FA_MT m-tiles share each key/value fragment loaded from shared memory: measured
// on the H200 at T 32k, 318 vs 279 TFLOP/s at D 64 and 298 vs 291 at D 128 against 16 rows per warp);
// key/value tiles of FA_BC rows stream through shared memory with cp.async double buffering; the
// T x T scores never exist. Grid: (H, B, ceil(T / FA_BR)), the longest (last) query blocks first.
// LAZY: the output rows are rescaled only when some row of the warp's m-tile got a new maximum (a
// warp vote). Same results bit for bit; on the H200 it took D 128 from 288-301 to 307-324 TFLOP/s
// (T 8k-128k) and slowed D 64 from 310-320 to 291-302, so only D 128 uses it.

#define FA_BR 128
#define FA_BC 64
#define FA_MT 2
#define FA_FWD_THREADS (FA_BR / (16 * FA_MT) * 32)

template <int D, bool LAZY>
__device__ __forceinline__ void flash_fwd(bf16* out, float* lse, const bf16* q, const bf16* k,
                                          const bf16* v, int T, int H, int HK, int HV, float scale_log2) {
  constexpr int MT = FA_MT, S = D + FA_PAD, THREADS = FA_FWD_THREADS, NT = FA_BC / 8, DT = D / 8;
  bf16* smem = reinterpret_cast<bf16*>(fa_shared);
  const u32 sq = fa_smem(smem);
  const u32 sk = sq + 2u * FA_BR * S;     // [2][FA_BC][S]
  const u32 sv = sk + 2u * 2 * FA_BC * S; // [2][FA_BC][S]
  const int h = blockIdx.x, b = blockIdx.y;
  const int q0 = (gridDim.z - 1 - blockIdx.z) * FA_BR;
  const int hk = h / (H / HK), hv = h / (H / HV);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const i64 qstride = (i64)H * D, kstride = (i64)HK * D, vstride = (i64)HV * D;
  const bf16* qb = q + ((i64)b * T * H + h) * D;
  const bf16* kb = k + ((i64)b * T * HK + hk) * D;
  const bf16* vb = v + ((i64)b * T * HV + hv) * D;
  const int last = imin(T, q0 + FA_BR);
  const int blocks = (last + FA_BC - 1) / FA_BC;
  const int wrow = warp * 16 * MT; // this warp's first row in the block

  fa_load_tile<D, FA_BR, THREADS>(sq, qb, qstride, q0, T);
  fa_load_tile<D, FA_BC, THREADS>(sk, kb, kstride, 0, T);
  fa_load_tile<D, FA_BC, THREADS>(sv, vb, vstride, 0, T);
  fa_cp_commit();

  float o[MT][DT][4];
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
#pragma unroll
    for (int j = 0; j < DT; j++) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.f;
  }
  float m[MT][2], l[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; mt++) m[mt][0] = m[mt][1] = -F32_INFINITY, l[mt][0] = l[mt][1] = 0.f;
  const int row0 = q0 + wrow + g; // this lane's rows: row0 + 16 mt and row0 + 16 mt + 8

  for (int j = 0; j < blocks; j++) {
    const int buf = j & 1;
    if (j + 1 < blocks) {
      const u32 off = 2u * (u32)((buf ^ 1) * FA_BC * S);
      fa_load_tile<D, FA_BC, THREADS>(sk + off, kb, kstride, (j + 1) * FA_BC, T);
      fa_load_tile<D, FA_BC, THREADS>(sv + off, vb, vstride, (j + 1) * FA_BC, T);
    }
    fa_cp_commit();
    fa_cp_wait<1>();
    __syncthreads();
    const u32 skb = sk + 2u * (u32)(buf * FA_BC * S), svb = sv + 2u * (u32)(buf * FA_BC * S);

    // s = q k^T for this warp's rows and the FA_BC keys of the tile.
    float s[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
      for (int n = 0; n < NT; n++) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
    }
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
      u32 qa[MT][4]; // q fragments, re-read from shared memory (registers go to the accumulators)
#pragma unroll
      for (int mt = 0; mt < MT; mt++) fa_ldsm4(fa_a_addr(sq, S, wrow + 16 * mt, kk * 16, lane), qa[mt]);
#pragma unroll
      for (int np = 0; np < NT / 2; np++) {
        u32 bf[4];
        fa_ldsm4(fa_bn_addr(skb, S, np * 16, kk * 16, lane), bf);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          fa_mma(s[mt][2 * np], qa[mt], bf[0], bf[1]);
          fa_mma(s[mt][2 * np + 1], qa[mt], bf[2], bf[3]);
        }
      }
    }
    const int key0 = j * FA_BC;
    if (key0 + FA_BC - 1 > q0 + wrow) { // the tile reaches past this warp's first row: mask
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int n = 0; n < NT; n++) {
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const int key = key0 + n * 8 + 2 * c + (e & 1), row = row0 + 16 * mt + (e >> 1) * 8;
            if (key > row) s[mt][n][e] = -F32_INFINITY;
          }
        }
      }
    }
    // Online softmax in the log2 domain; l holds this lane's partial row sums (quad-reduced at the end).
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
      for (int i = 0; i < 2; i++) {
        float mx = -F32_INFINITY;
#pragma unroll
        for (int n = 0; n < NT; n++) mx = fmaxf(mx, fmaxf(s[mt][n][2 * i], s[mt][n][2 * i + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float mnew = fmaxf(m[mt][i], mx * scale_log2);
        const float muse = mnew == -F32_INFINITY ? 0.f : mnew;
        const float alpha = fa_exp2(m[mt][i] - muse);
        float sum = 0.f;
#pragma unroll
        for (int n = 0; n < NT; n++) {
          s[mt][n][2 * i] = fa_exp2(s[mt][n][2 * i] * scale_log2 - muse);
          s[mt][n][2 * i + 1] = fa_exp2(s[mt][n][2 * i + 1] * scale_log2 - muse);
          sum += s[mt][n][2 * i] + s[mt][n][2 * i + 1];
        }
        l[mt][i] = l[mt][i] * alpha + sum;
        m[mt][i] = mnew;
        if (!LAZY || __any_sync(0xffffffffu, alpha != 1.f)) {
#pragma unroll
          for (int d = 0; d < DT; d++) o[mt][d][2 * i] *= alpha, o[mt][d][2 * i + 1] *= alpha;
        }
      }
    }
    // o += p v, p from the score registers (accumulator layout = A layout of two adjacent tiles).
#pragma unroll
    for (int kc = 0; kc < FA_BC / 16; kc++) {
      u32 a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        a[mt][0] = fa_pack(s[mt][2 * kc][0], s[mt][2 * kc][1]);
        a[mt][1] = fa_pack(s[mt][2 * kc][2], s[mt][2 * kc][3]);
        a[mt][2] = fa_pack(s[mt][2 * kc + 1][0], s[mt][2 * kc + 1][1]);
        a[mt][3] = fa_pack(s[mt][2 * kc + 1][2], s[mt][2 * kc + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < D / 16; dp++) {
        u32 bf[4];
        fa_ldsm4t(fa_bk_addr(svb, S, kc * 16, dp * 16, lane), bf);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          fa_mma(o[mt][2 * dp], a[mt], bf[0], bf[1]);
          fa_mma(o[mt][2 * dp + 1], a[mt], bf[2], bf[3]);
        }
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
      float sum = l[mt][i];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const int row = row0 + 16 * mt + i * 8;
      if (row >= T) continue;
      const float inv = 1.f / sum;
      u32* dst = reinterpret_cast<u32*>(out + ((i64)b * T * H + (i64)row * H + h) * D + 2 * c);
#pragma unroll
      for (int d = 0; d < DT; d++) dst[d * 4] = fa_pack(o[mt][d][2 * i] * inv, o[mt][d][2 * i + 1] * inv);
      if (c == 0) lse[((i64)b * H + h) * T + row] = (m[mt][i] + log2f(sum)) * FA_LN2;
    }
  }
}

#define FLASH_FWD(DIM, LAZY, NAME)                                                                   \
  extern "C" __global__ void __launch_bounds__(FA_FWD_THREADS)                                     \
      NAME(bf16* out, float* lse, const bf16* q, const bf16* k,              \
                                 const bf16* v, int T, int H, int HK, int HV, float scale_log2) {   \
    flash_fwd<DIM, LAZY>(out, lse, q, k, v, T, H, HK, HV, scale_log2);                                       \
  }
FLASH_FWD(64, false, flash_attention_fwd_d64)
FLASH_FWD(128, true, flash_attention_fwd_d128)
