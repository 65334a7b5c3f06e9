// The softmax / cross-entropy step of the fused lm head: for one chunk of rows of f32 logits [R, V]
// stored with a row stride of `stride` >= V elements (made by a cuBLASLt GEMM with ldc = stride),
// writes each row's loss and, when asked, dlogits = scale * (softmax - onehot(target)) (same stride;
// in place when dlogits is the f32 logits buffer). Padding columns [V, stride) are never read as
// logits (they may hold anything): the last float4 of a row masks its columns past V to -inf, so they
// add nothing to the max and sum and their gradient comes out 0 (written only where a float4 store
// covers them; the dhidden / dweight GEMMs read dlogits with k = V or m = V and lda = stride, so
// padding is never read and the rest of it stays untouched). Two kernels, picked by the host: aligned
// rows (stride % 4 == 0) and V at most 8 slices of a block (about 57000 columns each with 227 KB of
// shared memory; the host decides): persistent blocks (a cluster of 2..8 blocks per row above one
// slice) prefetching rows, reading the logits once; any other row: two passes, block per row, one pass
// for the running max and sum of exponentials, one for the gradient; 4 elements per access with `vec`
// (stride % 4 == 0, aligned). Exponentials go through the hardware 2^x on x * log2(e) (fa_exp2,
// FA_LOG2E of flash_attention_mma.cu, concatenated before).

struct alignas(8) u32x2 {
  unsigned x, y;
};
__device__ __forceinline__ void st4(float* p, const float* v) {
  u32x4 u;
  u.x = __float_as_uint(v[0]), u.y = __float_as_uint(v[1]), u.z = __float_as_uint(v[2]), u.w = __float_as_uint(v[3]);
  *reinterpret_cast<u32x4*>(p) = u;
}
/** Four f32 rounded to bf16 (nearest even, one cvt per pair: fa_pack) in one 8-byte store. */
__device__ __forceinline__ void st4(bf16* p, const float* v) {
  u32x2 u;
  u.x = fa_pack(v[0], v[1]);
  u.y = fa_pack(v[2], v[3]);
  *reinterpret_cast<u32x2*>(p) = u;
}
/** The float4 u of columns [j, j + 4) with those at or past `valid` = V - j (the row's padding) set to
 * -inf, so they add nothing to a max or a sum of exponentials and get a zero gradient; valid >= 1. */
__device__ __forceinline__ u32x4 ce_mask4(u32x4 u, int valid) {
  const unsigned neg_inf = 0xff800000u;
  u.y = valid > 1 ? u.y : neg_inf;
  u.z = valid > 2 ? u.z : neg_inf;
  u.w = valid > 3 ? u.w : neg_inf;
  return u;
}
/** e^x through the hardware 2^x (2 ulp; results below 2^-126 flushed to 0; e^-inf = 0). */
__device__ __forceinline__ float ce_exp(float x) { return fa_exp2(x * FA_LOG2E); }
/** e^(x - c) given c2 = c * log2(e): one fused multiply-add and the hardware 2^x. */
__device__ __forceinline__ float ce_exp_minus(float x, float c2) { return fa_exp2(fmaf(x, FA_LOG2E, -c2)); }

/** Adds value x to a running (max m, sum of e^(. - m) s). */
__device__ __forceinline__ void online_add(float x, float* m, float* s) {
  if (x > *m) {
    *s = *s * ce_exp(*m - x) + 1.f;
    *m = x;
  } else {
    *s += ce_exp(x - *m);
  }
}
/** Adds four values to a running (max m, sum of e^(. - m) s): at most one rescale, four exponentials. */
__device__ __forceinline__ void online_add4(u32x4 u, float* m, float* s) {
  const float a = __uint_as_float(u.x), b = __uint_as_float(u.y), c = __uint_as_float(u.z),
              d = __uint_as_float(u.w);
  const float mm = fmaxf(*m, fmaxf(fmaxf(a, b), fmaxf(c, d)));
  if (mm > *m) {
    *s *= ce_exp(*m - mm);
    *m = mm;
  }
  const float m2 = mm * FA_LOG2E;
  *s += (ce_exp_minus(a, m2) + ce_exp_minus(b, m2)) + (ce_exp_minus(c, m2) + ce_exp_minus(d, m2));
}

#define CE_ROWS(ng, G)                                                                             \
  extern "C" __global__ void cross_entropy_rows_##ng(const float* logits, G* dlogits,              \
                                                     float* losses, const int* targets, int vocab, \
                                                     int stride, float scale, int want_grad,       \
                                                     int vec) {                                    \
    const i64 row = blockIdx.x;                                                                    \
    const float* lr = logits + row * stride;                                                       \
    G* dr = dlogits + row * stride;                                                                \
    const int target = targets[row];                                                               \
    if (target < 0) {                                                                              \
      if (threadIdx.x == 0) losses[row] = 0.f;                                                     \
      if (want_grad) for (int j = threadIdx.x; j < vocab; j += blockDim.x) stf(dr + j, 0.f);       \
      return;                                                                                      \
    }                                                                                              \
    float m = -F32_INFINITY, s = 0.f;                                                              \
    if (vec) {                                                                                     \
      for (int j = threadIdx.x * 4; j < vocab; j += blockDim.x * 4) {                              \
        online_add4(ce_mask4(*reinterpret_cast<const u32x4*>(lr + j), vocab - j), &m, &s);         \
      }                                                                                            \
    } else {                                                                                       \
      for (int j = threadIdx.x; j < vocab; j += blockDim.x) online_add(lr[j], &m, &s);             \
    }                                                                                              \
    const float row_max = block_max(m);                                                            \
    const float lse = row_max + logf(block_sum(s > 0.f ? s * ce_exp(m - row_max) : 0.f));          \
    const float lse2 = lse * FA_LOG2E;                                                             \
    if (threadIdx.x == 0) losses[row] = target < vocab ? lse - lr[target] : F32_NAN;               \
    __syncthreads();                                                                               \
    if (!want_grad) return;                                                                        \
    const int hot = target < vocab ? target : -1; /* no onehot in the padding */                   \
    if (vec) {                                                                                     \
      for (int j = threadIdx.x * 4; j < vocab; j += blockDim.x * 4) {                              \
        const u32x4 u = ce_mask4(*reinterpret_cast<const u32x4*>(lr + j), vocab - j);              \
        float p[4] = {__uint_as_float(u.x), __uint_as_float(u.y), __uint_as_float(u.z), __uint_as_float(u.w)}; \
        _Pragma("unroll") for (int k = 0; k < 4; k++) p[k] = scale * (ce_exp_minus(p[k], lse2) - (j + k == hot ? 1.f : 0.f)); \
        st4(dr + j, p);                                                                            \
      }                                                                                            \
    } else {                                                                                       \
      for (int j = threadIdx.x; j < vocab; j += blockDim.x) {                                      \
        stf(dr + j, scale * (ce_exp_minus(lr[j], lse2) - (j == target ? 1.f : 0.f)));              \
      }                                                                                            \
    }                                                                                              \
  }
EACH1(CE_ROWS)

// The same for aligned rows (stride % 4 == 0), one pass over the logits: persistent blocks of
// CE_PREFETCH_THREADS threads take rows in turn. A block's slice of the current row: its first
// CE_PREFETCH_HELD columns (CE_PREFETCH_CHUNKS float4 per thread) are held in registers; the overflow
// columns [CE_PREFETCH_HELD, slice) (up to CE_OVERFLOW_CHUNKS float4 per thread) stay in shared memory
// and are read there by the max, sum and gradient loops; a block copies the float4s starting before its
// last column (ceil(width / 4) of them: the last may hold up to 3 padding columns, masked by ce_mask4
// when read). The next row is copied with cp.async into dynamic shared memory (floats [0, slice): the
// held part, then ONE overflow buffer of slice - HELD floats), so its loads overlap this row's work:
// its held part as soon as this row's held columns are in registers, its overflow part once this row's
// overflow gradient (the last reads of the buffer) is written, hidden behind the held gradient and
// the next row's held max and sum (taken before its overflow wait, then rescaled if needed). Each
// thread copies and reads back only its own float4s (ce_col: the same mapping for the copy and the
// reads), so its own cp.async waits suffice: at the top of a row the last two commit groups are this
// row's held part, then its overflow part (an ignored row copies nothing and commits the next row's two
// groups), so wait_group 1 waits for the held part; the next row's held group is committed after it,
// so wait_group 1 again waits for this row's overflow part. Rows wider than one block's slice go to a
// thread-block cluster of CLUSTER blocks (2..8: the host takes the fewest whose slices hold the row, so
// each block moves as many bytes per row barrier as it can; sm_90): block `rank` holds columns
// [rank * slice, + slice). A row's (max, sum) is combined behind ONE barrier per row (a cluster barrier,
// or __syncthreads in a single block): each warp leaves its pair in shared memory, then every warp reads
// all pairs of all the cluster's blocks (distributed shared memory) and merges them (pairs
// double-buffered by row parity, so the next row's barrier is what makes reusing a slot safe); the
// first version took three block barriers plus the cluster barrier per row. Uses fa_smem / fa_cp16 / fa_cp_commit / fa_cp_wait of
// flash_attention_mma.cu (concatenated before). The host sizes the grid to the clusters that can be
// resident at once (cuOccupancyMaxActiveClusters): rows are assigned statically, so a cluster that had
// to wait for a free GPC would add a whole pass at the end.
#define CE_PREFETCH_THREADS 1024
#define CE_PREFETCH_CHUNKS 8
#define CE_PREFETCH_HELD (CE_PREFETCH_CHUNKS * CE_PREFETCH_THREADS * 4)
// 24576 overflow columns: slices up to 57344 columns in 4 * 57344 = 229376 bytes of dynamic shared
// memory (sm_90 allows 232448 per block, static included); CE_OVERFLOW_CHUNKS of cross_entropy_plan.ts.
#define CE_OVERFLOW_CHUNKS 6
extern __shared__ u32x4 ce_shared[];

/** Column of this thread's float4 number `c` (from 0) within the held part or within the overflow. */
__device__ __forceinline__ int ce_col(int c) { return (c * CE_PREFETCH_THREADS + (int)threadIdx.x) * 4; }

/** Starts the copy of this thread's float4s of the held columns of the `width` floats at `lr` into
 * shared floats [0, CE_PREFETCH_HELD) and commits them as one group (empty when `copy` is false). The
 * loops stay rolled: unrolled, their addresses live beside the held registers spilled at 64 registers. */
__device__ __forceinline__ void ce_fetch_held(u32 base, bool copy, const float* lr, int width) {
  if (copy) {
#pragma unroll 1
    for (int c = 0; c < CE_PREFETCH_CHUNKS; c++) {
      const int j = ce_col(c);
      if (j < width) fa_cp16(base + 4u * (u32)j, lr + j, 16);
    }
  }
  fa_cp_commit();
}
/** The same for the overflow columns [CE_PREFETCH_HELD, width) into the overflow buffer (shared floats
 * from CE_PREFETCH_HELD on). */
__device__ __forceinline__ void ce_fetch_overflow(u32 base, bool copy, const float* lr, int width) {
  if (copy) {
#pragma unroll 1
    for (int c = 0; c < CE_OVERFLOW_CHUNKS; c++) {
      const int j = CE_PREFETCH_HELD + ce_col(c);
      if (j < width) fa_cp16(base + 4u * (u32)j, lr + j, 16);
    }
  }
  fa_cp_commit();
}

/** The largest of four floats. */
__device__ __forceinline__ float ce_max4(u32x4 u) {
  return fmaxf(fmaxf(__uint_as_float(u.x), __uint_as_float(u.y)), fmaxf(__uint_as_float(u.z), __uint_as_float(u.w)));
}
/** The sum of e^(x - c) over four floats x, given c2 = c * log2(e). */
__device__ __forceinline__ float ce_sum4(u32x4 u, float c2) {
  return (ce_exp_minus(__uint_as_float(u.x), c2) + ce_exp_minus(__uint_as_float(u.y), c2)) +
         (ce_exp_minus(__uint_as_float(u.z), c2) + ce_exp_minus(__uint_as_float(u.w), c2));
}
/** This thread's overflow float4 number `c` (from the overflow buffer), masked past the block's
 * `width` columns. */
__device__ __forceinline__ u32x4 ce_overflow4(int c, int width) {
  const int j = CE_PREFETCH_HELD + ce_col(c);
  return ce_mask4(ce_shared[j >> 2], width - j);
}
/** Keeps the shared reads that produced u before any later cp.async (asm volatile keeps its order),
 * which may overwrite their addresses: u is in registers by then. */
__device__ __forceinline__ void ce_consumed(u32x4 u) {
  asm volatile("" ::"r"(u.x), "r"(u.y), "r"(u.z), "r"(u.w) : "memory");
}
/** For the four logits u at local columns [j, j + 4) (masked: padding is -inf): writes the row's loss
 * lse - logit if the target is among them, and (want_grad) scale * (softmax - onehot) to dr + j. */
template <typename G>
__device__ __forceinline__ void ce_finish4(u32x4 u, int j, int local_target, float lse, float lse2, float scale,
                                           int want_grad, G* dr, float* loss) {
  float p[4] = {__uint_as_float(u.x), __uint_as_float(u.y), __uint_as_float(u.z), __uint_as_float(u.w)};
  const int k = local_target - j;
  if (k >= 0 && k < 4) *loss = lse - (k == 0 ? p[0] : k == 1 ? p[1] : k == 2 ? p[2] : p[3]);
  if (want_grad) {
#pragma unroll
    for (int k = 0; k < 4; k++) p[k] = scale * (ce_exp_minus(p[k], lse2) - (j + k == local_target ? 1.f : 0.f));
    st4(dr + j, p);
  }
}

/** Merges the running (max, sum of e^(. - max)) pair (om, os) into (m, s); empty pairs have s = 0. */
__device__ __forceinline__ void merge_max_sum(float* m, float* s, float om, float os) {
  const float mm = fmaxf(*m, om);
  *s = (*s > 0.f ? *s * ce_exp(*m - mm) : 0.f) + (os > 0.f ? os * ce_exp(om - mm) : 0.f);
  *m = mm;
}

/** Merges the (max, sum) pairs of a warp's 32 lanes; every lane gets the result. */
__device__ __forceinline__ void warp_max_sum(float* m, float* s) {
  for (int o = 16; o > 0; o >>= 1) {
    merge_max_sum(m, s, __shfl_xor_sync(0xffffffffu, *m, o), __shfl_xor_sync(0xffffffffu, *s, o));
  }
}

// Thread-block clusters exist from sm_90 on: below it the cluster helpers compile to nothing and only
// the one-block kernel is built (the host plans no clusters there: cross_entropy_plan.ts).
/** This block's rank in its cluster. */
__device__ __forceinline__ int ce_cluster_rank() {
  u32 r = 0;
#if __CUDA_ARCH__ >= 900
  asm("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
#endif
  return (int)r;
}
/** Cluster-wide barrier: shared-memory writes before it are visible to every block after it. */
__device__ __forceinline__ void ce_cluster_sync() {
#if __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#endif
}
/** The two floats at `local`'s shared address in the shared memory of cluster block `rank`. */
__device__ __forceinline__ void ce_cluster_load2(const float* local, int rank, float* a, float* b) {
#if __CUDA_ARCH__ >= 900
  u32 remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(fa_smem(local)), "r"((u32)rank));
  asm volatile("ld.shared::cluster.v2.f32 {%0, %1}, [%2];\n" : "=f"(*a), "=f"(*b) : "r"(remote) : "memory");
#endif
}

template <int CLUSTER, typename G>
__device__ __forceinline__ void ce_rows_prefetch(const float* logits, G* dlogits, float* losses,
                                                 const int* targets, int rows, int vocab, int stride,
                                                 int slice, float scale, int want_grad) {
  // Each warp's (max, sum) of the row by row parity: a slot is written again two rows later, after the
  // next row's barrier, which no thread (of any block of the cluster) passes before reading this one.
  __shared__ float2 pair[2][CE_PREFETCH_THREADS / 32];
  const u32 base = fa_smem(ce_shared);
  const int rank = CLUSTER > 1 ? ce_cluster_rank() : 0;
  const int first = rank * slice, width = imin(slice, vocab - first); // this block's columns
  const int step = gridDim.x / CLUSTER; // rows between this block's rows
  // parity: of the rows this block has read so far; it picks this row's (max, sum) slot (an ignored
  // row, the same in every block of the cluster, exchanges nothing).
  int row = blockIdx.x / CLUSTER, parity = 0;
  int target = row < rows ? targets[row] : -1;
  ce_fetch_held(base, target >= 0, logits + (i64)row * stride + first, width);
  ce_fetch_overflow(base, target >= 0, logits + (i64)row * stride + first, width);
  for (; row < rows; row += step) {
    // The next row's target is loaded now, so its latency overlaps this row's wait.
    const int next = row + step, next_target = next < rows ? targets[next] : -1;
    const float* next_lr = logits + (i64)next * stride + first;
    if (target < 0) { // the same in every block of the cluster: no barrier on either side
      // This row copied nothing: the buffers are free (the rows before read theirs before this point).
      ce_fetch_held(base, next_target >= 0, next_lr, width);
      ce_fetch_overflow(base, next_target >= 0, next_lr, width);
      if (threadIdx.x == 0 && rank == 0) losses[row] = 0.f;
      G* dr = dlogits + (i64)row * stride + first;
      if (want_grad) for (int j = threadIdx.x; j < width; j += CE_PREFETCH_THREADS) stf(dr + j, 0.f);
      target = next_target;
      continue;
    }
    fa_cp_wait<1>(); // this row's held part (its overflow part, the last group, may still be in flight)
    asm volatile("" ::: "memory"); // the shared reads below stay after the wait
    u32x4 held[CE_PREFETCH_CHUNKS];
    float m = -F32_INFINITY;
#pragma unroll
    for (int c = 0; c < CE_PREFETCH_CHUNKS; c++) {
      const int j = ce_col(c);
      if (j < width) {
        held[c] = ce_mask4(ce_shared[j >> 2], width - j);
        m = fmaxf(m, ce_max4(held[c]));
      }
    }
    // The held reads above are consumed (m) before the next row's copy overwrites their addresses.
    asm volatile("" ::"f"(m) : "memory");
    ce_fetch_held(base, next_target >= 0, next_lr, width);
    // The held part's sum before the overflow wait gives this row's overflow copy (issued late) more
    // time; m is finite wherever a sum is taken (a float4's first column is never masked).
    float s = 0.f;
#pragma unroll
    for (int c = 0; c < CE_PREFETCH_CHUNKS; c++) {
      if (ce_col(c) < width) s += ce_sum4(held[c], m * FA_LOG2E);
    }
    fa_cp_wait<1>(); // this row's overflow part (the next row's held part may still be in flight)
    asm volatile("" ::: "memory");
    float mo = -F32_INFINITY;
#pragma unroll
    for (int c = 0; c < CE_OVERFLOW_CHUNKS; c++) {
      if (CE_PREFETCH_HELD + ce_col(c) < width) mo = fmaxf(mo, ce_max4(ce_overflow4(c, width)));
    }
    if (mo > m) { // only threads with overflow columns; s = 0 stays 0 when m = -inf (e^-inf = 0)
      s *= ce_exp(m - mo);
      m = mo;
    }
    const float m2 = m * FA_LOG2E;
#pragma unroll
    for (int c = 0; c < CE_OVERFLOW_CHUNKS; c++) {
      if (CE_PREFETCH_HELD + ce_col(c) < width) s += ce_sum4(ce_overflow4(c, width), m2);
    }
    // The row's (max, sum) over the cluster behind one barrier: each warp's pair into slot `parity`,
    // then every warp merges all pairs (lane i: warp i's pair of each block).
    warp_max_sum(&m, &s);
    const int lane = threadIdx.x & 31;
    if (lane == 0) pair[parity][threadIdx.x >> 5] = make_float2(m, s);
    if (CLUSTER > 1) {
      ce_cluster_sync();
      m = -F32_INFINITY, s = 0.f;
#pragma unroll
      for (int r = 0; r < CLUSTER; r++) {
        float om, os;
        ce_cluster_load2(&pair[parity][lane].x, r, &om, &os);
        merge_max_sum(&m, &s, om, os);
      }
    } else {
      __syncthreads();
      m = pair[parity][lane].x, s = pair[parity][lane].y;
    }
    warp_max_sum(&m, &s);
    parity ^= 1;
    const float lse = m + logf(s), lse2 = lse * FA_LOG2E;
    if (target >= vocab && threadIdx.x == 0 && rank == 0) losses[row] = F32_NAN;
    // A target past V (NaN loss) must not meet a padding column of the last float4: no onehot then.
    const int local_target = target < vocab ? target - first : -1;
    G* dr = dlogits + (i64)row * stride + first;
    // The overflow part first: its reads are the buffer's last for this row, then the next row's
    // overflow copy starts and the held part's gradient (from registers) hides its latency.
#pragma unroll
    for (int c = 0; c < CE_OVERFLOW_CHUNKS; c++) {
      const int j = CE_PREFETCH_HELD + ce_col(c);
      if (j < width) {
        const u32x4 u = ce_overflow4(c, width);
        ce_consumed(u);
        ce_finish4(u, j, local_target, lse, lse2, scale, want_grad, dr, losses + row);
      }
    }
    ce_fetch_overflow(base, next_target >= 0, next_lr, width);
#pragma unroll
    for (int c = 0; c < CE_PREFETCH_CHUNKS; c++) {
      const int j = ce_col(c);
      if (j < width) ce_finish4(held[c], j, local_target, lse, lse2, scale, want_grad, dr, losses + row);
    }
    target = next_target;
  }
  if (CLUSTER > 1) ce_cluster_sync(); // no block leaves while another may still read its pairs
}

#define CE_ROWS_PREFETCH_PARAMS(G)                                                                 \
  const float *logits, G *dlogits, float *losses, const int *targets, int rows, int vocab, int stride, \
      int slice, float scale, int want_grad
#define CE_ROWS_PREFETCH_CLUSTER(n, ng, G)                                                         \
  extern "C" __global__ void __cluster_dims__(n, 1, 1) __launch_bounds__(CE_PREFETCH_THREADS, 1)   \
      cross_entropy_rows_prefetch##n##_##ng(CE_ROWS_PREFETCH_PARAMS(G)) {                          \
    ce_rows_prefetch<n>(logits, dlogits, losses, targets, rows, vocab, stride, slice, scale, want_grad);   \
  }
#define CE_ROWS_PREFETCH(ng, G)                                                                    \
  extern "C" __global__ void __launch_bounds__(CE_PREFETCH_THREADS, 1)                             \
      cross_entropy_rows_prefetch_##ng(CE_ROWS_PREFETCH_PARAMS(G)) {                               \
    ce_rows_prefetch<1>(logits, dlogits, losses, targets, rows, vocab, stride, slice, scale, want_grad);   \
  }
#define CE_ROWS_PREFETCH_CLUSTERS(ng, G)                                                           \
  CE_ROWS_PREFETCH_CLUSTER(2, ng, G)                                                               \
  CE_ROWS_PREFETCH_CLUSTER(3, ng, G)                                                               \
  CE_ROWS_PREFETCH_CLUSTER(4, ng, G)                                                               \
  CE_ROWS_PREFETCH_CLUSTER(5, ng, G)                                                               \
  CE_ROWS_PREFETCH_CLUSTER(6, ng, G)                                                               \
  CE_ROWS_PREFETCH_CLUSTER(7, ng, G)                                                               \
  CE_ROWS_PREFETCH_CLUSTER(8, ng, G)
EACH1(CE_ROWS_PREFETCH)
#if __CUDA_ARCH__ >= 900
EACH1(CE_ROWS_PREFETCH_CLUSTERS)
#endif
