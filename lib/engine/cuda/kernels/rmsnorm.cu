// RMSNorm over the last dimension X (layer norms: X = C; Qwen3 q/k norms: X = D on [N*H, D] rows).
// Forward: one block per row. Backward: dx per row, dweight as column sums over row chunks.

// out[N, X] = x * rstd * weight, rstd[N] = 1 / sqrt(mean(x^2) + eps)
#define RMSNORM_FWD(na, A, nw, W)                                                                  \
  extern "C" __global__ void rmsnorm_fwd_##na##_##nw(A* out, float* rstd, const A* x,              \
                                                     const W* weight, int width, float eps) {      \
    const i64 row = blockIdx.x;                                                                    \
    const A* xr = x + row * width;                                                                 \
    A* outr = out + row * width;                                                                   \
    float sum = 0.f;                                                                               \
    for (int c = threadIdx.x; c < width; c += blockDim.x) {                                        \
      const float v = ldf(xr + c);                                                                 \
      sum += v * v;                                                                                \
    }                                                                                              \
    const float r = 1.f / sqrtf(block_sum(sum) / width + eps);                                     \
    for (int c = threadIdx.x; c < width; c += blockDim.x) stf(outr + c, ldf(xr + c) * r * ldf(weight + c)); \
    if (threadIdx.x == 0) rstd[row] = r;                                                           \
  }
EACH2(RMSNORM_FWD)

// dx = rstd * (dout * w) - x * rstd^3 * mean(dout * w * x)   (+= when accumulate)
#define RMSNORM_BWD(na, A, nw, W)                                                                  \
  extern "C" __global__ void rmsnorm_bwd_##na##_##nw(A* dx, const A* dout, const A* x,             \
                                                     const W* weight, const float* rstd, int width,\
                                                     int accumulate) {                             \
    const i64 row = blockIdx.x;                                                                    \
    const A* xr = x + row * width;                                                                 \
    const A* dr = dout + row * width;                                                              \
    A* dxr = dx + row * width;                                                                     \
    float sum = 0.f;                                                                               \
    for (int c = threadIdx.x; c < width; c += blockDim.x) sum += ldf(dr + c) * ldf(weight + c) * ldf(xr + c); \
    const float r = rstd[row];                                                                     \
    const float k = block_sum(sum) / width * r * r * r;                                            \
    for (int c = threadIdx.x; c < width; c += blockDim.x) {                                        \
      float g = r * ldf(dr + c) * ldf(weight + c) - ldf(xr + c) * k;                               \
      if (accumulate) g += ldf(dxr + c);                                                           \
      stf(dxr + c, g);                                                                             \
    }                                                                                              \
  }
EACH2(RMSNORM_BWD)

// dweight[X] += sum over rows of dout * x * rstd; grid (ceil(X / blockDim), row chunks).
#define RMSNORM_DW(ng, G, na, A)                                                                   \
  extern "C" __global__ void rmsnorm_dweight_##ng##_##na(G* dweight, const A* dout, const A* x,    \
                                                         const float* rstd, int rows, int width,   \
                                                         int rows_per_block) {                     \
    const int col = blockIdx.x * blockDim.x + threadIdx.x;                                         \
    if (col >= width) return;                                                                      \
    const int start = blockIdx.y * rows_per_block;                                                 \
    const int end = imin(rows, start + rows_per_block);                                             \
    float sum = 0.f;                                                                               \
    for (int r = start; r < end; r++) {                                                            \
      const i64 at = (i64)r * width + col;                                                         \
      sum += ldf(dout + at) * ldf(x + at) * rstd[r];                                               \
    }                                                                                              \
    atomic_addf(dweight + col, sum);                                                               \
  }
EACH2(RMSNORM_DW)
