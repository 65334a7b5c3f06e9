// Tensor-core building blocks of the flash-attention kernels (sm_80+ PTX, no CUDA header): shared
// addresses, cp.async 16-byte copies, ldmatrix (plain and transposed), mma.sync m16n8k16 bf16 -> f32,
// bf16x2 packing and exp2. Fragment layouts are those of the PTX ISA for mma.m16n8k16 (.bf16):
// lane = 4 * g + c; A regs {row g, row g+8} x {cols 2c.., 8+2c..}; B regs {k 2c.., k 8+2c..} at col g;
// C/D {c0,c1} at row g, cols 2c, 2c+1 and {c2,c3} at row g+8.

typedef unsigned u32;

#define FA_LOG2E 1.4426950408889634f
#define FA_LN2 0.6931471805599453f
/** Elements of padding after each shared-memory row: rows 16 bytes apart in bank terms, so the eight
 * row addresses of one ldmatrix hit distinct banks. */
#define FA_PAD 8

/** Shared-memory address (32-bit) of a generic pointer into shared memory. */
__device__ __forceinline__ u32 fa_smem(const void* p) {
  u32 r;
  asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(r) : "l"(p));
  return r;
}

/** Copies 16 bytes global -> shared asynchronously; `bytes` 0 writes 16 zero bytes instead. */
__device__ __forceinline__ void fa_cp16(u32 dst, const void* src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
/** Copies 4 bytes global -> shared asynchronously; `bytes` 0 writes zeros instead. */
__device__ __forceinline__ void fa_cp4(u32 dst, const void* src, int bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void fa_cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
/** Waits until at most N of this thread's cp.async groups are still in flight. */
template <int N>
__device__ __forceinline__ void fa_cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/** Four 8x8 bf16 matrices from shared memory; lane l gives the address of row l % 8 of matrix l / 8. */
__device__ __forceinline__ void fa_ldsm4(u32 addr, u32* r) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
/** As fa_ldsm4, each matrix transposed. */
__device__ __forceinline__ void fa_ldsm4t(u32 addr, u32* r) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

/** d[16x8] += a[16x16] (row) * b[16x8] (col), bf16 inputs, f32 accumulation. */
__device__ __forceinline__ void fa_mma(float* d, const u32* a, u32 b0, u32 b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/** Adds 4 consecutive f32 at `p` (16-byte aligned): one vector reduction on sm_90 and later, four scalar
 * ones before (vector reductions need sm_90). */
__device__ __forceinline__ void fa_red4(float* p, float a, float b, float c, float d) {
#if __CUDA_ARCH__ >= 900
  asm volatile("red.global.add.v4.f32 [%0], {%1,%2,%3,%4};\n" ::"l"(p), "f"(a), "f"(b), "f"(c), "f"(d)
               : "memory");
#else
  atomicAdd(p, a), atomicAdd(p + 1, b), atomicAdd(p + 2, c), atomicAdd(p + 3, d);
#endif
}

/** Two f32 rounded to bf16 (nearest even) in one register, `lo` in the low half. */
__device__ __forceinline__ u32 fa_pack(float lo, float hi) {
  u32 r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

/** 2^x (hardware approximation, 2 ulp; 2^-inf = 0). */
__device__ __forceinline__ float fa_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

/** Address of the A fragment (16x16 at row m0, col k0) of a row-major [m][k] tile, for fa_ldsm4. */
__device__ __forceinline__ u32 fa_a_addr(u32 base, int stride, int m0, int k0, int lane) {
  return base + 2u * (u32)((m0 + (lane & 7) + ((lane >> 3) & 1) * 8) * stride + k0 + (lane >> 4) * 8);
}
/** Address of the B fragments of two 8-column tiles (n0.., n0+8..) x k0..k0+15 from an [n][k] tile
 * (fa_ldsm4: regs 0,1 -> tile n0, regs 2,3 -> tile n0+8). */
__device__ __forceinline__ u32 fa_bn_addr(u32 base, int stride, int n0, int k0, int lane) {
  return base + 2u * (u32)((n0 + (lane & 7) + (lane >> 4) * 8) * stride + k0 + ((lane >> 3) & 1) * 8);
}
/** Address of the B fragments of two 8-column tiles from a [k][n] tile (fa_ldsm4t; same regs). */
__device__ __forceinline__ u32 fa_bk_addr(u32 base, int stride, int k0, int n0, int lane) {
  return base + 2u * (u32)((k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * stride + n0 + (lane >> 4) * 8);
}

/** Copies rows row0..row0+ROWS-1 (D bf16 each, `stride` elements apart in global memory) into a
 * [ROWS][D + FA_PAD] shared tile with cp.async; rows at or past `rows` are zero-filled. */
template <int D, int ROWS, int THREADS>
__device__ __forceinline__ void fa_load_tile(u32 dst, const bf16* base, i64 stride, int row0, int rows) {
  constexpr int CHUNKS = D / 8;
  static_assert((ROWS * CHUNKS) % THREADS == 0, "whole chunks per thread");
#pragma unroll
  for (int j = 0; j < ROWS * CHUNKS / THREADS; j++) {
    const int i = threadIdx.x + j * THREADS;
    const int r = i / CHUNKS, c = (i % CHUNKS) * 8;
    const bool inside = row0 + r < rows;
    const bf16* src = base + (inside ? (i64)(row0 + r) * stride + c : 0);
    fa_cp16(dst + 2u * (u32)(r * (D + FA_PAD) + c), src, inside ? 16 : 0);
  }
}

/** Dynamic shared memory of the flash kernels. */
extern __shared__ u32x4 fa_shared[];
