// Helpers shared by every kernel (prepended to each module's source; no CUDA header needed): a bf16
// storage type with f32 conversion, loads/stores that widen to f32, warp/block reductions, atomic
// adds, and the macros that instantiate a kernel for each combination of f32/bf16 tensors.

struct bf16 {
  unsigned short bits;
};
typedef long long i64;
#define F32_INFINITY __int_as_float(0x7f800000)
#define F32_NAN __int_as_float(0x7fc00000)
__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }

/** Rounds to nearest even; NaN stays NaN. */
__device__ __forceinline__ unsigned short f32_to_bf16_bits(float f) {
  unsigned u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (unsigned short)(u >> 16);
}
__device__ __forceinline__ float ldf(const float* p) { return *p; }
__device__ __forceinline__ float ldf(const bf16* p) { return __uint_as_float(((unsigned)p->bits) << 16); }
__device__ __forceinline__ void stf(float* p, float v) { *p = v; }
__device__ __forceinline__ void stf(bf16* p, float v) { p->bits = f32_to_bf16_bits(v); }

__device__ __forceinline__ void atomic_addf(float* p, float v) { atomicAdd(p, v); }
/** bf16 atomic add through a compare-and-swap on the aligned 32-bit word holding it. */
__device__ __forceinline__ void atomic_addf(bf16* p, float v) {
  unsigned* word = (unsigned*)((unsigned long long)p & ~(unsigned long long)3);
  const bool high = ((unsigned long long)p & 2) != 0;
  unsigned old = *word, assumed;
  do {
    assumed = old;
    unsigned short bits = high ? (unsigned short)(assumed >> 16) : (unsigned short)(assumed & 0xffffu);
    unsigned short sum = f32_to_bf16_bits(__uint_as_float(((unsigned)bits) << 16) + v);
    unsigned next = high ? ((assumed & 0xffffu) | ((unsigned)sum << 16)) : ((assumed & 0xffff0000u) | sum);
    old = atomicCAS(word, assumed, next);
  } while (assumed != old);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
/** Sum over the block; every thread gets the total. Blocks are whole warps. */
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[32];
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  return warp_sum(lane < warps ? partial[lane] : 0.f);
}
__device__ __forceinline__ float block_max(float v) {
  __shared__ float partial[32];
  v = warp_max(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  return warp_max(lane < warps ? partial[lane] : -F32_INFINITY);
}

/** 16 bytes: the widest plain load/store (8 bf16 or 4 f32). */
struct alignas(16) u32x4 {
  unsigned x, y, z, w;
};
/** True when `p` may be read or written 16 bytes at a time. */
#define ALIGNED16(p) ((((unsigned long long)(p)) & 15ull) == 0)

/** Loads 8 consecutive elements widened to f32 (16-byte aligned). */
__device__ __forceinline__ void ld8(const bf16* p, float* v) {
  const u32x4 u = *reinterpret_cast<const u32x4*>(p);
  const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int k = 0; k < 4; k++) {
    v[2 * k] = __uint_as_float(w[k] << 16);
    v[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
  }
}
__device__ __forceinline__ void ld8(const float* p, float* v) {
  const u32x4 a = *reinterpret_cast<const u32x4*>(p), b = *reinterpret_cast<const u32x4*>(p + 4);
  v[0] = __uint_as_float(a.x), v[1] = __uint_as_float(a.y), v[2] = __uint_as_float(a.z), v[3] = __uint_as_float(a.w);
  v[4] = __uint_as_float(b.x), v[5] = __uint_as_float(b.y), v[6] = __uint_as_float(b.z), v[7] = __uint_as_float(b.w);
}
/** Stores 8 consecutive f32 values, rounded to the element type (16-byte aligned). */
__device__ __forceinline__ void st8(bf16* p, const float* v) {
  unsigned w[4];
#pragma unroll
  for (int k = 0; k < 4; k++) w[k] = (unsigned)f32_to_bf16_bits(v[2 * k]) | ((unsigned)f32_to_bf16_bits(v[2 * k + 1]) << 16);
  u32x4 u;
  u.x = w[0], u.y = w[1], u.z = w[2], u.w = w[3];
  *reinterpret_cast<u32x4*>(p) = u;
}
__device__ __forceinline__ void st8(float* p, const float* v) {
  u32x4 a, b;
  a.x = __float_as_uint(v[0]), a.y = __float_as_uint(v[1]), a.z = __float_as_uint(v[2]), a.w = __float_as_uint(v[3]);
  b.x = __float_as_uint(v[4]), b.y = __float_as_uint(v[5]), b.z = __float_as_uint(v[6]), b.w = __float_as_uint(v[7]);
  *reinterpret_cast<u32x4*>(p) = a;
  *reinterpret_cast<u32x4*>(p + 4) = b;
}

/** q = i / d and *r = i % d, in 32-bit arithmetic whenever i fits (64-bit division is far slower). */
__device__ __forceinline__ i64 divmod(i64 i, int d, int* r) {
  if (i <= 0xffffffffll) {
    const unsigned q = (unsigned)i / (unsigned)d;
    *r = (int)((unsigned)i - q * (unsigned)d);
    return q;
  }
  const i64 q = i / d;
  *r = (int)(i - q * d);
  return q;
}

/** Grid-stride loop over i in [0, n). */
#define GRID_LOOP(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

/**
 * Runs `body8(i)` on elements i..i+7 (when `aligned`: every pointer 16-byte aligned) and `body1(i)` on
 * single elements (the tail, or everything when not aligned), grid-stride.
 */
template <typename Body8, typename Body1>
__device__ __forceinline__ void elementwise(i64 n, bool aligned, Body8 body8, Body1 body1) {
  i64 done = 0;
  if (aligned) {
    const i64 chunks = n >> 3;
    GRID_LOOP(c, chunks) body8(c << 3);
    done = chunks << 3;
  }
  for (i64 i = done + (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) body1(i);
}

/** Warps of a column-reduction block (they split the rows; the 32 lanes split the columns). */
#define COLUMN_WARPS 8

/**
 * Column sums of a [rows, width] block of rows (rows blockIdx.y * rows_per_block + ...): lane l of
 * every warp owns `step` (1 or 8) adjacent columns starting at (blockIdx.x * 32 + l) * step, warps
 * take every COLUMN_WARPS-th row, `add_row(r, col, sum)` adds row r's values into sum[0..step), and
 * the warps' partial sums meet in shared memory: one atomic add into out[col + k] per block.
 */
template <typename Out, typename AddRow>
__device__ __forceinline__ void column_reduce(Out* out, int rows, int width, int rows_per_block, int step,
                                              AddRow add_row) {
  __shared__ float partial[COLUMN_WARPS][32][9];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int col = (blockIdx.x * 32 + lane) * step;
  float sum[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  if (col < width) {
    const int start = blockIdx.y * rows_per_block, end = imin(rows, start + rows_per_block);
#pragma unroll 4
    for (int r = start + warp; r < end; r += COLUMN_WARPS) add_row(r, col, sum);
  }
#pragma unroll
  for (int k = 0; k < 8; k++) partial[warp][lane][k] = sum[k];
  __syncthreads();
  if (warp == 0 && col < width) {
#pragma unroll
    for (int k = 0; k < 8; k++) {
      float total = 0.f;
#pragma unroll
      for (int w = 0; w < COLUMN_WARPS; w++) total += partial[w][lane][k];
      if (k < step) atomic_addf(out + col + k, total);
    }
  }
}

/** Instantiate macro M for each dtype combination of 1, 2 or 3 tensors: M(suffix..., type...). */
#define EACH1(M) M(f32, float) M(bf16, bf16)
#define EACH2(M) M(f32, float, f32, float) M(f32, float, bf16, bf16) M(bf16, bf16, f32, float) M(bf16, bf16, bf16, bf16)
#define EACH3(M)                                                                                   \
  M(f32, float, f32, float, f32, float) M(f32, float, f32, float, bf16, bf16)                      \
  M(f32, float, bf16, bf16, f32, float) M(f32, float, bf16, bf16, bf16, bf16)                      \
  M(bf16, bf16, f32, float, f32, float) M(bf16, bf16, f32, float, bf16, bf16)                      \
  M(bf16, bf16, bf16, bf16, f32, float) M(bf16, bf16, bf16, bf16, bf16, bf16)
