// Token embedding: gather rows of the table (forward, one block per row) and scatter-add gradients
// into it (backward). Rows whose token is outside [0, V) read as zeros and receive no gradient.

#define EMBED_FWD(no, O, nt, T)                                                                    \
  extern "C" __global__ void embedding_fwd_##no##_##nt(O* out, const T* table, const int* tokens,  \
                                                       int width, int vocab) {                     \
    const i64 row = blockIdx.x;                                                                    \
    const int token = tokens[row];                                                                 \
    const bool valid = token >= 0 && token < vocab;                                                \
    const T* src = table + (i64)(valid ? token : 0) * width;                                       \
    O* dst = out + row * width;                                                                    \
    if (width % 8 == 0 && ALIGNED16(src) && ALIGNED16(dst)) {                                      \
      for (int c = threadIdx.x * 8; c < width; c += blockDim.x * 8) {                              \
        float v[8];                                                                                \
        ld8(src + c, v);                                                                           \
        if (!valid) {                                                                              \
          _Pragma("unroll") for (int k = 0; k < 8; k++) v[k] = 0.f;                                \
        }                                                                                          \
        st8(dst + c, v);                                                                           \
      }                                                                                            \
    } else {                                                                                       \
      for (int c = threadIdx.x; c < width; c += blockDim.x) stf(dst + c, valid ? ldf(src + c) : 0.f); \
    }                                                                                              \
  }
EACH2(EMBED_FWD)

#define EMBED_BWD(nt, T, no, O)                                                                    \
  extern "C" __global__ void embedding_bwd_##nt##_##no(T* dtable, const O* dout, const int* tokens,\
                                                       int width, int vocab) {                     \
    const i64 row = blockIdx.x;                                                                    \
    const int token = tokens[row];                                                                 \
    if (token < 0 || token >= vocab) return;                                                       \
    for (int c = threadIdx.x; c < width; c += blockDim.x) {                                        \
      atomic_addf(dtable + (i64)token * width + c, ldf(dout + row * width + c));                   \
    }                                                                                              \
  }
EACH2(EMBED_BWD)
