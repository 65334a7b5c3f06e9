// Simple causal GQA attention (correct, not fast; the flash kernels replace it): one warp per query
// row (forward, dq) or key row (dk, dv), scores never stored, online softmax, f32 accumulation.
// q [B, T, H, D], k [B, T, Hk, D], v [B, T, Hv, D], out [B, T, H, D], lse f32 [B, H, T]. D <= 256.

#define ATTN_MAX_PER_LANE 8

#define ATTN_FWD(na, A)                                                                            \
  extern "C" __global__ void attention_fwd_##na(A* out, float* lse, const A* q, const A* k,        \
                                                const A* v, int batch, int tokens, int heads,      \
                                                int kheads, int vheads, int dim, float scale) {    \
    const i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;                             \
    const int lane = threadIdx.x & 31;                                                             \
    if (row >= (i64)batch * heads * tokens) return;                                                \
    const int t = (int)(row % tokens), h = (int)((row / tokens) % heads), b = (int)(row / tokens / heads); \
    const int hk = h / (heads / kheads), hv = h / (heads / vheads);                                \
    const A* qr = q + (((i64)b * tokens + t) * heads + h) * dim;                                   \
    float qv[ATTN_MAX_PER_LANE], acc[ATTN_MAX_PER_LANE];                                           \
    _Pragma("unroll") for (int j = 0; j < ATTN_MAX_PER_LANE; j++) {                                \
      const int d = lane + 32 * j;                                                                 \
      qv[j] = d < dim ? ldf(qr + d) * scale : 0.f;                                                 \
      acc[j] = 0.f;                                                                                \
    }                                                                                              \
    float m = -F32_INFINITY, l = 0.f;                                                                  \
    for (int s = 0; s <= t; s++) {                                                                 \
      const A* kr = k + (((i64)b * tokens + s) * kheads + hk) * dim;                               \
      const A* vr = v + (((i64)b * tokens + s) * vheads + hv) * dim;                               \
      float dot = 0.f;                                                                             \
      _Pragma("unroll") for (int j = 0; j < ATTN_MAX_PER_LANE; j++) {                              \
        const int d = lane + 32 * j;                                                               \
        if (d < dim) dot += qv[j] * ldf(kr + d);                                                   \
      }                                                                                            \
      const float score = warp_sum(dot);                                                           \
      const float mnew = fmaxf(m, score);                                                          \
      const float correction = expf(m - mnew), p = expf(score - mnew);                             \
      l = l * correction + p;                                                                      \
      _Pragma("unroll") for (int j = 0; j < ATTN_MAX_PER_LANE; j++) {                              \
        const int d = lane + 32 * j;                                                               \
        if (d < dim) acc[j] = acc[j] * correction + p * ldf(vr + d);                               \
      }                                                                                            \
      m = mnew;                                                                                    \
    }                                                                                              \
    A* outr = out + (((i64)b * tokens + t) * heads + h) * dim;                                     \
    _Pragma("unroll") for (int j = 0; j < ATTN_MAX_PER_LANE; j++) {                                \
      const int d = lane + 32 * j;                                                                 \
      if (d < dim) stf(outr + d, acc[j] / l);                                                      \
    }                                                                                              \
    if (lane == 0) lse[((i64)b * heads + h) * tokens + t] = m + logf(l);                           \
  }
EACH1(ATTN_FWD)

// delta[B, H, T] = sum_d dout * out (the softmax backward's row term).
#define ATTN_DELTA(na, A)                                                                          \
  extern "C" __global__ void attention_delta_##na(float* delta, const A* dout, const A* out,       \
                                                  int batch, int tokens, int heads, int dim) {     \
    const i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;                             \
    const int lane = threadIdx.x & 31;                                                             \
    if (row >= (i64)batch * heads * tokens) return;                                                \
    const int t = (int)(row % tokens), h = (int)((row / tokens) % heads), b = (int)(row / tokens / heads); \
    const i64 at = (((i64)b * tokens + t) * heads + h) * dim;                                      \
    float sum = 0.f;                                                                               \
    for (int d = lane; d < dim; d += 32) sum += ldf(dout + at + d) * ldf(out + at + d);            \
    sum = warp_sum(sum);                                                                           \
    if (lane == 0) delta[((i64)b * heads + h) * tokens + t] = sum;                                 \
  }
EACH1(ATTN_DELTA)

// dq[t] = scale * sum_{s<=t} p_ts (dout_t . v_s - delta_t) k_s
#define ATTN_DQ(na, A)                                                                             \
  extern "C" __global__ void attention_dq_##na(A* dq, const A* dout, const A* q, const A* k,        \
                                               const A* v, const float* lse, const float* delta,   \
                                               int batch, int tokens, int heads, int kheads,       \
                                               int vheads, int dim, float scale) {                 \
    const i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;                             \
    const int lane = threadIdx.x & 31;                                                             \
    if (row >= (i64)batch * heads * tokens) return;                                                \
    const int t = (int)(row % tokens), h = (int)((row / tokens) % heads), b = (int)(row / tokens / heads); \
    const int hk = h / (heads / kheads), hv = h / (heads / vheads);                                \
    const i64 at = (((i64)b * tokens + t) * heads + h) * dim;                                      \
    float qv[ATTN_MAX_PER_LANE], dov[ATTN_MAX_PER_LANE], acc[ATTN_MAX_PER_LANE];                   \
    _Pragma("unroll") for (int j = 0; j < ATTN_MAX_PER_LANE; j++) {                                \
      const int d = lane + 32 * j;                                                                 \
      qv[j] = d < dim ? ldf(q + at + d) * scale : 0.f;                                             \
      dov[j] = d < dim ? ldf(dout + at + d) : 0.f;                                                 \
      acc[j] = 0.f;                                                                                \
    }                                                                                              \
    const i64 stat = ((i64)b * heads + h) * tokens + t;                                            \
    const float row_lse = lse[stat], row_delta = delta[stat];                                      \
    for (int s = 0; s <= t; s++) {                                                                 \
      const A* kr = k + (((i64)b * tokens + s) * kheads + hk) * dim;                               \
      const A* vr = v + (((i64)b * tokens + s) * vheads + hv) * dim;                               \
      float dot = 0.f, dp = 0.f;                                                                   \
      _Pragma("unroll") for (int j = 0; j < ATTN_MAX_PER_LANE; j++) {                              \
        const int d = lane + 32 * j;                                                               \
        if (d < dim) {                                                                             \
          dot += qv[j] * ldf(kr + d);                                                              \
          dp += dov[j] * ldf(vr + d);                                                              \
        }                                                                                          \
      }                                                                                            \
      const float p = expf(warp_sum(dot) - row_lse);                                               \
      const float ds = p * (warp_sum(dp) - row_delta) * scale;                                     \
      _Pragma("unroll") for (int j = 0; j < ATTN_MAX_PER_LANE; j++) {                              \
        const int d = lane + 32 * j;                                                               \
        if (d < dim) acc[j] += ds * ldf(kr + d);                                                   \
      }                                                                                            \
    }                                                                                              \
    _Pragma("unroll") for (int j = 0; j < ATTN_MAX_PER_LANE; j++) {                                \
      const int d = lane + 32 * j;                                                                 \
      if (d < dim) stf(dq + at + d, acc[j]);                                                       \
    }                                                                                              \
  }
EACH1(ATTN_DQ)

// For key/value head g at position s: over every query head h using it and t >= s,
// dk_s = scale * sum p_ts (dout_t . v_s - delta_t) q_t  (want_dk), dv_s = sum p_ts dout_t (!want_dk).
// `group_heads` is Hk (for dk) or Hv (for dv); the other projection is found from h.
#define ATTN_DKV(na, A)                                                                            \
  extern "C" __global__ void attention_dkv_##na(A* grad, const A* dout, const A* q, const A* k,    \
                                                const A* v, const float* lse, const float* delta,  \
                                                int batch, int tokens, int heads, int kheads,      \
                                                int vheads, int dim, float scale, int want_dk) {   \
    const int group_heads = want_dk ? kheads : vheads;                                             \
    const i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;                             \
    const int lane = threadIdx.x & 31;                                                             \
    if (row >= (i64)batch * group_heads * tokens) return;                                          \
    const int s = (int)(row % tokens), g = (int)((row / tokens) % group_heads);                    \
    const int b = (int)(row / tokens / group_heads);                                               \
    const int per = heads / group_heads;                                                           \
    float acc[ATTN_MAX_PER_LANE];                                                                  \
    _Pragma("unroll") for (int j = 0; j < ATTN_MAX_PER_LANE; j++) acc[j] = 0.f;                    \
    for (int h = g * per; h < (g + 1) * per; h++) {                                                \
      const int hk = h / (heads / kheads), hv = h / (heads / vheads);                              \
      const A* kr = k + (((i64)b * tokens + s) * kheads + hk) * dim;                               \
      const A* vr = v + (((i64)b * tokens + s) * vheads + hv) * dim;                               \
      float kv[ATTN_MAX_PER_LANE], vv[ATTN_MAX_PER_LANE];                                          \
      _Pragma("unroll") for (int j = 0; j < ATTN_MAX_PER_LANE; j++) {                              \
        const int d = lane + 32 * j;                                                               \
        kv[j] = d < dim ? ldf(kr + d) * scale : 0.f;                                               \
        vv[j] = d < dim ? ldf(vr + d) : 0.f;                                                       \
      }                                                                                            \
      for (int t = s; t < tokens; t++) {                                                           \
        const i64 at = (((i64)b * tokens + t) * heads + h) * dim;                                  \
        const i64 stat = ((i64)b * heads + h) * tokens + t;                                        \
        float dot = 0.f, dp = 0.f;                                                                 \
        _Pragma("unroll") for (int j = 0; j < ATTN_MAX_PER_LANE; j++) {                            \
          const int d = lane + 32 * j;                                                             \
          if (d < dim) {                                                                           \
            dot += kv[j] * ldf(q + at + d);                                                        \
            dp += vv[j] * ldf(dout + at + d);                                                      \
          }                                                                                        \
        }                                                                                          \
        const float p = expf(warp_sum(dot) - lse[stat]);                                           \
        const float weight = want_dk ? p * (warp_sum(dp) - delta[stat]) * scale : p;               \
        const A* src = want_dk ? q : dout;                                                         \
        _Pragma("unroll") for (int j = 0; j < ATTN_MAX_PER_LANE; j++) {                            \
          const int d = lane + 32 * j;                                                             \
          if (d < dim) acc[j] += weight * ldf(src + at + d);                                       \
        }                                                                                          \
      }                                                                                            \
    }                                                                                              \
    A* dst = grad + (((i64)b * tokens + s) * group_heads + g) * dim;                               \
    _Pragma("unroll") for (int j = 0; j < ATTN_MAX_PER_LANE; j++) {                                \
      const int d = lane + 32 * j;                                                                 \
      if (d < dim) stf(dst + d, acc[j]);                                                           \
    }                                                                                              \
  }
EACH1(ATTN_DKV)
