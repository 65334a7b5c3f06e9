// The softmax / cross-entropy step of the fused lm head: for one chunk of rows of f32 logits [R, V]
// (made by a cuBLASLt GEMM), writes each row's loss and, when asked, dlogits = scale * (softmax -
// onehot(target)) (in place when dlogits is the f32 logits buffer). Block per row.

#define CE_ROWS(ng, G)                                                                             \
  extern "C" __global__ void cross_entropy_rows_##ng(const float* logits, G* dlogits,              \
                                                     float* losses, const int* targets, int vocab, \
                                                     float scale, int want_grad) {                 \
    const i64 row = blockIdx.x;                                                                    \
    const float* lr = logits + row * vocab;                                                        \
    G* dr = dlogits + row * vocab;                                                                 \
    const int target = targets[row];                                                               \
    if (target < 0) {                                                                              \
      if (threadIdx.x == 0) losses[row] = 0.f;                                                     \
      if (want_grad) for (int j = threadIdx.x; j < vocab; j += blockDim.x) stf(dr + j, 0.f);       \
      return;                                                                                      \
    }                                                                                              \
    float m = -F32_INFINITY;                                                                           \
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) m = fmaxf(m, lr[j]);                     \
    m = block_max(m);                                                                              \
    float sum = 0.f;                                                                               \
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) sum += expf(lr[j] - m);                  \
    const float lse = m + logf(block_sum(sum));                                                    \
    if (threadIdx.x == 0) losses[row] = target < vocab ? lse - lr[target] : F32_NAN;                   \
    __syncthreads();                                                                               \
    if (want_grad) {                                                                               \
      for (int j = threadIdx.x; j < vocab; j += blockDim.x) {                                      \
        const float p = expf(lr[j] - lse);                                                         \
        stf(dr + j, scale * (p - (j == target ? 1.f : 0.f)));                                      \
      }                                                                                            \
    }                                                                                              \
  }
EACH1(CE_ROWS)
