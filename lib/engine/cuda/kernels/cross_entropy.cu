// The softmax / cross-entropy step of the fused lm head: for one chunk of rows of f32 logits [R, V]
// (made by a cuBLASLt GEMM), writes each row's loss and, when asked, dlogits = scale * (softmax -
// onehot(target)) (in place when dlogits is the f32 logits buffer). Three kernels, picked by the host:
// V <= 32768 prefetching rows, V <= 262144 clusters holding a row, both reading the logits once (V % 4
// == 0 and aligned rows); any other row here, two passes: block per row, one pass for the running max and
// sum of exponentials, one for the gradient; 4 elements per access with `vec` (V % 4 == 0, aligned).

struct alignas(8) u32x2 {
  unsigned x, y;
};
__device__ __forceinline__ void st4(float* p, const float* v) {
  u32x4 u;
  u.x = __float_as_uint(v[0]), u.y = __float_as_uint(v[1]), u.z = __float_as_uint(v[2]), u.w = __float_as_uint(v[3]);
  *reinterpret_cast<u32x4*>(p) = u;
}
__device__ __forceinline__ void st4(bf16* p, const float* v) {
  u32x2 u;
  u.x = (unsigned)f32_to_bf16_bits(v[0]) | ((unsigned)f32_to_bf16_bits(v[1]) << 16);
  u.y = (unsigned)f32_to_bf16_bits(v[2]) | ((unsigned)f32_to_bf16_bits(v[3]) << 16);
  *reinterpret_cast<u32x2*>(p) = u;
}
/** Adds value x to a running (max m, sum of exp(. - m) s). */
__device__ __forceinline__ void online_add(float x, float* m, float* s) {
  if (x > *m) {
    *s = *s * expf(*m - x) + 1.f;
    *m = x;
  } else {
    *s += expf(x - *m);
  }
}

#define CE_ROWS(ng, G)                                                                             \
  extern "C" __global__ void cross_entropy_rows_##ng(const float* logits, G* dlogits,              \
                                                     float* losses, const int* targets, int vocab, \
                                                     float scale, int want_grad, int vec) {        \
    const i64 row = blockIdx.x;                                                                    \
    const float* lr = logits + row * vocab;                                                        \
    G* dr = dlogits + row * vocab;                                                                 \
    const int target = targets[row];                                                               \
    if (target < 0) {                                                                              \
      if (threadIdx.x == 0) losses[row] = 0.f;                                                     \
      if (want_grad) for (int j = threadIdx.x; j < vocab; j += blockDim.x) stf(dr + j, 0.f);       \
      return;                                                                                      \
    }                                                                                              \
    float m = -F32_INFINITY, s = 0.f;                                                              \
    if (vec) {                                                                                     \
      for (int j = threadIdx.x * 4; j < vocab; j += blockDim.x * 4) {                              \
        const u32x4 u = *reinterpret_cast<const u32x4*>(lr + j);                                   \
        online_add(__uint_as_float(u.x), &m, &s);                                                  \
        online_add(__uint_as_float(u.y), &m, &s);                                                  \
        online_add(__uint_as_float(u.z), &m, &s);                                                  \
        online_add(__uint_as_float(u.w), &m, &s);                                                  \
      }                                                                                            \
    } else {                                                                                       \
      for (int j = threadIdx.x; j < vocab; j += blockDim.x) online_add(lr[j], &m, &s);             \
    }                                                                                              \
    const float row_max = block_max(m);                                                            \
    const float lse = row_max + logf(block_sum(s > 0.f ? s * expf(m - row_max) : 0.f));            \
    if (threadIdx.x == 0) losses[row] = target < vocab ? lse - lr[target] : F32_NAN;               \
    __syncthreads();                                                                               \
    if (!want_grad) return;                                                                        \
    if (vec) {                                                                                     \
      for (int j = threadIdx.x * 4; j < vocab; j += blockDim.x * 4) {                              \
        const u32x4 u = *reinterpret_cast<const u32x4*>(lr + j);                                   \
        float p[4] = {__uint_as_float(u.x), __uint_as_float(u.y), __uint_as_float(u.z), __uint_as_float(u.w)}; \
        _Pragma("unroll") for (int k = 0; k < 4; k++) p[k] = scale * (expf(p[k] - lse) - (j + k == target ? 1.f : 0.f)); \
        st4(dr + j, p);                                                                            \
      }                                                                                            \
    } else {                                                                                       \
      for (int j = threadIdx.x; j < vocab; j += blockDim.x) {                                      \
        stf(dr + j, scale * (expf(lr[j] - lse) - (j == target ? 1.f : 0.f)));                      \
      }                                                                                            \
    }                                                                                              \
  }
EACH1(CE_ROWS)

// The same for V <= 32768 (e.g. 32000), V % 4 == 0 and aligned rows, one pass over the logits:
// persistent blocks of THREADS threads (grid <= rows) take rows blockIdx.x, + gridDim.x, ...; the
// current row is held in registers (CHUNKS float4 per thread) while the next row is copied with
// cp.async into dynamic shared memory (V * 4 bytes), so its loads overlap this row's reductions and
// stores. Each thread copies and reads back only its own float4s, so its own cp.async wait suffices.
// Uses fa_smem / fa_cp16 / fa_cp_commit / fa_cp_wait of flash_attention_mma.cu (concatenated before).
extern __shared__ u32x4 ce_shared[];

/** Starts the copy of this thread's float4s of row `lr` into shared memory. */
template <int THREADS, int CHUNKS>
__device__ __forceinline__ void ce_fetch(u32 base, const float* lr, int vocab) {
#pragma unroll
  for (int c = 0; c < CHUNKS; c++) {
    const int j = (c * THREADS + threadIdx.x) * 4;
    if (j < vocab) fa_cp16(base + 4u * (u32)j, lr + j, 16);
  }
}

/** Combines running (max m, sum of exp(. - m) s) pairs over the block; every thread gets the result. */
__device__ __forceinline__ void block_max_sum(float* m, float* s) {
  __shared__ float partial_m[32], partial_s[32];
  for (int o = 16; o > 0; o >>= 1) {
    const float om = __shfl_xor_sync(0xffffffffu, *m, o), os = __shfl_xor_sync(0xffffffffu, *s, o);
    const float mm = fmaxf(*m, om);
    *s = (*s > 0.f ? *s * expf(*m - mm) : 0.f) + (os > 0.f ? os * expf(om - mm) : 0.f);
    *m = mm;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) partial_m[warp] = *m, partial_s[warp] = *s;
  __syncthreads();
  *m = lane < (int)(blockDim.x >> 5) ? partial_m[lane] : -F32_INFINITY;
  *s = lane < (int)(blockDim.x >> 5) ? partial_s[lane] : 0.f;
  for (int o = 16; o > 0; o >>= 1) {
    const float om = __shfl_xor_sync(0xffffffffu, *m, o), os = __shfl_xor_sync(0xffffffffu, *s, o);
    const float mm = fmaxf(*m, om);
    *s = (*s > 0.f ? *s * expf(*m - mm) : 0.f) + (os > 0.f ? os * expf(om - mm) : 0.f);
    *m = mm;
  }
}

template <int THREADS, int CHUNKS, typename G>
__device__ __forceinline__ void ce_rows_prefetch(const float* logits, G* dlogits, float* losses,
                                                 const int* targets, int rows, int vocab, float scale,
                                                 int want_grad) {
  const u32 base = fa_smem(ce_shared);
  int row = blockIdx.x;
  int target = row < rows ? targets[row] : -1;
  if (target >= 0) ce_fetch<THREADS, CHUNKS>(base, logits + (i64)row * vocab, vocab);
  fa_cp_commit();
  for (; row < rows; row += gridDim.x) {
    // The next row's target is loaded now, so its latency overlaps this row's wait.
    const int next = row + gridDim.x, next_target = next < rows ? targets[next] : -1;
    G* dr = dlogits + (i64)row * vocab;
    if (target < 0) {
      if (next_target >= 0) ce_fetch<THREADS, CHUNKS>(base, logits + (i64)next * vocab, vocab);
      fa_cp_commit();
      if (threadIdx.x == 0) losses[row] = 0.f;
      if (want_grad) for (int j = threadIdx.x; j < vocab; j += THREADS) stf(dr + j, 0.f);
      target = next_target;
      continue;
    }
    fa_cp_wait<0>();
    asm volatile("" ::: "memory");  // the shared reads below stay after the wait
    u32x4 held[CHUNKS];
    float m = -F32_INFINITY;
#pragma unroll
    for (int c = 0; c < CHUNKS; c++) {
      const int j = (c * THREADS + threadIdx.x) * 4;
      if (j < vocab) {
        held[c] = ce_shared[j >> 2];
        m = fmaxf(m, fmaxf(fmaxf(__uint_as_float(held[c].x), __uint_as_float(held[c].y)),
                           fmaxf(__uint_as_float(held[c].z), __uint_as_float(held[c].w))));
      }
    }
    // The shared reads above are consumed (m) before the next row's copy overwrites their addresses.
    asm volatile("" ::"f"(m) : "memory");
    if (next_target >= 0) ce_fetch<THREADS, CHUNKS>(base, logits + (i64)next * vocab, vocab);
    fa_cp_commit();
    float s = 0.f;
#pragma unroll
    for (int c = 0; c < CHUNKS; c++) {
      const int j = (c * THREADS + threadIdx.x) * 4;
      if (j < vocab) {
        s += expf(__uint_as_float(held[c].x) - m) + expf(__uint_as_float(held[c].y) - m) +
             expf(__uint_as_float(held[c].z) - m) + expf(__uint_as_float(held[c].w) - m);
      }
    }
    block_max_sum(&m, &s);
    const float lse = m + logf(s);
    if (target >= vocab && threadIdx.x == 0) losses[row] = F32_NAN;
#pragma unroll
    for (int c = 0; c < CHUNKS; c++) {
      const int j = (c * THREADS + threadIdx.x) * 4;
      if (j < vocab) {
        float p[4] = {__uint_as_float(held[c].x), __uint_as_float(held[c].y), __uint_as_float(held[c].z),
                      __uint_as_float(held[c].w)};
        const int k = target - j;
        if (k >= 0 && k < 4) losses[row] = lse - (k == 0 ? p[0] : k == 1 ? p[1] : k == 2 ? p[2] : p[3]);
        if (want_grad) {
#pragma unroll
          for (int k = 0; k < 4; k++) p[k] = scale * (expf(p[k] - lse) - (j + k == target ? 1.f : 0.f));
          st4(dr + j, p);
        }
      }
    }
    target = next_target;
  }
}

// Both shapes hold CHUNKS * 4 * THREADS = 32768 floats per row; the engine launches the 1024-thread
// one, bench/gpu_ops measures both (ptxas: 64 and ~120 registers, no spills).
#define CE_ROWS_PREFETCH(ng, G)                                                                    \
  extern "C" __global__ void __launch_bounds__(1024, 1) cross_entropy_rows_prefetch_##ng(         \
      const float* logits, G* dlogits, float* losses, const int* targets, int rows, int vocab,     \
      float scale, int want_grad) {                                                                \
    ce_rows_prefetch<1024, 8>(logits, dlogits, losses, targets, rows, vocab, scale, want_grad);    \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(512, 1) cross_entropy_rows_prefetch512_##ng(       \
      const float* logits, G* dlogits, float* losses, const int* targets, int rows, int vocab,     \
      float scale, int want_grad) {                                                                \
    ce_rows_prefetch<512, 16>(logits, dlogits, losses, targets, rows, vocab, scale, want_grad);    \
  }
EACH1(CE_ROWS_PREFETCH)

// For 32768 < V <= CE_CLUSTER * 4 * CHUNKS * THREADS (Llama-3's 128256, Qwen's 151936), V % 4 == 0 and
// aligned rows, one pass over the logits: a cluster of CE_CLUSTER blocks holds one row in registers, block
// k of the cluster a slice of `slice` floats (a multiple of 4). Each block reduces its slice to (max, sum),
// puts it in its shared memory, and after a cluster barrier every thread combines all blocks' pairs read
// through distributed shared memory (mapa + ld.shared::cluster). With 512 threads two blocks share an SM,
// so one's loads overlap the other's reductions and stores. PTX: sm_90 clusters.
#define CE_CLUSTER 8

/** Arrive at / wait on the cluster barrier (every thread of every block; release / acquire). */
__device__ __forceinline__ void ce_cluster_arrive() { asm volatile("barrier.cluster.arrive.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void ce_cluster_wait() { asm volatile("barrier.cluster.wait.aligned;\n" ::: "memory"); }

/** The (max, sum) pair at `local`'s address in the shared memory of cluster block `rank`. */
__device__ __forceinline__ void ce_cluster_load(const float* local, unsigned rank, float* m, float* s) {
  u32 remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(fa_smem(local)), "r"(rank));
  asm volatile("ld.shared::cluster.v2.f32 {%0, %1}, [%2];\n" : "=f"(*m), "=f"(*s) : "r"(remote) : "memory");
}

template <int THREADS, int CHUNKS, typename G>
__device__ __forceinline__ void ce_rows_cluster(const float* logits, G* dlogits, float* losses,
                                                const int* targets, int vocab, int slice, float scale,
                                                int want_grad) {
  __shared__ __align__(8) float pair[2];
  const i64 row = blockIdx.x / CE_CLUSTER;
  const int rank = blockIdx.x % CE_CLUSTER, lo = rank * slice, hi = imin(vocab, lo + slice);
  const float* lr = logits + row * vocab;
  G* dr = dlogits + row * vocab;
  const int target = targets[row];
  // Loaded before the target is known (its latency overlaps theirs), even for ignored rows.
  u32x4 held[CHUNKS];
#pragma unroll
  for (int c = 0; c < CHUNKS; c++) {
    const int j = lo + (c * THREADS + threadIdx.x) * 4;
    if (j < hi) held[c] = *reinterpret_cast<const u32x4*>(lr + j);
  }
  if (target < 0) {
    if (rank == 0 && threadIdx.x == 0) losses[row] = 0.f;
    if (want_grad) for (int j = lo + threadIdx.x; j < hi; j += THREADS) stf(dr + j, 0.f);
    return;
  }
  float m = -F32_INFINITY, s = 0.f;
#pragma unroll
  for (int c = 0; c < CHUNKS; c++) {
    const int j = lo + (c * THREADS + threadIdx.x) * 4;
    if (j < hi) {
      m = fmaxf(m, fmaxf(fmaxf(__uint_as_float(held[c].x), __uint_as_float(held[c].y)),
                         fmaxf(__uint_as_float(held[c].z), __uint_as_float(held[c].w))));
    }
  }
#pragma unroll
  for (int c = 0; c < CHUNKS; c++) {
    const int j = lo + (c * THREADS + threadIdx.x) * 4;
    if (j < hi) {
      s += expf(__uint_as_float(held[c].x) - m) + expf(__uint_as_float(held[c].y) - m) +
           expf(__uint_as_float(held[c].z) - m) + expf(__uint_as_float(held[c].w) - m);
    }
  }
  block_max_sum(&m, &s);
  if (threadIdx.x == 0) pair[0] = m, pair[1] = s;
  ce_cluster_arrive();
  ce_cluster_wait();
  m = -F32_INFINITY, s = 0.f;
#pragma unroll
  for (int k = 0; k < CE_CLUSTER; k++) {
    float om, os;
    ce_cluster_load(pair, k, &om, &os);
    const float mm = fmaxf(m, om);
    s = (s > 0.f ? s * expf(m - mm) : 0.f) + (os > 0.f ? os * expf(om - mm) : 0.f);
    m = mm;
  }
  // No block may leave while another still reads its pair: arrive now, wait before returning.
  ce_cluster_arrive();
  const float lse = m + logf(s);
  if (target >= vocab && rank == 0 && threadIdx.x == 0) losses[row] = F32_NAN;
#pragma unroll
  for (int c = 0; c < CHUNKS; c++) {
    const int j = lo + (c * THREADS + threadIdx.x) * 4;
    if (j < hi) {
      float p[4] = {__uint_as_float(held[c].x), __uint_as_float(held[c].y), __uint_as_float(held[c].z),
                    __uint_as_float(held[c].w)};
      const int k = target - j;
      if (k >= 0 && k < 4) losses[row] = lse - (k == 0 ? p[0] : k == 1 ? p[1] : k == 2 ? p[2] : p[3]);
      if (want_grad) {
#pragma unroll
        for (int k = 0; k < 4; k++) p[k] = scale * (expf(p[k] - lse) - (j + k == target ? 1.f : 0.f));
        st4(dr + j, p);
      }
    }
  }
  ce_cluster_wait();
}

// The engine launches the 512-thread shape up to V = 131072 (two blocks per SM) and the 1024-thread one
// above (up to 262144, one block per SM); bench/gpu_ops measures both at V = 128256.
#define CE_ROWS_CLUSTER(ng, G)                                                                     \
  extern "C" __global__ void __cluster_dims__(CE_CLUSTER, 1, 1) __launch_bounds__(512, 2)          \
      cross_entropy_rows_cluster512_##ng(const float* logits, G* dlogits, float* losses,           \
                                         const int* targets, int vocab, int slice, float scale,    \
                                         int want_grad) {                                          \
    ce_rows_cluster<512, 8>(logits, dlogits, losses, targets, vocab, slice, scale, want_grad);     \
  }                                                                                                \
  extern "C" __global__ void __cluster_dims__(CE_CLUSTER, 1, 1) __launch_bounds__(1024, 1)         \
      cross_entropy_rows_cluster1024_##ng(const float* logits, G* dlogits, float* losses,          \
                                          const int* targets, int vocab, int slice, float scale,   \
                                          int want_grad) {                                         \
    ce_rows_cluster<1024, 8>(logits, dlogits, losses, targets, vocab, slice, scale, want_grad);    \
  }
EACH1(CE_ROWS_CLUSTER)
