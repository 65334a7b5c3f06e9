// The softmax / cross-entropy step of the fused lm head: for one chunk of rows of f32 logits [R, V]
// (made by a cuBLASLt GEMM), writes each row's loss and, when asked, dlogits = scale * (softmax -
// onehot(target)) (in place when dlogits is the f32 logits buffer). Block per row; one pass for the
// running max and sum of exponentials, one for the gradient; 4 elements per access with `vec`
// (V % 4 == 0 and aligned rows, set by the host).

struct alignas(8) u32x2 {
  unsigned x, y;
};
__device__ __forceinline__ void st4(float* p, const float* v) {
  u32x4 u;
  u.x = __float_as_uint(v[0]), u.y = __float_as_uint(v[1]), u.z = __float_as_uint(v[2]), u.w = __float_as_uint(v[3]);
  *reinterpret_cast<u32x4*>(p) = u;
}
__device__ __forceinline__ void st4(bf16* p, const float* v) {
  u32x2 u;
  u.x = (unsigned)f32_to_bf16_bits(v[0]) | ((unsigned)f32_to_bf16_bits(v[1]) << 16);
  u.y = (unsigned)f32_to_bf16_bits(v[2]) | ((unsigned)f32_to_bf16_bits(v[3]) << 16);
  *reinterpret_cast<u32x2*>(p) = u;
}
/** Adds value x to a running (max m, sum of exp(. - m) s). */
__device__ __forceinline__ void online_add(float x, float* m, float* s) {
  if (x > *m) {
    *s = *s * expf(*m - x) + 1.f;
    *m = x;
  } else {
    *s += expf(x - *m);
  }
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
        const u32x4 u = *reinterpret_cast<const u32x4*>(lr + j);                                   \
        online_add(__uint_as_float(u.x), &m, &s);                                                  \
        online_add(__uint_as_float(u.y), &m, &s);                                                  \
        online_add(__uint_as_float(u.z), &m, &s);                                                  \
        online_add(__uint_as_float(u.w), &m, &s);                                                  \
      }                                                                                            \
    } else {                                                                                       \
      for (int j = threadIdx.x; j < vocab; j += blockDim.x) online_add(lr[j], &m, &s);             \
    }                                                                                              \
    const float row_max = block_max(m);                                                            \
    const float lse = row_max + logf(block_sum(s > 0.f ? s * expf(m - row_max) : 0.f));            \
    if (threadIdx.x == 0) losses[row] = target < vocab ? lse - lr[target] : F32_NAN;               \
    __syncthreads();                                                                               \
    if (!want_grad) return;                                                                        \
    if (vec) {                                                                                     \
      for (int j = threadIdx.x * 4; j < vocab; j += blockDim.x * 4) {                              \
        const u32x4 u = *reinterpret_cast<const u32x4*>(lr + j);                                   \
        float p[4] = {__uint_as_float(u.x), __uint_as_float(u.y), __uint_as_float(u.z), __uint_as_float(u.w)}; \
        _Pragma("unroll") for (int k = 0; k < 4; k++) p[k] = scale * (expf(p[k] - lse) - (j + k == target ? 1.f : 0.f)); \
        st4(dr + j, p);                                                                            \
      }                                                                                            \
    } else {                                                                                       \
      for (int j = threadIdx.x; j < vocab; j += blockDim.x) {                                      \
        stf(dr + j, scale * (expf(lr[j] - lse) - (j == target ? 1.f : 0.f)));                      \
      }                                                                                            \
    }                                                                                              \
  }
EACH1(CE_ROWS)

// The same for V <= CE_REG_CHUNKS * 4 * 1024 (e.g. 32000), V % 4 == 0 and aligned rows: 1024 threads
// hold the whole row in registers (CE_REG_CHUNKS float4 each), so the logits are read from memory once.
#define CE_REG_CHUNKS 8
#define CE_ROWS_REG(ng, G)                                                                         \
  extern "C" __global__ void __launch_bounds__(1024, 1) cross_entropy_rows_reg_##ng(              \
      const float* logits, G* dlogits, float* losses, const int* targets, int vocab, float scale,  \
      int want_grad) {                                                                             \
    const i64 row = blockIdx.x;                                                                    \
    const float* lr = logits + row * vocab;                                                        \
    G* dr = dlogits + row * vocab;                                                                 \
    const int target = targets[row];                                                               \
    if (target < 0) {                                                                              \
      if (threadIdx.x == 0) losses[row] = 0.f;                                                     \
      if (want_grad) for (int j = threadIdx.x; j < vocab; j += blockDim.x) stf(dr + j, 0.f);       \
      return;                                                                                      \
    }                                                                                              \
    u32x4 held[CE_REG_CHUNKS];                                                                     \
    _Pragma("unroll") for (int c = 0; c < CE_REG_CHUNKS; c++) {                                    \
      const int j = (c * 1024 + threadIdx.x) * 4;                                                  \
      if (j < vocab) held[c] = *reinterpret_cast<const u32x4*>(lr + j);                            \
    }                                                                                              \
    float m = -F32_INFINITY, s = 0.f;                                                              \
    _Pragma("unroll") for (int c = 0; c < CE_REG_CHUNKS; c++) {                                    \
      const int j = (c * 1024 + threadIdx.x) * 4;                                                  \
      if (j < vocab) {                                                                             \
        m = fmaxf(m, fmaxf(fmaxf(__uint_as_float(held[c].x), __uint_as_float(held[c].y)),          \
                           fmaxf(__uint_as_float(held[c].z), __uint_as_float(held[c].w))));        \
      }                                                                                            \
    }                                                                                              \
    const float row_max = block_max(m);                                                            \
    _Pragma("unroll") for (int c = 0; c < CE_REG_CHUNKS; c++) {                                    \
      const int j = (c * 1024 + threadIdx.x) * 4;                                                  \
      if (j < vocab) {                                                                             \
        s += expf(__uint_as_float(held[c].x) - row_max) + expf(__uint_as_float(held[c].y) - row_max) + \
             expf(__uint_as_float(held[c].z) - row_max) + expf(__uint_as_float(held[c].w) - row_max); \
      }                                                                                            \
    }                                                                                              \
    const float lse = row_max + logf(block_sum(s));                                                \
    if (threadIdx.x == 0) losses[row] = target < vocab ? lse - lr[target] : F32_NAN;               \
    __syncthreads();                                                                               \
    if (!want_grad) return;                                                                        \
    _Pragma("unroll") for (int c = 0; c < CE_REG_CHUNKS; c++) {                                    \
      const int j = (c * 1024 + threadIdx.x) * 4;                                                  \
      if (j < vocab) {                                                                             \
        float p[4] = {__uint_as_float(held[c].x), __uint_as_float(held[c].y), __uint_as_float(held[c].z), \
                      __uint_as_float(held[c].w)};                                                 \
        _Pragma("unroll") for (int k = 0; k < 4; k++) p[k] = scale * (expf(p[k] - lse) - (j + k == target ? 1.f : 0.f)); \
        st4(dr + j, p);                                                                            \
      }                                                                                            \
    }                                                                                              \
  }
EACH1(CE_ROWS_REG)
