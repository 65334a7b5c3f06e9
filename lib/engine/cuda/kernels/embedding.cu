// Token embedding: gather rows of the table (forward) and scatter-add gradients into it (backward).
// Rows whose token is outside [0, V) read as zeros and receive no gradient.

#define EMBED_FWD(no, O, nt, T)                                                                    \
  extern "C" __global__ void embedding_fwd_##no##_##nt(O* out, const T* table, const int* tokens,  \
                                                       i64 n, int width, int vocab) {              \
    GRID_LOOP(i, n) {                                                                              \
      const int token = tokens[i / width];                                                         \
      const bool valid = token >= 0 && token < vocab;                                              \
      stf(out + i, valid ? ldf(table + (i64)token * width + i % width) : 0.f);                     \
    }                                                                                              \
  }
EACH2(EMBED_FWD)

#define EMBED_BWD(nt, T, no, O)                                                                    \
  extern "C" __global__ void embedding_bwd_##nt##_##no(T* dtable, const O* dout, const int* tokens,\
                                                       i64 n, int width, int vocab) {              \
    GRID_LOOP(i, n) {                                                                              \
      const int token = tokens[i / width];                                                         \
      if (token >= 0 && token < vocab) atomic_addf(dtable + (i64)token * width + i % width, ldf(dout + i)); \
    }                                                                                              \
  }
EACH2(EMBED_BWD)
