// Flash-attention forward on Hopper wgmma (sm_90a) for head dim 128: same contract as
// flash_attention_fwd_d128 (flash_attention_fwd.cu: arguments, layouts, causal, grouped heads, out and lse).
// Built as flash_attention_fwd_wg_d64 (flash_attention_fwd_wg.cu, whose mbarrier helpers, fw_mma_m64n128k16
// and fw_softmax it uses): one block = 128 query rows of one head in two consumer warpgroups (64 rows
// each) plus a producer warpgroup that copies Q and the key/value tiles (FD_KEYS rows, FD_STAGES
// shared-memory stages) with cp.async and signals full / empty mbarriers; setmaxnreg 240 / 24 (2 x 128 x
// 240 + 128 x 24 = 384 x 168, the registers the block starts with). A 128-wide row is two 128-byte
// swizzled [rows][64] tiles side by side (dims 0..63, then 64..127 one tile further; wg_swizzle128), as in
// flash_attention_bwd_wg_d128.
// Per consumer warpgroup and key tile j:
//   S = Q K_j^T   m64n128k16, 8 k-steps over the 128 dims (k-step kk: tile kk / 4, byte 32 (kk % 4) of
//                 each row), Q and K K-major from shared memory, the first k-step with zero accumulation;
//   online softmax in registers (log2 domain, as flash_fwd), P -> A fragments in registers;
//   O += P V_j    per 16 keys one m64n128k16 whose B descriptor (V [keys][dims], MN-major) spans both
//                 64-dim tiles (leading byte offset = the distance between them).
// S_{j+1} is issued before O += P_j V_j and its softmax runs while that product is in flight; the two
// warpgroups take turns to issue (named barriers FD_BAR0, FD_BAR0 + 1: warpgroup 0, then 1, then 0, ...),
// so one warpgroup's softmax overlaps the other's products.
// Chosen on the H200 (bench/results/2026-11-29-h200-session4/variants_forward_d128.txt, TFLOP/s at T 8k /
// 32k / 128k): this kernel 466 / 493 / 457; without the turns 449 / 476 / 449; two 64-wide O products
// 445 / 472 / 447 (lazy O rescale the same); 2 stages 315 / 325 / 310; the mma.sync kernel 307 / 318 / 319.
// Grid: (H, B, ceil(T / 128)), the longest (last) query blocks first.
// Shapes: Q tile [2][128][64], K and V tiles [2][FD_KEYS][64] bf16 per stage; per consumer thread S 64
// f32, O 64 f32, P 32 u32.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

#define FD_KEYS 128
#define FD_CONSUMERS 2 /* warpgroups of 64 query rows */
#define FD_ROWS (64 * FD_CONSUMERS)
#define FD_HALF 16384 /* [128][64] bf16: one 64-dim tile of Q, K or V */
#define FD_TILE (2 * FD_HALF)
#define FD_STAGES 3
/** Threads of the D128 wgmma forward (consumers + the producer warpgroup) and its dynamic shared memory:
 * Q, FD_STAGES x (K, V), the full and empty mbarriers (8 bytes each per stage), 1024 bytes to align the
 * tiles: 230448 bytes (flash_attention.ts: WGMMA_FORWARD_D128). */
#define FD_THREADS (128 * FD_CONSUMERS + 128)
#define FD_SHARED_BYTES (FD_TILE + FD_STAGES * 2 * FD_TILE + 16 * FD_STAGES + 1024)
/** Registers per thread after setmaxnreg. The 3 warpgroups start at 168 (65536 / 384, rounded down to 8:
 * tools/kernel-check.sh prints "Used 168 registers"), and setmaxnreg.inc only takes registers from the
 * CTA's pool, i.e. what the producer released: 128 x (168 - 24) = 2 x 128 x (240 - 168). */
#define FD_PRODUCER_REGS 24
#define FD_CONSUMER_REGS 240
/** First named barrier of the warpgroups' issue order (0 is __syncthreads'). */
#define FD_BAR0 1

/** d[64x128] = a[64x16] * b[16x128], both K-major from descriptors (the old d neither read nor kept). */
__device__ __forceinline__ void fd_mma_m64n128k16_zero(float* d, u64 da, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 0, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      WG_OPS64 ", %64, %65, p, 1, 1, 0, 0;\n}\n"
      : WG_D64(WG_W)
      : "l"(da), "l"(db));
}

/** d[64x128] += a[64x16] (registers, as wg_mma_m64n64k16_rega) * b[16x128] MN-major from a descriptor
 * (leading byte offset: the step between its two 64-column tiles). */
__device__ __forceinline__ void fd_mma_m64n128k16_rega(float* d, const u32* a, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      WG_OPS64 ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : WG_D64(WG_RW)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}

/** Issues S = Q K^T for one warpgroup: q, k the shared addresses of its Q rows (in the first 64-dim
 * tile) and of the K tile. */
__device__ __forceinline__ void fd_issue_s(float* s, u32 q, u32 k) {
  wg_fence();
  fd_mma_m64n128k16_zero(s, wg_desc(q, WB_LBO_K, WB_SBO_K), wg_desc(k, WB_LBO_K, WB_SBO_K));
#pragma unroll
  for (int kk = 1; kk < 8; kk++) {
    const u32 at = (kk >> 2) * FD_HALF + 32u * (kk & 3);
    fw_mma_m64n128k16(s, wg_desc(q + at, WB_LBO_K, WB_SBO_K), wg_desc(k + at, WB_LBO_K, WB_SBO_K));
  }
  wg_commit();
}

/** Issues O += P V for one warpgroup: p the A fragments of P [64 rows][FD_KEYS], v the V tile (keys
 * 16kk.. are 2048 bytes into each 64-dim tile; the descriptor's leading byte offset steps to dims 64..). */
__device__ __forceinline__ void fd_issue_pv(float* o, const u32* p, u32 v) {
  wg_fence();
#pragma unroll
  for (int kk = 0; kk < FD_KEYS / 16; kk++) {
    const u32 a[4] = {p[4 * kk], p[4 * kk + 1], p[4 * kk + 2], p[4 * kk + 3]};
    fd_mma_m64n128k16_rega(o, a, wg_desc(v + 2048u * kk, FD_HALF, WB_SBO_MN));
  }
  wg_commit();
}

/** O *= alpha per row, then P = bf16(s) as A fragments (as fw_rescale_pack). o[4j..4j+3]: dims 8j + 2c
 * (+1) of rows row0, row0 + 8 (as O += P V leaves them). */
__device__ __forceinline__ void fd_rescale_pack(float* o, u32* p, const float* s, const float* alpha) {
#pragma unroll
  for (int j = 0; j < 16; j++) {
    o[4 * j] *= alpha[0], o[4 * j + 1] *= alpha[0], o[4 * j + 2] *= alpha[1], o[4 * j + 3] *= alpha[1];
  }
#pragma unroll
  for (int j = 0; j < 16; j++) {
    p[2 * j] = fa_pack(s[4 * j], s[4 * j + 1]);
    p[2 * j + 1] = fa_pack(s[4 * j + 2], s[4 * j + 3]);
  }
}

/** Waits until it is warpgroup `wg`'s turn to issue (named barrier FD_BAR0 + wg, both warpgroups). */
__device__ __forceinline__ void fd_turn_wait(int wg) {
  if (wg == 0) {
    asm volatile("bar.sync %0, 256;\n" ::"n"(FD_BAR0) : "memory");
  } else {
    asm volatile("bar.sync %0, 256;\n" ::"n"(FD_BAR0 + 1) : "memory");
  }
}
/** Gives the turn to the other warpgroup. */
__device__ __forceinline__ void fd_turn_pass(int wg) {
  if (wg == 0) {
    asm volatile("bar.arrive %0, 256;\n" ::"n"(FD_BAR0 + 1) : "memory");
  } else {
    asm volatile("bar.arrive %0, 256;\n" ::"n"(FD_BAR0) : "memory");
  }
}

/** Copies rows row0.. (128 bf16 each, `stride` elements apart) into two swizzled [ROWS][64] tiles at
 * `dst` (dims 64.. ROWS * 128 bytes further) by the LANES producer threads (this one: `lane`); rows at
 * or past `rows` are zero-filled. */
template <int ROWS, int LANES>
__device__ __forceinline__ void fd_load_rows(u32 dst, const bf16* base, i64 stride, int row0, int rows, int lane) {
#pragma unroll 4
  for (int j = 0; j < ROWS * 16 / LANES; j++) {
    const int i = lane + LANES * j, r = i >> 4, chunk = i & 15;
    const bool inside = row0 + r < rows;
    fa_cp16(dst + (chunk >> 3) * ROWS * 128 + wg_swizzle128(r, (chunk & 7) * 8),
            base + (inside ? (i64)(row0 + r) * stride + chunk * 8 : 0), inside ? 16 : 0);
  }
}

extern __shared__ u32x4 fd_shared[];

// Protocol as flash_attention_fwd_wg_d64: full[stage] (count 128) completes when the producers' copies
// of a tile have landed (cp.async.mbarrier.arrive.noinc); every consumer thread waits it for every tile,
// fences the proxies and arrives on empty[stage of tile j - 1] (count 256) once O += P_{j-1} V_{j-1} is
// done; the producer waits empty before refilling a stage.
extern "C" __global__ void __launch_bounds__(FD_THREADS, 1)
    flash_attention_fwd_wg_d128(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int T, int H,
                                int HK, int HV, float scale_log2) {
  constexpr int D = 128, WGS = FD_CONSUMERS, ROWS = FD_ROWS, PRODUCERS = 128, STAGES = FD_STAGES;
  const u32 base = (fa_smem(fd_shared) + 1023u) & ~1023u;
  const u32 sq = base, skv = base + FD_TILE; // stage s: K at skv + 2 s FD_TILE, V after it
  const u32 full = skv + STAGES * 2 * FD_TILE, empty = full + 8 * STAGES; // mbarriers, 8 bytes each
  const int h = blockIdx.x, b = blockIdx.y;
  const int q0 = (gridDim.z - 1 - blockIdx.z) * ROWS;
  const int wg = __shfl_sync(0xffffffffu, threadIdx.x >> 7, 0); // warp-uniform to the compiler
  const int wi = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int tiles = (imin(T, q0 + ROWS) - 1) / FD_KEYS + 1;
  if (threadIdx.x == 0) {
    for (int st = 0; st < STAGES; st++) {
      fw_mbar_init(full + 8 * st, PRODUCERS);
      fw_mbar_init(empty + 8 * st, 128 * WGS);
    }
  }
  __syncthreads();

  if (wg == WGS) { // the producers
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(FD_PRODUCER_REGS));
    const int pi = threadIdx.x - 128 * WGS;
    const int hk = h / (H / HK), hv = h / (H / HV);
    const bf16* kb = k + ((i64)b * T * HK + hk) * D;
    const bf16* vb = v + ((i64)b * T * HV + hv) * D;
    fd_load_rows<ROWS, PRODUCERS>(sq, q + ((i64)b * T * H + h) * D, (i64)H * D, q0, T, pi);
    for (int t = 0; t < tiles; t++) {
      const int st = t % STAGES;
      if (t >= STAGES) fw_mbar_wait(empty + 8 * st, (t / STAGES - 1) & 1);
      const u32 dst = skv + st * 2 * FD_TILE;
      fd_load_rows<FD_KEYS, PRODUCERS>(dst, kb, (i64)HK * D, t * FD_KEYS, T, pi);
      fd_load_rows<FD_KEYS, PRODUCERS>(dst + FD_TILE, vb, (i64)HV * D, t * FD_KEYS, T, pi);
      fw_mbar_arrive_cp(full + 8 * st);
    }
    fa_cp_wait<0>();
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(FD_CONSUMER_REGS));

  const int wfirst = q0 + 64 * wg, wlast = imin(T - 1, wfirst + 63);
  const int wtiles = wfirst < T ? wlast / FD_KEYS + 1 : 0;
  const int row0 = wfirst + 16 * wi + g; // this thread's rows: row0, row0 + 8
  const u32 sqw = sq + wg * 64 * 128;
  float s[64], o[64], m[2] = {-F32_INFINITY, -F32_INFINITY}, l[2] = {0.f, 0.f}, alpha[2];
  u32 p[32];
#pragma unroll
  for (int i = 0; i < 64; i++) o[i] = 0.f;
  // Warpgroup 1 lets warpgroup 0 issue first; each issue then hands the turn over (warpgroup 1's last
  // hand-over is left out, so every arrival has its sync).
  if (wg == 1) fd_turn_pass(wg);

  for (int j = 0; j < tiles; j++) {
    const int st = j % STAGES;
    const u32 sk = skv + st * 2 * FD_TILE;
    const u32 svprev = skv + ((j + STAGES - 1) % STAGES) * 2 * FD_TILE + FD_TILE;
    fw_mbar_wait(full + 8 * st, (j / STAGES) & 1);
    wg_fence_shared();
    fd_turn_wait(wg);
    // Each wait sits in the branch of the issues it waits for: ptxas does not correlate two branches on
    // the same condition, and serializes the products (or injects waits) when they are apart.
    if (j < wtiles) {
      fd_issue_s(s, sqw, sk);
      if (j > 0) {
        fd_issue_pv(o, p, svprev); // O += P_{j-1} V_{j-1} while the softmax of S_j runs
        if (wg == 0 || j + 1 < tiles) fd_turn_pass(wg);
        wg_wait<1>();
      } else {
        if (wg == 0 || j + 1 < tiles) fd_turn_pass(wg);
        wg_wait<0>();
      }
      wg_fence_operands<64>(s);
      fw_softmax(s, m, l, alpha, j * FD_KEYS + FD_KEYS - 1 > wfirst, j * FD_KEYS, row0, scale_log2);
      wg_wait<0>();
      wg_fence_operands<64>(o);
      wg_fence_operands<32>(p);
      fd_rescale_pack(o, p, s, alpha);
    } else if (j == wtiles && j > 0) {
      fd_issue_pv(o, p, svprev);
      if (wg == 0 || j + 1 < tiles) fd_turn_pass(wg);
      wg_wait<0>();
      wg_fence_operands<64>(o);
    } else if (wg == 0 || j + 1 < tiles) {
      fd_turn_pass(wg);
    }
    if (j > 0) fw_mbar_arrive(empty + 8 * ((j + STAGES - 1) % STAGES)); // done with tile j - 1
  }
  if (wtiles == tiles) { // the last tile's O += P V
    fd_issue_pv(o, p, skv + ((tiles - 1) % STAGES) * 2 * FD_TILE + FD_TILE);
    wg_wait<0>();
    wg_fence_operands<64>(o);
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
    for (int d = 0; d < 16; d++) dst[4 * d] = fa_pack(o[4 * d + 2 * half] * inv, o[4 * d + 2 * half + 1] * inv);
    if (c == 0) lse[((i64)b * H + h) * T + row] = (m[half] + log2f(sum)) * FA_LN2;
  }
}

#endif
