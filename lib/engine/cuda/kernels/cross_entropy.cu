// The softmax / cross-entropy step of the fused lm head: for one chunk of rows of f32 logits [R, V]
// (made by a cuBLASLt GEMM), writes each row's loss and, when asked, dlogits = scale * (softmax -
// onehot(target)) (in place when dlogits is the f32 logits buffer). Two kernels, picked by the host:
// V <= 32768 with V % 4 == 0 and aligned rows: persistent blocks prefetching rows, reading the logits
// once; any other row: two passes, block per row, one pass for the running max and sum of exponentials,
// one for the gradient; 4 elements per access with `vec` (V % 4 == 0, aligned). Exponentials go through
// the hardware 2^x on x * log2(e) (fa_exp2, FA_LOG2E of flash_attention_mma.cu, concatenated before).

struct alignas(8) u32x2 {
  unsigned x, y;
};
__device__ __forceinline__ void st4(float* p, const float* v) {
  u32x4 u;
  u.x = __float_as_uint(v[0]), u.y = __float_as_uint(v[1]), u.z = __float_as_uint(v[2]), u.w = __float_as_uint(v[3]);
  *reinterpret_cast<u32x4*>(p) = u;
}
/** Four f32 rounded to bf16 (nearest even, one cvt per pair: fa_pack) in one 8-byte store. */
__device__ __forceinline__ void st4(bf16* p, const float* v) {
  u32x2 u;
  u.x = fa_pack(v[0], v[1]);
  u.y = fa_pack(v[2], v[3]);
  *reinterpret_cast<u32x2*>(p) = u;
}
/** e^x through the hardware 2^x (2 ulp; results below 2^-126 flushed to 0; e^-inf = 0). */
__device__ __forceinline__ float ce_exp(float x) { return fa_exp2(x * FA_LOG2E); }
/** e^(x - c) given c2 = c * log2(e): one fused multiply-add and the hardware 2^x. */
__device__ __forceinline__ float ce_exp_minus(float x, float c2) { return fa_exp2(fmaf(x, FA_LOG2E, -c2)); }

/** Adds value x to a running (max m, sum of e^(. - m) s). */
__device__ __forceinline__ void online_add(float x, float* m, float* s) {
  if (x > *m) {
    *s = *s * ce_exp(*m - x) + 1.f;
    *m = x;
  } else {
    *s += ce_exp(x - *m);
  }
}
/** Adds four values to a running (max m, sum of e^(. - m) s): at most one rescale, four exponentials. */
__device__ __forceinline__ void online_add4(u32x4 u, float* m, float* s) {
  const float a = __uint_as_float(u.x), b = __uint_as_float(u.y), c = __uint_as_float(u.z),
              d = __uint_as_float(u.w);
  const float mm = fmaxf(*m, fmaxf(fmaxf(a, b), fmaxf(c, d)));
  if (mm > *m) {
    *s *= ce_exp(*m - mm);
    *m = mm;
  }
  const float m2 = mm * FA_LOG2E;
  *s += (ce_exp_minus(a, m2) + ce_exp_minus(b, m2)) + (ce_exp_minus(c, m2) + ce_exp_minus(d, m2));
}

#define CE_ROWS(ng, G)                                                                             \
  extern "C" __global__ void cross_entropy_rows_##ng(const float* logits, G* dlogits,              \
                                                     float* losses, const int* targets, int vocab, \
                                                     float scale, int want_grad, int vec) {        \
    const i64 row = blockIdx.x;                                                                    \
    const float* lr = logits + row * vocab;                                                        \
    G* dr = dlogits + row * vocab;                                                                 \
    const int target = targets[row];                                                               \
    if (target < 0) {                                                                              \
      if (threadIdx.x == 0) losses[row] = 0.f;                                                     \
      if (want_grad) for (int j = threadIdx.x; j < vocab; j += blockDim.x) stf(dr + j, 0.f);       \
      return;                                                                                      \
    }                                                                                              \
    float m = -F32_INFINITY, s = 0.f;                                                              \
    if (vec) {                                                                                     \
      for (int j = threadIdx.x * 4; j < vocab; j += blockDim.x * 4) {                              \
        online_add4(*reinterpret_cast<const u32x4*>(lr + j), &m, &s);                              \
      }                                                                                            \
    } else {                                                                                       \
      for (int j = threadIdx.x; j < vocab; j += blockDim.x) online_add(lr[j], &m, &s);             \
    }                                                                                              \
    const float row_max = block_max(m);                                                            \
    const float lse = row_max + logf(block_sum(s > 0.f ? s * ce_exp(m - row_max) : 0.f));          \
    const float lse2 = lse * FA_LOG2E;                                                             \
    if (threadIdx.x == 0) losses[row] = target < vocab ? lse - lr[target] : F32_NAN;               \
    __syncthreads();                                                                               \
    if (!want_grad) return;                                                                        \
    if (vec) {                                                                                     \
      for (int j = threadIdx.x * 4; j < vocab; j += blockDim.x * 4) {                              \
        const u32x4 u = *reinterpret_cast<const u32x4*>(lr + j);                                   \
        float p[4] = {__uint_as_float(u.x), __uint_as_float(u.y), __uint_as_float(u.z), __uint_as_float(u.w)}; \
        _Pragma("unroll") for (int k = 0; k < 4; k++) p[k] = scale * (ce_exp_minus(p[k], lse2) - (j + k == target ? 1.f : 0.f)); \
        st4(dr + j, p);                                                                            \
      }                                                                                            \
    } else {                                                                                       \
      for (int j = threadIdx.x; j < vocab; j += blockDim.x) {                                      \
        stf(dr + j, scale * (ce_exp_minus(lr[j], lse2) - (j == target ? 1.f : 0.f)));              \
      }                                                                                            \
    }                                                                                              \
  }
EACH1(CE_ROWS)

// The same for V <= CE_PREFETCH_CHUNKS * 4 * CE_PREFETCH_THREADS = 32768 (e.g. 32000), V % 4 == 0 and
// aligned rows, one pass over the logits: persistent blocks of CE_PREFETCH_THREADS threads (grid <= rows)
// take rows blockIdx.x, + gridDim.x, ...; the current row is held in registers (CE_PREFETCH_CHUNKS float4
// per thread) while the next row is copied with cp.async into dynamic shared memory (V * 4 bytes), so its
// loads overlap this row's reductions and stores. Each thread copies and reads back only its own float4s,
// so its own cp.async wait suffices. Uses fa_smem / fa_cp16 / fa_cp_commit / fa_cp_wait of
// flash_attention_mma.cu (concatenated before).
#define CE_PREFETCH_THREADS 1024
#define CE_PREFETCH_CHUNKS 8
extern __shared__ u32x4 ce_shared[];

/** Starts the copy of this thread's float4s of row `lr` into shared memory. */
__device__ __forceinline__ void ce_fetch(u32 base, const float* lr, int vocab) {
#pragma unroll
  for (int c = 0; c < CE_PREFETCH_CHUNKS; c++) {
    const int j = (c * CE_PREFETCH_THREADS + threadIdx.x) * 4;
    if (j < vocab) fa_cp16(base + 4u * (u32)j, lr + j, 16);
  }
}

/** Merges the running (max, sum of e^(. - max)) pair (om, os) into (m, s); empty pairs have s = 0. */
__device__ __forceinline__ void merge_max_sum(float* m, float* s, float om, float os) {
  const float mm = fmaxf(*m, om);
  *s = (*s > 0.f ? *s * ce_exp(*m - mm) : 0.f) + (os > 0.f ? os * ce_exp(om - mm) : 0.f);
  *m = mm;
}

/** Combines running (max m, sum of e^(. - m) s) pairs over the block; every thread gets the result. */
__device__ __forceinline__ void block_max_sum(float* m, float* s) {
  __shared__ float partial_m[32], partial_s[32];
  for (int o = 16; o > 0; o >>= 1) {
    merge_max_sum(m, s, __shfl_xor_sync(0xffffffffu, *m, o), __shfl_xor_sync(0xffffffffu, *s, o));
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) partial_m[warp] = *m, partial_s[warp] = *s;
  __syncthreads();
  *m = lane < (int)(blockDim.x >> 5) ? partial_m[lane] : -F32_INFINITY;
  *s = lane < (int)(blockDim.x >> 5) ? partial_s[lane] : 0.f;
  for (int o = 16; o > 0; o >>= 1) {
    merge_max_sum(m, s, __shfl_xor_sync(0xffffffffu, *m, o), __shfl_xor_sync(0xffffffffu, *s, o));
  }
}

template <typename G>
__device__ __forceinline__ void ce_rows_prefetch(const float* logits, G* dlogits, float* losses,
                                                 const int* targets, int rows, int vocab, float scale,
                                                 int want_grad) {
  const u32 base = fa_smem(ce_shared);
  int row = blockIdx.x;
  int target = row < rows ? targets[row] : -1;
  if (target >= 0) ce_fetch(base, logits + (i64)row * vocab, vocab);
  fa_cp_commit();
  for (; row < rows; row += gridDim.x) {
    // The next row's target is loaded now, so its latency overlaps this row's wait.
    const int next = row + gridDim.x, next_target = next < rows ? targets[next] : -1;
    G* dr = dlogits + (i64)row * vocab;
    if (target < 0) {
      if (next_target >= 0) ce_fetch(base, logits + (i64)next * vocab, vocab);
      fa_cp_commit();
      if (threadIdx.x == 0) losses[row] = 0.f;
      if (want_grad) for (int j = threadIdx.x; j < vocab; j += CE_PREFETCH_THREADS) stf(dr + j, 0.f);
      target = next_target;
      continue;
    }
    fa_cp_wait<0>();
    asm volatile("" ::: "memory");  // the shared reads below stay after the wait
    u32x4 held[CE_PREFETCH_CHUNKS];
    float m = -F32_INFINITY;
#pragma unroll
    for (int c = 0; c < CE_PREFETCH_CHUNKS; c++) {
      const int j = (c * CE_PREFETCH_THREADS + threadIdx.x) * 4;
      if (j < vocab) {
        held[c] = ce_shared[j >> 2];
        m = fmaxf(m, fmaxf(fmaxf(__uint_as_float(held[c].x), __uint_as_float(held[c].y)),
                           fmaxf(__uint_as_float(held[c].z), __uint_as_float(held[c].w))));
      }
    }
    // The shared reads above are consumed (m) before the next row's copy overwrites their addresses.
    asm volatile("" ::"f"(m) : "memory");
    if (next_target >= 0) ce_fetch(base, logits + (i64)next * vocab, vocab);
    fa_cp_commit();
    const float m2 = m * FA_LOG2E;
    float s = 0.f;
#pragma unroll
    for (int c = 0; c < CE_PREFETCH_CHUNKS; c++) {
      const int j = (c * CE_PREFETCH_THREADS + threadIdx.x) * 4;
      if (j < vocab) {
        s += (ce_exp_minus(__uint_as_float(held[c].x), m2) + ce_exp_minus(__uint_as_float(held[c].y), m2)) +
             (ce_exp_minus(__uint_as_float(held[c].z), m2) + ce_exp_minus(__uint_as_float(held[c].w), m2));
      }
    }
    block_max_sum(&m, &s);
    const float lse = m + logf(s), lse2 = lse * FA_LOG2E;
    if (target >= vocab && threadIdx.x == 0) losses[row] = F32_NAN;
#pragma unroll
    for (int c = 0; c < CE_PREFETCH_CHUNKS; c++) {
      const int j = (c * CE_PREFETCH_THREADS + threadIdx.x) * 4;
      if (j < vocab) {
        float p[4] = {__uint_as_float(held[c].x), __uint_as_float(held[c].y), __uint_as_float(held[c].z),
                      __uint_as_float(held[c].w)};
        const int k = target - j;
        if (k >= 0 && k < 4) losses[row] = lse - (k == 0 ? p[0] : k == 1 ? p[1] : k == 2 ? p[2] : p[3]);
        if (want_grad) {
#pragma unroll
          for (int k = 0; k < 4; k++) p[k] = scale * (ce_exp_minus(p[k], lse2) - (j + k == target ? 1.f : 0.f));
          st4(dr + j, p);
        }
      }
    }
    target = next_target;
  }
}

#define CE_ROWS_PREFETCH(ng, G)                                                                    \
  extern "C" __global__ void __launch_bounds__(CE_PREFETCH_THREADS, 1)                             \
      cross_entropy_rows_prefetch_##ng(const float* logits, G* dlogits, float* losses,             \
                                       const int* targets, int rows, int vocab, float scale,       \
                                       int want_grad) {                                            \
    ce_rows_prefetch(logits, dlogits, losses, targets, rows, vocab, scale, want_grad);             \
  }
EACH1(CE_ROWS_PREFETCH)
