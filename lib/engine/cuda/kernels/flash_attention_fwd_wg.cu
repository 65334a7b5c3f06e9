// Flash-attention forward on Hopper wgmma (sm_90a) for head dim 64: same contract as
// flash_attention_fwd_d64 (flash_attention_fwd.cu: arguments, layouts, causal, grouped heads, out and lse).
// One block = 192 query rows of one head in three consumer warpgroups (64 rows each) plus a producer
// warpgroup that copies Q and the key/value tiles (FW_KEYS rows, FW_STAGES shared-memory stages,
// 128-byte swizzled [rows][64] tiles) with cp.async and hands most of its registers to the consumers
// (setmaxnreg). Per consumer warpgroup and key tile j: S = Q K_j^T (m64n128k16, Q and K K-major from
// shared memory), online softmax in registers (log2 domain, as flash_fwd), P -> A fragments in
// registers, O += P V_j (m64n64k16, V [keys][dims] MN-major); S_{j+1} is issued before O += P_j V_j
// and its softmax runs while that product is in flight (FlashAttention-3's intra-warpgroup pipelining).
// Measured on the H200 (T 8k-128k, B H32 K4): 412-445 TFLOP/s, against 301-313 for the mma.sync
// kernel; two consumer warpgroups (with or without a producer warp) and variants without the producer
// reached 220-360 (session 3, explore timing, removed).
// Grid: (H, B, ceil(T / 192)), the longest (last) query blocks first.
// Shapes: Q tile [192][64], K and V tiles [FW_KEYS][64] bf16; per consumer thread S 64 f32, O 32 f32,
// P 32 u32.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

#define FW_KEYS 128
#define FW_STAGES 3
#define FW_CONSUMERS 3 /* warpgroups of 64 query rows */
#define FW_TILE_Q 8192  /* [64][64] bf16 per consumer warpgroup */
#define FW_TILE_K 16384 /* [FW_KEYS][64] bf16 */
/** Threads of flash_attention_fwd_wg_d64 (consumers + the producer warpgroup) and its dynamic shared
 * memory: Q, FW_STAGES x (K, V), the full and empty mbarriers (8 bytes each per stage), 1024 bytes to
 * align the tiles: 123952 bytes. */
#define FW_THREADS (128 * FW_CONSUMERS + 128)
#define FW_SHARED_BYTES (FW_CONSUMERS * FW_TILE_Q + FW_STAGES * 2 * FW_TILE_K + 16 * FW_STAGES + 1024)

/** d[64x128] += a[64x16] * b[16x128], both K-major from descriptors. Accumulator layout as
 * wg_mma_m64n64k16 with 16 column tiles of 8: d[4j..4j+3] for columns 8j + 2c (+1). */
__device__ __forceinline__ void fw_mma_m64n128k16(float* d, u64 da, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      WG_OPS64 ", %64, %65, p, 1, 1, 0, 0;\n}\n"
      : WG_D64(WG_RW)
      : "l"(da), "l"(db));
}

/** Issues S = Q K^T for one warpgroup (s zeroed first): q, k the shared addresses of its Q rows and
 * of the K tile. */
__device__ __forceinline__ void fw_issue_s(float* s, u32 q, u32 k) {
#pragma unroll
  for (int i = 0; i < 64; i++) s[i] = 0.f;
  wg_fence();
#pragma unroll
  for (int kk = 0; kk < 4; kk++) {
    fw_mma_m64n128k16(s, wg_desc(q + 32u * kk, WB_LBO_K, WB_SBO_K), wg_desc(k + 32u * kk, WB_LBO_K, WB_SBO_K));
  }
  wg_commit();
}

/** Issues O += P V for one warpgroup: p the A fragments of P [64 rows][FW_KEYS], v the V tile. */
__device__ __forceinline__ void fw_issue_pv(float* o, const u32* p, u32 v) {
  wg_fence();
#pragma unroll
  for (int kk = 0; kk < FW_KEYS / 16; kk++) {
    const u32 a[4] = {p[4 * kk], p[4 * kk + 1], p[4 * kk + 2], p[4 * kk + 3]};
    wg_mma_m64n64k16_rega<1>(o, a, wg_desc(v + 2048u * kk, WB_LBO_MN, WB_SBO_MN));
  }
  wg_commit();
}

/** Masks S (keys after the row: -inf) when `diagonal`, then the online softmax of this thread's two
 * rows (row0, row0 + 8): s becomes exp2(s scale_log2 - m_new), m and l (this thread's partial sums)
 * are updated, alpha = exp2(m_old - m_new) returned per row. */
__device__ __forceinline__ void fw_softmax(float* s, float* m, float* l, float* alpha, bool diagonal, int key0,
                                           int row0, float scale_log2) {
  const int c = threadIdx.x & 3;
  if (diagonal) {
#pragma unroll
    for (int j = 0; j < 16; j++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        if (key0 + 8 * j + 2 * c + (e & 1) > row0 + 8 * (e >> 1)) s[4 * j + e] = -F32_INFINITY;
      }
    }
  }
#pragma unroll
  for (int half = 0; half < 2; half++) {
    float mx = -F32_INFINITY;
#pragma unroll
    for (int j = 0; j < 16; j++) mx = fmaxf(mx, fmaxf(s[4 * j + 2 * half], s[4 * j + 2 * half + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float mnew = fmaxf(m[half], mx * scale_log2);
    const float muse = mnew == -F32_INFINITY ? 0.f : mnew;
    alpha[half] = fa_exp2(m[half] - muse);
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < 16; j++) {
      s[4 * j + 2 * half] = fa_exp2(s[4 * j + 2 * half] * scale_log2 - muse);
      s[4 * j + 2 * half + 1] = fa_exp2(s[4 * j + 2 * half + 1] * scale_log2 - muse);
      sum += s[4 * j + 2 * half] + s[4 * j + 2 * half + 1];
    }
    l[half] = l[half] * alpha[half] + sum;
    m[half] = mnew;
  }
}

/** O *= alpha per row, then P = bf16(s) as A fragments: p[2j + half] holds row row0 + 8 half, keys
 * 8j + 2c (+1), so the fragment of keys 16kk.. is p[4kk..4kk+3]. */
__device__ __forceinline__ void fw_rescale_pack(float* o, u32* p, const float* s, const float* alpha) {
#pragma unroll
  for (int j = 0; j < 8; j++) {
    o[4 * j] *= alpha[0], o[4 * j + 1] *= alpha[0], o[4 * j + 2] *= alpha[1], o[4 * j + 3] *= alpha[1];
  }
#pragma unroll
  for (int j = 0; j < 16; j++) {
    p[2 * j] = fa_pack(s[4 * j], s[4 * j + 1]);
    p[2 * j + 1] = fa_pack(s[4 * j + 2], s[4 * j + 3]);
  }
}

extern __shared__ u32x4 fw_shared[];

// The producer warpgroup signals full[stage] through cp.async.mbarrier.arrive.noinc (count 128: one
// per producer thread, when its copies have landed). Each consumer thread waits full[stage] for every
// tile (so its arrivals on empty[] keep to the phases), then a proxy fence (the copies are generic-proxy
// writes, wgmma reads through the async proxy), and arrives on empty[stage of tile j - 1] (count 384)
// once O += P_{j-1} V_{j-1} is done; the producer waits empty before refilling a stage. Consumer
// warpgroups iterate over all tiles of the block (those whose rows are done only keep the counts).

/** Registers per thread of the producer and consumer warpgroups after setmaxnreg (4 warpgroups of a
 * 512-thread block start at 128; 3 x 160 + 32 = 512). */
#define FW_PRODUCER_REGS 32
#define FW_CONSUMER_REGS 160

__device__ __forceinline__ void fw_mbar_init(u32 bar, u32 count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void fw_mbar_arrive(u32 bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/** Arrives on `bar` when all of this thread's earlier cp.async copies have completed. */
__device__ __forceinline__ void fw_mbar_arrive_cp(u32 bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
/** Waits until the phase of `bar` with this parity has completed. */
__device__ __forceinline__ void fw_mbar_wait(u32 bar, u32 parity) {
  u32 done;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}

/** Copies rows row0.. of a [ROWS][64] tile as fw_load_tile, by LANES threads (this one: `lane`). */
template <int ROWS, int LANES>
__device__ __forceinline__ void fw_part_load_tile(u32 dst, const bf16* base, i64 stride, int row0, int rows,
                                                  int lane) {
#pragma unroll 4
  for (int j = 0; j < ROWS * 8 / LANES; j++) {
    const int i = lane + LANES * j, r = i >> 3, c = (i & 7) * 8;
    const bool inside = row0 + r < rows;
    fa_cp16(dst + wg_swizzle128(r, c), base + (inside ? (i64)(row0 + r) * stride + c : 0), inside ? 16 : 0);
  }
}

extern "C" __global__ void __launch_bounds__(FW_THREADS, 1)
    flash_attention_fwd_wg_d64(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int T, int H,
                               int HK, int HV, float scale_log2) {
  constexpr int D = 64, WGS = FW_CONSUMERS, ROWS = 64 * WGS, PRODUCERS = 128, STAGES = FW_STAGES;
  const u32 base = (fa_smem(fw_shared) + 1023u) & ~1023u;
  const u32 sq = base, skv = base + WGS * FW_TILE_Q; // stage s: K at skv + 2 s FW_TILE_K, V after it
  const u32 full = skv + STAGES * 2 * FW_TILE_K, empty = full + 8 * STAGES; // mbarriers, 8 bytes each
  const int h = blockIdx.x, b = blockIdx.y;
  const int q0 = (gridDim.z - 1 - blockIdx.z) * ROWS;
  const int wg = __shfl_sync(0xffffffffu, threadIdx.x >> 7, 0); // warp-uniform to the compiler
  const int wi = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int tiles = (imin(T, q0 + ROWS) - 1) / FW_KEYS + 1;
  if (threadIdx.x == 0) {
    for (int st = 0; st < STAGES; st++) {
      fw_mbar_init(full + 8 * st, PRODUCERS);
      fw_mbar_init(empty + 8 * st, 128 * WGS);
    }
  }
  __syncthreads();

  if (wg == WGS) { // the producers
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(FW_PRODUCER_REGS));
    const int pi = threadIdx.x - 128 * WGS;
    const int hk = h / (H / HK), hv = h / (H / HV);
    const bf16* kb = k + ((i64)b * T * HK + hk) * D;
    const bf16* vb = v + ((i64)b * T * HV + hv) * D;
    fw_part_load_tile<ROWS, PRODUCERS>(sq, q + ((i64)b * T * H + h) * D, (i64)H * D, q0, T, pi);
    for (int t = 0; t < tiles; t++) {
      const int st = t % STAGES;
      if (t >= STAGES) fw_mbar_wait(empty + 8 * st, (t / STAGES - 1) & 1);
      const u32 dst = skv + st * 2 * FW_TILE_K;
      fw_part_load_tile<FW_KEYS, PRODUCERS>(dst, kb, (i64)HK * D, t * FW_KEYS, T, pi);
      fw_part_load_tile<FW_KEYS, PRODUCERS>(dst + FW_TILE_K, vb, (i64)HV * D, t * FW_KEYS, T, pi);
      fw_mbar_arrive_cp(full + 8 * st);
    }
    fa_cp_wait<0>();
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(FW_CONSUMER_REGS));

  const int wfirst = q0 + 64 * wg, wlast = imin(T - 1, wfirst + 63);
  const int wtiles = wfirst < T ? wlast / FW_KEYS + 1 : 0;
  const int row0 = wfirst + 16 * wi + g; // this thread's rows: row0, row0 + 8
  const u32 sqw = sq + wg * FW_TILE_Q;
  float s[64], o[32], m[2] = {-F32_INFINITY, -F32_INFINITY}, l[2] = {0.f, 0.f}, alpha[2];
  u32 p[32];
#pragma unroll
  for (int i = 0; i < 32; i++) o[i] = 0.f;

  for (int j = 0; j < tiles; j++) {
    const int st = j % STAGES;
    const u32 sk = skv + st * 2 * FW_TILE_K;
    const u32 svprev = skv + ((j + STAGES - 1) % STAGES) * 2 * FW_TILE_K + FW_TILE_K;
    fw_mbar_wait(full + 8 * st, (j / STAGES) & 1);
    wg_fence_shared();
    if (j < wtiles) {
      fw_issue_s(s, sqw, sk);
      if (j > 0) {
        fw_issue_pv(o, p, svprev); // O += P_{j-1} V_{j-1} while the softmax of S_j runs
        wg_wait<1>();
      } else {
        wg_wait<0>();
      }
      wg_fence_operands<64>(s);
      fw_softmax(s, m, l, alpha, j * FW_KEYS + FW_KEYS - 1 > wfirst, j * FW_KEYS, row0, scale_log2);
      wg_wait<0>();
      wg_fence_operands<32>(o);
      wg_fence_operands<32>(p);
      fw_rescale_pack(o, p, s, alpha);
    } else if (j == wtiles && j > 0) {
      fw_issue_pv(o, p, svprev);
      wg_wait<0>();
      wg_fence_operands<32>(o);
    }
    if (j > 0) fw_mbar_arrive(empty + 8 * ((j + STAGES - 1) % STAGES)); // done with tile j - 1
  }
  if (wtiles == tiles) { // the last tile's O += P V
    fw_issue_pv(o, p, skv + ((tiles - 1) % STAGES) * 2 * FW_TILE_K + FW_TILE_K);
    wg_wait<0>();
    wg_fence_operands<32>(o);
  }

#pragma unroll
  for (int half = 0; half < 2; half++) {
    float sum = l[half];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const int row = row0 + 8 * half;
    if (row >= T) continue;
    const float inv = 1.f / sum;
    u32* dst = reinterpret_cast<u32*>(out + ((i64)b * T * H + (i64)row * H + h) * D + 2 * c);
#pragma unroll
    for (int d = 0; d < 8; d++) dst[4 * d] = fa_pack(o[4 * d + 2 * half] * inv, o[4 * d + 2 * half + 1] * inv);
    if (c == 0) lse[((i64)b * H + h) * T + row] = (m[half] + log2f(sum)) * FA_LN2;
  }
}

#endif
