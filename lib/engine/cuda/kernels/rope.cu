// Per-head rotary position embedding in the HF rotate_half layout. x [N, Hx, D] -> out [N, Ho, D]; out
// head h reads x head h / (Ho / Hx). One thread per (row, head, unit): a unit is one rotated pair (or
// one pass-through dim), or 8 of them when the host sets `vec` (R/2 and D-R multiples of 8, aligned).

/** sin and cos of position * inv_freq: the product is exact in f64 and reduced to [-pi, pi] there,
 * then the hardware sincos (abs. error < 4e-7 on [-pi, pi]): more accurate than an f32 product of
 * position and inv_freq, whose rounding alone is ~6e-8 * angle (6e-3 rad at position 100k). */
__device__ __forceinline__ void rope_sincos(int position, float inv_freq, float* s, float* c) {
  const double two_pi = 6.283185307179586476925, inv_two_pi = 0.159154943091895335768;
  double angle = (double)position * (double)inv_freq;
  angle = fma(-rint(angle * inv_two_pi), two_pi, angle);
  __sincosf((float)angle, s, c);
}

/** Rotates pair values (a, b) by +angle (sign 1) or -angle (sign -1) into (lo, hi). */
__device__ __forceinline__ void rotate(float a, float b, float s, float c, float sign, float* lo, float* hi) {
  *lo = a * c - sign * b * s;
  *hi = b * c + sign * a * s;
}

#define ROPE_FWD(na, A)                                                                            \
  extern "C" __global__ void rope_fwd_##na(A* out, const A* x, const float* inv_freq,              \
                                           const int* positions, i64 rows, int heads_out,          \
                                           int heads_in, int dim, int rotary, int vec) {           \
    const int half = rotary / 2, step = vec ? 8 : 1, units = (dim - half) / step;                  \
    const int group = heads_out / heads_in;                                                        \
    GRID_LOOP(i, rows * heads_out * units) {                                                       \
      int j, h;                                                                                    \
      const i64 rh = divmod(i, units, &j);                                                         \
      const i64 row = divmod(rh, heads_out, &h);                                                   \
      j *= step;                                                                                   \
      const A* src = x + (row * heads_in + h / group) * dim;                                       \
      A* dst = out + rh * dim;                                                                     \
      const int position = positions[row];                                                         \
      const float* freq = inv_freq + h * half + j;                                                 \
      if (j < half && vec) {                                                                       \
        float a[8], b[8], lo[8], hi[8];                                                            \
        ld8(src + j, a);                                                                           \
        ld8(src + j + half, b);                                                                    \
        _Pragma("unroll") for (int k = 0; k < 8; k++) {                                            \
          float s, c;                                                                              \
          rope_sincos(position, freq[k], &s, &c);                                                  \
          rotate(a[k], b[k], s, c, 1.f, lo + k, hi + k);                                           \
        }                                                                                          \
        st8(dst + j, lo);                                                                          \
        st8(dst + j + half, hi);                                                                   \
      } else if (j < half) {                                                                       \
        float s, c, lo, hi;                                                                        \
        rope_sincos(position, freq[0], &s, &c);                                                    \
        rotate(ldf(src + j), ldf(src + j + half), s, c, 1.f, &lo, &hi);                            \
        stf(dst + j, lo);                                                                          \
        stf(dst + j + half, hi);                                                                   \
      } else {                                                                                     \
        const int d = rotary + (j - half);                                                         \
        for (int k = 0; k < step; k++) stf(dst + d + k, ldf(src + d + k));                         \
      }                                                                                            \
    }                                                                                              \
  }
EACH1(ROPE_FWD)

// dx head g = sum over the out heads h reading g of dout head h rotated by -angle_h.
#define ROPE_BWD(na, A)                                                                            \
  extern "C" __global__ void rope_bwd_##na(A* dx, const A* dout, const float* inv_freq,            \
                                           const int* positions, i64 rows, int heads_out,          \
                                           int heads_in, int dim, int rotary, int vec) {           \
    const int half = rotary / 2, step = vec ? 8 : 1, units = (dim - half) / step;                  \
    const int group = heads_out / heads_in;                                                        \
    GRID_LOOP(i, rows * heads_in * units) {                                                        \
      int j, g;                                                                                    \
      const i64 rg = divmod(i, units, &j);                                                         \
      const i64 row = divmod(rg, heads_in, &g);                                                    \
      j *= step;                                                                                   \
      A* dst = dx + rg * dim;                                                                      \
      const int position = positions[row];                                                         \
      if (j < half && vec) {                                                                       \
        float lo[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f}, hi[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f}; \
        for (int h = g * group; h < (g + 1) * group; h++) {                                        \
          const A* src = dout + (row * heads_out + h) * dim;                                       \
          float a[8], b[8];                                                                        \
          ld8(src + j, a);                                                                         \
          ld8(src + j + half, b);                                                                  \
          _Pragma("unroll") for (int k = 0; k < 8; k++) {                                          \
            float s, c, l, u;                                                                      \
            rope_sincos(position, inv_freq[h * half + j + k], &s, &c);                             \
            rotate(a[k], b[k], s, c, -1.f, &l, &u);                                                \
            lo[k] += l;                                                                            \
            hi[k] += u;                                                                            \
          }                                                                                        \
        }                                                                                          \
        st8(dst + j, lo);                                                                          \
        st8(dst + j + half, hi);                                                                   \
      } else if (j < half) {                                                                       \
        float lo = 0.f, hi = 0.f;                                                                  \
        for (int h = g * group; h < (g + 1) * group; h++) {                                        \
          const A* src = dout + (row * heads_out + h) * dim;                                       \
          float s, c, l, u;                                                                        \
          rope_sincos(position, inv_freq[h * half + j], &s, &c);                                   \
          rotate(ldf(src + j), ldf(src + j + half), s, c, -1.f, &l, &u);                           \
          lo += l;                                                                                 \
          hi += u;                                                                                 \
        }                                                                                          \
        stf(dst + j, lo);                                                                          \
        stf(dst + j + half, hi);                                                                   \
      } else {                                                                                     \
        const int d = rotary + (j - half);                                                         \
        for (int k = 0; k < step; k++) {                                                           \
          float sum = 0.f;                                                                         \
          for (int h = g * group; h < (g + 1) * group; h++) sum += ldf(dout + (row * heads_out + h) * dim + d + k); \
          stf(dst + d + k, sum);                                                                   \
        }                                                                                          \
      }                                                                                            \
    }                                                                                              \
  }
EACH1(ROPE_BWD)
