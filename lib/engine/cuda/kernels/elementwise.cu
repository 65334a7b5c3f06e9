// Elementwise and column-reduction kernels: casts, add, scale, bias add and its gradient (column
// sums), SwiGLU forward/backward, the sum of squares for the gradient norm, and AdamW. Elementwise
// kernels move 16 bytes per access when their pointers allow (see `elementwise` in common.cuh).

#define CAST(na, A, nb, B)                                                                         \
  extern "C" __global__ void cast_##na##_##nb(A* out, const B* x, i64 n) {                         \
    elementwise(n, ALIGNED16(out) && ALIGNED16(x), [&](i64 i) {                                    \
      float v[8];                                                                                  \
      ld8(x + i, v);                                                                               \
      st8(out + i, v);                                                                             \
    }, [&](i64 i) { stf(out + i, ldf(x + i)); });                                                  \
  }
EACH2(CAST)

#define ADD(no, O, na, A, nb, B)                                                                   \
  extern "C" __global__ void add_##no##_##na##_##nb(O* out, const A* a, const B* b, i64 n) {       \
    elementwise(n, ALIGNED16(out) && ALIGNED16(a) && ALIGNED16(b), [&](i64 i) {                    \
      float u[8], v[8];                                                                            \
      ld8(a + i, u);                                                                               \
      ld8(b + i, v);                                                                               \
      _Pragma("unroll") for (int k = 0; k < 8; k++) u[k] += v[k];                                  \
      st8(out + i, u);                                                                             \
    }, [&](i64 i) { stf(out + i, ldf(a + i) + ldf(b + i)); });                                     \
  }
EACH3(ADD)

#define SCALE(na, A)                                                                               \
  extern "C" __global__ void scale_##na(A* x, float alpha, i64 n) {                                \
    elementwise(n, ALIGNED16(x), [&](i64 i) {                                                      \
      float v[8];                                                                                  \
      ld8(x + i, v);                                                                               \
      _Pragma("unroll") for (int k = 0; k < 8; k++) v[k] *= alpha;                                 \
      st8(x + i, v);                                                                               \
    }, [&](i64 i) { stf(x + i, ldf(x + i) * alpha); });                                            \
  }
EACH1(SCALE)

// out[N, X] += bias[X]; one block per row.
#define BIAS_ADD(no, O, nb, B)                                                                     \
  extern "C" __global__ void bias_add_##no##_##nb(O* out, const B* bias, int width) {              \
    O* row = out + (i64)blockIdx.x * width;                                                        \
    if (width % 8 == 0 && ALIGNED16(row) && ALIGNED16(bias)) {                                     \
      for (int c = threadIdx.x * 8; c < width; c += blockDim.x * 8) {                              \
        float u[8], v[8];                                                                          \
        ld8(row + c, u);                                                                           \
        ld8(bias + c, v);                                                                          \
        _Pragma("unroll") for (int k = 0; k < 8; k++) u[k] += v[k];                                \
        st8(row + c, u);                                                                           \
      }                                                                                            \
    } else {                                                                                       \
      for (int c = threadIdx.x; c < width; c += blockDim.x) stf(row + c, ldf(row + c) + ldf(bias + c)); \
    }                                                                                              \
  }
EACH2(BIAS_ADD)

// dbias[X] += sum over rows of dout[N, X]; see column_reduce (`vec`: 8 columns per lane, set by the
// host when X % 8 == 0 and dout is aligned).
#define COLUMN_SUM(nd, D, ng, G)                                                                   \
  extern "C" __global__ void column_sum_##nd##_##ng(D* dbias, const G* dout, int rows, int width,  \
                                                    int rows_per_block, int vec) {                 \
    column_reduce(dbias, rows, width, rows_per_block, vec ? 8 : 1, [&](int r, int col, float* sum) { \
      const G* at = dout + (i64)r * width + col;                                                   \
      if (vec) {                                                                                   \
        float d[8];                                                                                \
        ld8(at, d);                                                                                \
        _Pragma("unroll") for (int k = 0; k < 8; k++) sum[k] += d[k];                              \
      } else {                                                                                     \
        sum[0] += ldf(at);                                                                         \
      }                                                                                            \
    });                                                                                            \
  }
EACH2(COLUMN_SUM)

__device__ __forceinline__ float silu(float g) { return g / (1.f + expf(-g)); }

#define SWIGLU_FWD(na, A)                                                                          \
  extern "C" __global__ void swiglu_fwd_##na(A* out, const A* gate, const A* up, i64 n) {          \
    elementwise(n, ALIGNED16(out) && ALIGNED16(gate) && ALIGNED16(up), [&](i64 i) {                \
      float g[8], u[8];                                                                            \
      ld8(gate + i, g);                                                                            \
      ld8(up + i, u);                                                                              \
      _Pragma("unroll") for (int k = 0; k < 8; k++) g[k] = silu(g[k]) * u[k];                      \
      st8(out + i, g);                                                                             \
    }, [&](i64 i) { stf(out + i, silu(ldf(gate + i)) * ldf(up + i)); });                           \
  }
EACH1(SWIGLU_FWD)

// silu'(g) = sig * (1 + g * (1 - sig)); dup = dout * silu(g); dgate = dout * up * silu'(g)
__device__ __forceinline__ void swiglu_grad(float g, float u, float d, float* dgate, float* dup) {
  const float sig = 1.f / (1.f + expf(-g));
  *dup = d * g * sig;
  *dgate = d * u * sig * (1.f + g * (1.f - sig));
}

#define SWIGLU_BWD(na, A)                                                                          \
  extern "C" __global__ void swiglu_bwd_##na(A* dgate, A* dup, const A* dout, const A* gate,       \
                                             const A* up, i64 n) {                                 \
    const bool aligned = ALIGNED16(dgate) && ALIGNED16(dup) && ALIGNED16(dout) && ALIGNED16(gate) && ALIGNED16(up); \
    elementwise(n, aligned, [&](i64 i) {                                                           \
      float g[8], u[8], d[8], dg[8], du[8];                                                        \
      ld8(gate + i, g);                                                                            \
      ld8(up + i, u);                                                                              \
      ld8(dout + i, d);                                                                            \
      _Pragma("unroll") for (int k = 0; k < 8; k++) swiglu_grad(g[k], u[k], d[k], dg + k, du + k); \
      st8(dgate + i, dg);                                                                          \
      st8(dup + i, du);                                                                            \
    }, [&](i64 i) {                                                                                \
      float dg, du;                                                                                \
      swiglu_grad(ldf(gate + i), ldf(up + i), ldf(dout + i), &dg, &du);                            \
      stf(dgate + i, dg);                                                                          \
      stf(dup + i, du);                                                                            \
    });                                                                                            \
  }
EACH1(SWIGLU_BWD)

// out[0] += sum of x^2 (f32 per thread, one atomic per block).
#define SUM_SQUARES(na, A)                                                                         \
  extern "C" __global__ void sum_squares_##na(float* out, const A* x, i64 n) {                     \
    float sum = 0.f;                                                                               \
    elementwise(n, ALIGNED16(x), [&](i64 i) {                                                      \
      float v[8];                                                                                  \
      ld8(x + i, v);                                                                               \
      _Pragma("unroll") for (int k = 0; k < 8; k++) sum += v[k] * v[k];                            \
    }, [&](i64 i) {                                                                                \
      const float v = ldf(x + i);                                                                  \
      sum += v * v;                                                                                \
    });                                                                                            \
    sum = block_sum(sum);                                                                          \
    if (threadIdx.x == 0) atomicAdd(out, sum);                                                     \
  }
EACH1(SUM_SQUARES)

struct AdamHyper {
  float lr, beta1, beta2, eps, weight_decay, bc1, bc2, grad_scale;
};
/** One AdamW update of one element; returns the new parameter. */
__device__ __forceinline__ float adamw_update(float p, float g, float* m, float* v, const AdamHyper& h) {
  g *= h.grad_scale;
  *m = h.beta1 * *m + (1.f - h.beta1) * g;
  *v = h.beta2 * *v + (1.f - h.beta2) * g * g;
  return p - h.lr * ((*m / h.bc1) / (sqrtf(*v / h.bc2) + h.eps) + h.weight_decay * p);
}

// AdamW with decoupled weight decay on f32 param, m, v; bc1 = 1 - beta1^step, bc2 = 1 - beta2^step.
#define ADAMW(ng, G)                                                                               \
  extern "C" __global__ void adamw_##ng(float* param, const G* grad, float* m, float* v, float lr, \
                                        float beta1, float beta2, float eps, float weight_decay,   \
                                        float bc1, float bc2, float grad_scale, i64 n) {           \
    const AdamHyper h = {lr, beta1, beta2, eps, weight_decay, bc1, bc2, grad_scale};               \
    const bool aligned = ALIGNED16(param) && ALIGNED16(grad) && ALIGNED16(m) && ALIGNED16(v);      \
    elementwise(n, aligned, [&](i64 i) {                                                           \
      float p[8], g[8], mm[8], vv[8];                                                              \
      ld8(param + i, p);                                                                           \
      ld8(grad + i, g);                                                                            \
      ld8(m + i, mm);                                                                              \
      ld8(v + i, vv);                                                                              \
      _Pragma("unroll") for (int k = 0; k < 8; k++) p[k] = adamw_update(p[k], g[k], mm + k, vv + k, h); \
      st8(param + i, p);                                                                           \
      st8(m + i, mm);                                                                              \
      st8(v + i, vv);                                                                              \
    }, [&](i64 i) {                                                                                \
      float mm = m[i], vv = v[i];                                                                  \
      param[i] = adamw_update(param[i], ldf(grad + i), &mm, &vv, h);                               \
      m[i] = mm;                                                                                   \
      v[i] = vv;                                                                                   \
    });                                                                                            \
  }
EACH1(ADAMW)
