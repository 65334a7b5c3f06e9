// RMSNorm over the last dimension X (layer norms: X = C; Qwen3 q/k norms: X = D on [N*H, D] rows).
// Forward: one block per row. Backward: dx per row, dweight as column sums over row chunks. Rows move
// 8 elements per access when X % 8 == 0 and the pointers are 16-byte aligned.

// out[N, X] = x * rstd * weight, rstd[N] = 1 / sqrt(mean(x^2) + eps)
#define RMSNORM_FWD(na, A, nw, W)                                                                  \
  extern "C" __global__ void rmsnorm_fwd_##na##_##nw(A* out, float* rstd, const A* x,              \
                                                     const W* weight, int width, float eps) {      \
    const i64 row = blockIdx.x;                                                                    \
    const A* xr = x + row * width;                                                                 \
    A* outr = out + row * width;                                                                   \
    const bool vec = width % 8 == 0 && ALIGNED16(xr) && ALIGNED16(outr) && ALIGNED16(weight);     \
    float sum = 0.f;                                                                               \
    if (vec) {                                                                                     \
      for (int c = threadIdx.x * 8; c < width; c += blockDim.x * 8) {                              \
        float v[8];                                                                                \
        ld8(xr + c, v);                                                                            \
        _Pragma("unroll") for (int k = 0; k < 8; k++) sum += v[k] * v[k];                          \
      }                                                                                            \
    } else {                                                                                       \
      for (int c = threadIdx.x; c < width; c += blockDim.x) {                                      \
        const float v = ldf(xr + c);                                                               \
        sum += v * v;                                                                              \
      }                                                                                            \
    }                                                                                              \
    const float r = 1.f / sqrtf(block_sum(sum) / width + eps);                                     \
    if (vec) {                                                                                     \
      for (int c = threadIdx.x * 8; c < width; c += blockDim.x * 8) {                              \
        float v[8], w[8];                                                                          \
        ld8(xr + c, v);                                                                            \
        ld8(weight + c, w);                                                                        \
        _Pragma("unroll") for (int k = 0; k < 8; k++) v[k] = v[k] * r * w[k];                      \
        st8(outr + c, v);                                                                          \
      }                                                                                            \
    } else {                                                                                       \
      for (int c = threadIdx.x; c < width; c += blockDim.x) stf(outr + c, ldf(xr + c) * r * ldf(weight + c)); \
    }                                                                                              \
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
    const bool vec = width % 8 == 0 && ALIGNED16(xr) && ALIGNED16(dr) && ALIGNED16(dxr) && ALIGNED16(weight); \
    float sum = 0.f;                                                                               \
    if (vec) {                                                                                     \
      for (int c = threadIdx.x * 8; c < width; c += blockDim.x * 8) {                              \
        float d[8], w[8], v[8];                                                                    \
        ld8(dr + c, d);                                                                            \
        ld8(weight + c, w);                                                                        \
        ld8(xr + c, v);                                                                            \
        _Pragma("unroll") for (int k = 0; k < 8; k++) sum += d[k] * w[k] * v[k];                   \
      }                                                                                            \
    } else {                                                                                       \
      for (int c = threadIdx.x; c < width; c += blockDim.x) sum += ldf(dr + c) * ldf(weight + c) * ldf(xr + c); \
    }                                                                                              \
    const float r = rstd[row];                                                                     \
    const float k3 = block_sum(sum) / width * r * r * r;                                           \
    if (vec) {                                                                                     \
      for (int c = threadIdx.x * 8; c < width; c += blockDim.x * 8) {                              \
        float d[8], w[8], v[8], g[8];                                                              \
        ld8(dr + c, d);                                                                            \
        ld8(weight + c, w);                                                                        \
        ld8(xr + c, v);                                                                            \
        if (accumulate) {                                                                          \
          ld8(dxr + c, g);                                                                         \
        } else {                                                                                   \
          _Pragma("unroll") for (int k = 0; k < 8; k++) g[k] = 0.f;                                \
        }                                                                                          \
        _Pragma("unroll") for (int k = 0; k < 8; k++) g[k] += r * d[k] * w[k] - v[k] * k3;         \
        st8(dxr + c, g);                                                                           \
      }                                                                                            \
    } else {                                                                                       \
      for (int c = threadIdx.x; c < width; c += blockDim.x) {                                      \
        float g = r * ldf(dr + c) * ldf(weight + c) - ldf(xr + c) * k3;                            \
        if (accumulate) g += ldf(dxr + c);                                                         \
        stf(dxr + c, g);                                                                           \
      }                                                                                            \
    }                                                                                              \
  }
EACH2(RMSNORM_BWD)

// dweight[X] += sum over rows of dout * x * rstd; see column_reduce (`vec` as for column_sum).
#define RMSNORM_DW(ng, G, na, A)                                                                   \
  extern "C" __global__ void rmsnorm_dweight_##ng##_##na(G* dweight, const A* dout, const A* x,    \
                                                         const float* rstd, int rows, int width,   \
                                                         int rows_per_block, int vec) {            \
    column_reduce(dweight, rows, width, rows_per_block, vec ? 8 : 1, [&](int r, int col, float* sum) { \
      const i64 at = (i64)r * width + col;                                                         \
      const float s = rstd[r];                                                                     \
      if (vec) {                                                                                   \
        float d[8], v[8];                                                                          \
        ld8(dout + at, d);                                                                         \
        ld8(x + at, v);                                                                            \
        _Pragma("unroll") for (int k = 0; k < 8; k++) sum[k] += d[k] * v[k] * s;                   \
      } else {                                                                                     \
        sum[0] += ldf(dout + at) * ldf(x + at) * s;                                                \
      }                                                                                            \
    });                                                                                            \
  }
EACH2(RMSNORM_DW)
