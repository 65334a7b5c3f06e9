// Elementwise and column-reduction kernels: casts, add, scale, bias add and its gradient (column
// sums), SwiGLU forward/backward, the sum of squares for the gradient norm, and AdamW.

#define CAST(na, A, nb, B)                                                                         \
  extern "C" __global__ void cast_##na##_##nb(A* out, const B* x, i64 n) {                         \
    GRID_LOOP(i, n) stf(out + i, ldf(x + i));                                                      \
  }
EACH2(CAST)

#define ADD(no, O, na, A, nb, B)                                                                   \
  extern "C" __global__ void add_##no##_##na##_##nb(O* out, const A* a, const B* b, i64 n) {       \
    GRID_LOOP(i, n) stf(out + i, ldf(a + i) + ldf(b + i));                                         \
  }
EACH3(ADD)

#define SCALE(na, A)                                                                               \
  extern "C" __global__ void scale_##na(A* x, float alpha, i64 n) {                                \
    GRID_LOOP(i, n) stf(x + i, ldf(x + i) * alpha);                                                \
  }
EACH1(SCALE)

// out[N, X] += bias[X]
#define BIAS_ADD(no, O, nb, B)                                                                     \
  extern "C" __global__ void bias_add_##no##_##nb(O* out, const B* bias, i64 n, int width) {       \
    GRID_LOOP(i, n) stf(out + i, ldf(out + i) + ldf(bias + i % width));                            \
  }
EACH2(BIAS_ADD)

// dbias[X] += sum over rows of dout[N, X]; grid (ceil(X / blockDim), row chunks of `rows_per_block`).
#define COLUMN_SUM(nd, D, ng, G)                                                                   \
  extern "C" __global__ void column_sum_##nd##_##ng(D* dbias, const G* dout, int rows, int width,  \
                                                    int rows_per_block) {                          \
    const int col = blockIdx.x * blockDim.x + threadIdx.x;                                         \
    if (col >= width) return;                                                                      \
    const int start = blockIdx.y * rows_per_block;                                                 \
    const int end = imin(rows, start + rows_per_block);                                             \
    float sum = 0.f;                                                                               \
    for (int r = start; r < end; r++) sum += ldf(dout + (i64)r * width + col);                     \
    atomic_addf(dbias + col, sum);                                                                 \
  }
EACH2(COLUMN_SUM)

#define SWIGLU_FWD(na, A)                                                                          \
  extern "C" __global__ void swiglu_fwd_##na(A* out, const A* gate, const A* up, i64 n) {          \
    GRID_LOOP(i, n) {                                                                              \
      const float g = ldf(gate + i);                                                               \
      stf(out + i, g / (1.f + expf(-g)) * ldf(up + i));                                            \
    }                                                                                              \
  }
EACH1(SWIGLU_FWD)

#define SWIGLU_BWD(na, A)                                                                          \
  extern "C" __global__ void swiglu_bwd_##na(A* dgate, A* dup, const A* dout, const A* gate,       \
                                             const A* up, i64 n) {                                 \
    GRID_LOOP(i, n) {                                                                              \
      const float g = ldf(gate + i), u = ldf(up + i), d = ldf(dout + i);                           \
      const float sig = 1.f / (1.f + expf(-g));                                                    \
      stf(dup + i, d * g * sig);                                                                   \
      stf(dgate + i, d * u * sig * (1.f + g * (1.f - sig)));                                       \
    }                                                                                              \
  }
EACH1(SWIGLU_BWD)

// out[0] += sum of x^2 (f32 per thread, one atomic per block).
#define SUM_SQUARES(na, A)                                                                         \
  extern "C" __global__ void sum_squares_##na(float* out, const A* x, i64 n) {                     \
    float sum = 0.f;                                                                               \
    GRID_LOOP(i, n) {                                                                              \
      const float v = ldf(x + i);                                                                  \
      sum += v * v;                                                                                \
    }                                                                                              \
    sum = block_sum(sum);                                                                          \
    if (threadIdx.x == 0) atomicAdd(out, sum);                                                     \
  }
EACH1(SUM_SQUARES)

// AdamW with decoupled weight decay on f32 param, m, v; bc1 = 1 - beta1^step, bc2 = 1 - beta2^step.
#define ADAMW(ng, G)                                                                               \
  extern "C" __global__ void adamw_##ng(float* param, const G* grad, float* m, float* v, float lr, \
                                        float beta1, float beta2, float eps, float weight_decay,   \
                                        float bc1, float bc2, float grad_scale, i64 n) {           \
    GRID_LOOP(i, n) {                                                                              \
      const float g = grad_scale * ldf(grad + i);                                                  \
      const float mi = beta1 * m[i] + (1.f - beta1) * g;                                           \
      const float vi = beta2 * v[i] + (1.f - beta2) * g * g;                                       \
      m[i] = mi;                                                                                   \
      v[i] = vi;                                                                                   \
      const float p = param[i];                                                                    \
      param[i] = p - lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + weight_decay * p);               \
    }                                                                                              \
  }
EACH1(ADAMW)
