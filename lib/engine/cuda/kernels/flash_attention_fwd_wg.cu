// Flash-attention forwards on Hopper wgmma (sm_90a) for head dims 64 and 128: same contract as
// flash_attention_fwd_d64 / _d128 (flash_attention_fwd.cu: arguments, layouts, causal, grouped heads, out
// and lse). FlashAttention-3's warp specialization: one block = 64 x WGS query rows of one head in WGS
// consumer warpgroups (64 rows each) plus a producer warpgroup that copies Q and the key/value tiles
// (FW_KEYS rows, FW_STAGES shared-memory stages) with cp.async, signals full / empty mbarriers and hands
// most of its registers to the consumers (setmaxnreg). A row of D dims is D / 64 128-byte swizzled
// [rows][64] tiles side by side (dims 0..63, then 64..127 one tile further; wg_swizzle128).
// Per consumer warpgroup and key tile j:
//   S = Q K_j^T   m64n128k16, D / 16 k-steps (k-step kk: tile kk / 4, byte 32 (kk % 4) of each row), Q and
//                 K K-major from shared memory, the first k-step with zero accumulation;
//   online softmax in registers (log2 domain, as flash_fwd), P -> A fragments in registers;
//   O += P V_j    per 16 keys one m64n{D}k16 (V [keys][dims] MN-major; at D 128 the B descriptor spans
//                 both 64-dim tiles: leading byte offset = the distance between them).
// S_{j+1} is issued before O += P_j V_j and its softmax runs while that product is in flight
// (intra-warpgroup pipelining). At D 128 the two consumer warpgroups also take turns to issue (named
// barriers FW_BAR0, FW_BAR0 + 1: warpgroup 0, then 1, then 0, ...), so one's softmax overlaps the
// other's products.
//   D 64:  3 consumer warpgroups (192 rows), setmaxnreg 160 / 32, 123952 bytes of shared memory;
//          measured on the H200 (T 8k-128k, B H32 K4) 407-448 TFLOP/s against 301-313 for the mma.sync
//          kernel; two consumer warpgroups (with or without a producer warp) and variants without the
//          producer reached 220-360 (session 3, explore timing, removed).
//   D 128: 2 consumer warpgroups (128 rows), setmaxnreg 240 / 24, 230448 bytes of shared memory;
//          measured (bench/results/2026-11-29-h200-session4/variants_forward_d128.txt, T 8k / 32k /
//          128k) 466 / 493 / 457 against 307 / 318 / 319 for the mma.sync kernel; without the turns
//          449 / 476 / 449; O += P V as two m64n64k16 445 / 472 / 447 (a lazy O rescale the same); 2
//          stages 315 / 325 / 310.
// Grid: (H, B, ceil(T / (64 WGS))), the longest (last) query blocks first.
// Shapes: Q tile [D / 64][64 WGS][64], K and V tiles [D / 64][FW_KEYS][64] bf16 per stage; per consumer
// thread S 64 f32, O D / 2 f32, P 32 u32.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

#define FW_KEYS 128
#define FW_STAGES 3
/** First named barrier of the D 128 warpgroups' issue order (0 is __syncthreads'). */
#define FW_BAR0 1

/** The per-head-dim shape of a forward kernel: consumer warpgroups and registers per thread after
 * setmaxnreg. The warpgroups start at 65536 / threads rounded down to 8 registers (128 at D 64's 512
 * threads, 168 at D 128's 384), and setmaxnreg.inc only takes what the producer released: 3 x 160 + 32 =
 * 4 x 128; 2 x 240 + 24 = 3 x 168. */
template <int D>
struct FwShape;
template <>
struct FwShape<64> {
  static constexpr int consumers = 3, producer_regs = 32, consumer_regs = 160;
  static constexpr bool turns = false;
};
template <>
struct FwShape<128> {
  static constexpr int consumers = 2, producer_regs = 24, consumer_regs = 240;
  static constexpr bool turns = true;
};
/** Threads of the D forward (consumers + the producer warpgroup) and its dynamic shared memory: Q,
 * FW_STAGES x (K, V), the full and empty mbarriers (8 bytes each per stage), 1024 bytes to align the
 * tiles (flash_attention.ts: WGMMA_FORWARD, WGMMA_FORWARD_D128). */
#define FW_THREADS(D) (128 * FwShape<D>::consumers + 128)
#define FW_SHARED_BYTES(D) \
  (64 * FwShape<D>::consumers * (D) * 2 + FW_STAGES * 2 * FW_KEYS * (D) * 2 + 16 * FW_STAGES + 1024)

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
/** d[64x128] = a[64x16] * b[16x128] (the old d neither read nor kept live: no instruction writes zeros
 * into registers of a wgmma pipeline, which ptxas would serialize). */
__device__ __forceinline__ void fw_mma_m64n128k16_zero(float* d, u64 da, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 0, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      WG_OPS64 ", %64, %65, p, 1, 1, 0, 0;\n}\n"
      : WG_D64(WG_W)
      : "l"(da), "l"(db));
}

/** d[64x128] += a[64x16] (registers, as wg_mma_m64n64k16_rega) * b[16x128] MN-major from a descriptor
 * (leading byte offset: the step between its two 64-column tiles). */
__device__ __forceinline__ void fw_mma_m64n128k16_rega(float* d, const u32* a, u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      WG_OPS64 ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : WG_D64(WG_RW)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}

/** Issues S = Q K^T for one warpgroup: q, k the shared addresses of its Q rows (in the first 64-dim
 * tile) and of the K tile; 64-dim tiles of Q are `qtile` bytes apart, of K `ktile`. */
template <int D>
__device__ __forceinline__ void fw_issue_s(float* s, u32 q, u32 k, u32 qtile, u32 ktile) {
  wg_fence();
  fw_mma_m64n128k16_zero(s, wg_desc(q, WB_LBO_K, WB_SBO_K), wg_desc(k, WB_LBO_K, WB_SBO_K));
#pragma unroll
  for (int kk = 1; kk < D / 16; kk++) {
    const u32 qa = (kk >> 2) * qtile + 32u * (kk & 3), ka = (kk >> 2) * ktile + 32u * (kk & 3);
    fw_mma_m64n128k16(s, wg_desc(q + qa, WB_LBO_K, WB_SBO_K), wg_desc(k + ka, WB_LBO_K, WB_SBO_K));
  }
  wg_commit();
}

/** Issues O += P V for one warpgroup: p the A fragments of P [64 rows][FW_KEYS], v the V tile (keys
 * 16kk.. are 2048 bytes into each 64-dim tile; at D 128 the descriptor's leading byte offset steps to
 * dims 64..). */
template <int D>
__device__ __forceinline__ void fw_issue_pv(float* o, const u32* p, u32 v) {
  wg_fence();
#pragma unroll
  for (int kk = 0; kk < FW_KEYS / 16; kk++) {
    const u32 a[4] = {p[4 * kk], p[4 * kk + 1], p[4 * kk + 2], p[4 * kk + 3]};
    if constexpr (D == 64) {
      wg_mma_m64n64k16_rega<1>(o, a, wg_desc(v + 2048u * kk, WB_LBO_MN, WB_SBO_MN));
    } else {
      fw_mma_m64n128k16_rega(o, a, wg_desc(v + 2048u * kk, FW_KEYS * WG_ROW_BYTES, WB_SBO_MN));
    }
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

/** O *= alpha per row (o[4j..4j+3]: dims 8j + 2c (+1) of rows row0, row0 + 8, as O += P V leaves them),
 * then P = bf16(s) as A fragments: p[2j + half] holds row row0 + 8 half, keys 8j + 2c (+1), so the
 * fragment of keys 16kk.. is p[4kk..4kk+3]. */
template <int D>
__device__ __forceinline__ void fw_rescale_pack(float* o, u32* p, const float* s, const float* alpha) {
#pragma unroll
  for (int j = 0; j < D / 8; j++) {
    o[4 * j] *= alpha[0], o[4 * j + 1] *= alpha[0], o[4 * j + 2] *= alpha[1], o[4 * j + 3] *= alpha[1];
  }
#pragma unroll
  for (int j = 0; j < 16; j++) {
    p[2 * j] = fa_pack(s[4 * j], s[4 * j + 1]);
    p[2 * j + 1] = fa_pack(s[4 * j + 2], s[4 * j + 3]);
  }
}

/** Waits until it is warpgroup `wg`'s turn to issue (named barrier FW_BAR0 + wg, both warpgroups). */
__device__ __forceinline__ void fw_turn_wait(int wg) {
  if (wg == 0) {
    asm volatile("bar.sync %0, 256;\n" ::"n"(FW_BAR0) : "memory");
  } else {
    asm volatile("bar.sync %0, 256;\n" ::"n"(FW_BAR0 + 1) : "memory");
  }
}
/** Gives the turn to the other warpgroup. */
__device__ __forceinline__ void fw_turn_pass(int wg) {
  if (wg == 0) {
    asm volatile("bar.arrive %0, 256;\n" ::"n"(FW_BAR0 + 1) : "memory");
  } else {
    asm volatile("bar.arrive %0, 256;\n" ::"n"(FW_BAR0) : "memory");
  }
}

extern __shared__ u32x4 fw_shared[];

// The producer warpgroup signals full[stage] through cp.async.mbarrier.arrive.noinc (count 128: one
// per producer thread, when its copies have landed). Each consumer thread waits full[stage] for every
// tile (so its arrivals on empty[] keep to the phases), then a proxy fence (the copies are generic-proxy
// writes, wgmma reads through the async proxy), and arrives on empty[stage of tile j - 1] (count 128 x
// consumers) once O += P_{j-1} V_{j-1} is done; the producer waits empty before refilling a stage.
// Consumer warpgroups iterate over all tiles of the block (those whose rows are done only keep the
// counts and, at D 128, pass the turn on).

template <int D>
__device__ __forceinline__ void fw_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                                           int T, int H, int HK, int HV, float scale_log2) {
  using Shape = FwShape<D>;
  constexpr int WGS = Shape::consumers, ROWS = 64 * WGS, PRODUCERS = 128, STAGES = FW_STAGES;
  constexpr bool TURNS = Shape::turns;
  constexpr u32 QTILE = ROWS * WG_ROW_BYTES, KTILE = FW_KEYS * WG_ROW_BYTES; // one 64-dim tile of Q, K
  constexpr u32 KV = FW_KEYS * D * 2;                                         // a whole K or V tile
  const u32 base = (fa_smem(fw_shared) + 1023u) & ~1023u;
  const u32 sq = base, skv = base + ROWS * D * 2; // stage s: K at skv + 2 s KV, V after it
  const u32 full = skv + STAGES * 2 * KV, empty = full + 8 * STAGES; // mbarriers, 8 bytes each
  const int h = blockIdx.x, b = blockIdx.y;
  const int q0 = (gridDim.z - 1 - blockIdx.z) * ROWS;
  const int wg = __shfl_sync(0xffffffffu, threadIdx.x >> 7, 0); // warp-uniform to the compiler
  const int wi = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int tiles = (imin(T, q0 + ROWS) - 1) / FW_KEYS + 1;
  if (threadIdx.x == 0) {
    for (int st = 0; st < STAGES; st++) {
      wg_mbar_init(full + 8 * st, PRODUCERS);
      wg_mbar_init(empty + 8 * st, 128 * WGS);
    }
  }
  __syncthreads();

  if (wg == WGS) { // the producers
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Shape::producer_regs));
    const int pi = threadIdx.x - 128 * WGS;
    const int hk = h / (H / HK), hv = h / (H / HV);
    const bf16* kb = k + ((i64)b * T * HK + hk) * D;
    const bf16* vb = v + ((i64)b * T * HV + hv) * D;
    wg_load_rows<D, ROWS, PRODUCERS>(sq, q + ((i64)b * T * H + h) * D, (i64)H * D, q0, T, pi);
    for (int t = 0; t < tiles; t++) {
      const int st = t % STAGES;
      if (t >= STAGES) wg_mbar_wait(empty + 8 * st, (t / STAGES - 1) & 1);
      const u32 dst = skv + st * 2 * KV;
      wg_load_rows<D, FW_KEYS, PRODUCERS>(dst, kb, (i64)HK * D, t * FW_KEYS, T, pi);
      wg_load_rows<D, FW_KEYS, PRODUCERS>(dst + KV, vb, (i64)HV * D, t * FW_KEYS, T, pi);
      wg_mbar_arrive_cp(full + 8 * st);
    }
    fa_cp_wait<0>();
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Shape::consumer_regs));

  const int wfirst = q0 + 64 * wg, wlast = imin(T - 1, wfirst + 63);
  const int wtiles = wfirst < T ? wlast / FW_KEYS + 1 : 0;
  const int row0 = wfirst + 16 * wi + g; // this thread's rows: row0, row0 + 8
  const u32 sqw = sq + wg * 64 * WG_ROW_BYTES;
  float s[64], o[D / 2], m[2] = {-F32_INFINITY, -F32_INFINITY}, l[2] = {0.f, 0.f}, alpha[2];
  u32 p[32];
#pragma unroll
  for (int i = 0; i < D / 2; i++) o[i] = 0.f;
  // Turns: warpgroup 1 lets warpgroup 0 issue first; each issue then hands the turn over (warpgroup 1's
  // last hand-over is left out, so every arrival has its sync).
  if (TURNS && wg == 1) fw_turn_pass(wg);

  for (int j = 0; j < tiles; j++) {
    const int st = j % STAGES;
    const u32 sk = skv + st * 2 * KV;
    const u32 svprev = skv + ((j + STAGES - 1) % STAGES) * 2 * KV + KV;
    wg_mbar_wait(full + 8 * st, (j / STAGES) & 1);
    wg_fence_shared();
    if (TURNS) fw_turn_wait(wg);
    // Each wait sits in the branch of the issues it waits for: ptxas does not correlate two branches on
    // the same condition, and serializes the products (or injects waits) when they are apart.
    if (j < wtiles) {
      fw_issue_s<D>(s, sqw, sk, QTILE, KTILE);
      if (j > 0) {
        fw_issue_pv<D>(o, p, svprev); // O += P_{j-1} V_{j-1} while the softmax of S_j runs
        if (TURNS && (wg == 0 || j + 1 < tiles)) fw_turn_pass(wg);
        wg_wait<1>();
      } else {
        if (TURNS && (wg == 0 || j + 1 < tiles)) fw_turn_pass(wg);
        wg_wait<0>();
      }
      wg_fence_operands<64>(s);
      fw_softmax(s, m, l, alpha, j * FW_KEYS + FW_KEYS - 1 > wfirst, j * FW_KEYS, row0, scale_log2);
      wg_wait<0>();
      wg_fence_operands<D / 2>(o);
      wg_fence_operands<32>(p);
      fw_rescale_pack<D>(o, p, s, alpha);
    } else if (j == wtiles && j > 0) {
      fw_issue_pv<D>(o, p, svprev);
      if (TURNS && (wg == 0 || j + 1 < tiles)) fw_turn_pass(wg);
      wg_wait<0>();
      wg_fence_operands<D / 2>(o);
    } else if (TURNS && (wg == 0 || j + 1 < tiles)) {
      fw_turn_pass(wg);
    }
    if (j > 0) wg_mbar_arrive(empty + 8 * ((j + STAGES - 1) % STAGES)); // done with tile j - 1
  }
  if (wtiles == tiles) { // the last tile's O += P V
    fw_issue_pv<D>(o, p, skv + ((tiles - 1) % STAGES) * 2 * KV + KV);
    wg_wait<0>();
    wg_fence_operands<D / 2>(o);
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
    for (int d = 0; d < D / 8; d++) dst[4 * d] = fa_pack(o[4 * d + 2 * half] * inv, o[4 * d + 2 * half + 1] * inv);
    if (c == 0) lse[((i64)b * H + h) * T + row] = (m[half] + log2f(sum)) * FA_LN2;
  }
}

#define FW_FORWARD(D)                                                                                        \
  extern "C" __global__ void __launch_bounds__(FW_THREADS(D), 1)                                             \
      flash_attention_fwd_wg_d##D(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int T, \
                                  int H, int HK, int HV, float scale_log2) {                                 \
    fw_forward<D>(out, lse, q, k, v, T, H, HK, HV, scale_log2);                                              \
  }
FW_FORWARD(64)
FW_FORWARD(128)

#endif
