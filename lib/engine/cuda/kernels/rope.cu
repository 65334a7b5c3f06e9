// Per-head rotary position embedding in the HF rotate_half layout. x [N, Hx, D] -> out [N, Ho, D]; out
// head h reads x head h / (Ho / Hx). One thread per (row, head, pair-or-passthrough dim).

/** sin and cos of position * inv_freq: the product is exact in f64 and reduced to [-pi, pi] there, so
 * the angle is more accurate than an f32 product (error ~1e-7 rad at any position). */
__device__ __forceinline__ void rope_sincos(int position, float inv_freq, float* s, float* c) {
  const double two_pi = 6.283185307179586476925;
  double angle = (double)position * (double)inv_freq;
  angle -= rint(angle / two_pi) * two_pi;
  sincosf((float)angle, s, c);
}

#define ROPE_FWD(na, A)                                                                            \
  extern "C" __global__ void rope_fwd_##na(A* out, const A* x, const float* inv_freq,              \
                                           const int* positions, i64 rows, int heads_out,          \
                                           int heads_in, int dim, int rotary) {                    \
    const int half = rotary / 2, per_head = dim - half;                                            \
    const int group = heads_out / heads_in;                                                        \
    GRID_LOOP(i, rows * heads_out * per_head) {                                                    \
      const int j = (int)(i % per_head);                                                           \
      const i64 rh = i / per_head;                                                                 \
      const int h = (int)(rh % heads_out);                                                         \
      const i64 row = rh / heads_out;                                                              \
      const A* src = x + (row * heads_in + h / group) * dim;                                       \
      A* dst = out + rh * dim;                                                                     \
      if (j < half) {                                                                              \
        float s, c;                                                                                \
        rope_sincos(positions[row], inv_freq[h * half + j], &s, &c);                               \
        const float a = ldf(src + j), b = ldf(src + j + half);                                     \
        stf(dst + j, a * c - b * s);                                                               \
        stf(dst + j + half, b * c + a * s);                                                        \
      } else {                                                                                     \
        const int d = rotary + (j - half);                                                         \
        stf(dst + d, ldf(src + d));                                                                \
      }                                                                                            \
    }                                                                                              \
  }
EACH1(ROPE_FWD)

// dx head g = sum over the out heads h reading g of dout head h rotated by -angle_h.
#define ROPE_BWD(na, A)                                                                            \
  extern "C" __global__ void rope_bwd_##na(A* dx, const A* dout, const float* inv_freq,            \
                                           const int* positions, i64 rows, int heads_out,          \
                                           int heads_in, int dim, int rotary) {                    \
    const int half = rotary / 2, per_head = dim - half;                                            \
    const int group = heads_out / heads_in;                                                        \
    GRID_LOOP(i, rows * heads_in * per_head) {                                                     \
      const int j = (int)(i % per_head);                                                           \
      const i64 rg = i / per_head;                                                                 \
      const int g = (int)(rg % heads_in);                                                          \
      const i64 row = rg / heads_in;                                                               \
      A* dst = dx + rg * dim;                                                                      \
      if (j < half) {                                                                              \
        float lo = 0.f, hi = 0.f;                                                                  \
        for (int h = g * group; h < (g + 1) * group; h++) {                                        \
          const A* src = dout + (row * heads_out + h) * dim;                                       \
          float s, c;                                                                              \
          rope_sincos(positions[row], inv_freq[h * half + j], &s, &c);                             \
          const float a = ldf(src + j), b = ldf(src + j + half);                                   \
          lo += a * c + b * s;                                                                     \
          hi += b * c - a * s;                                                                     \
        }                                                                                          \
        stf(dst + j, lo);                                                                          \
        stf(dst + j + half, hi);                                                                   \
      } else {                                                                                     \
        const int d = rotary + (j - half);                                                         \
        float sum = 0.f;                                                                           \
        for (int h = g * group; h < (g + 1) * group; h++) sum += ldf(dout + (row * heads_out + h) * dim + d); \
        stf(dst + d, sum);                                                                         \
      }                                                                                            \
    }                                                                                              \
  }
EACH1(ROPE_BWD)
