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

/** Grid-stride loop over i in [0, n). */
#define GRID_LOOP(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

/** Instantiate macro M for each dtype combination of 1, 2 or 3 tensors: M(suffix..., type...). */
#define EACH1(M) M(f32, float) M(bf16, bf16)
#define EACH2(M) M(f32, float, f32, float) M(f32, float, bf16, bf16) M(bf16, bf16, f32, float) M(bf16, bf16, bf16, bf16)
#define EACH3(M)                                                                                   \
  M(f32, float, f32, float, f32, float) M(f32, float, f32, float, bf16, bf16)                      \
  M(f32, float, bf16, bf16, f32, float) M(f32, float, bf16, bf16, bf16, bf16)                      \
  M(bf16, bf16, f32, float, f32, float) M(bf16, bf16, f32, float, bf16, bf16)                      \
  M(bf16, bf16, bf16, bf16, f32, float) M(bf16, bf16, bf16, bf16, bf16, bf16)
