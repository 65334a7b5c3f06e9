// The op interface the decoder's forward and backward are written against (llm.c style): the engine
// owns buffers, and each op reads and writes them. Implemented by cpu/ (TypeScript) and cuda/ (kernels).
//
// Letters (lib/checkpoint/model_config.ts): B batch, T tokens, C channels, H query heads, K key heads,
// D head dim, R rotary dims (<= D), V vocabulary, F feed-forward size, N rows (= B*T, or B*T*H for
// per-head row ops). Every tensor is row-major and contiguous; the last dimension varies fastest.
//
// Conventions for every op:
// - Arguments are one object; output tensors are named first in the comment of each op.
// - "writes" overwrites the output; "accumulates" adds into it (gradients of parameters accumulate,
//   so gradient accumulation over micro-batches is free); an op never allocates visible tensors.
// - Shapes are checked against each other and a ShapeError names the op and the mismatch.
// - Compute ops read and write "f32" or "bf16" tensors (engines may support only "f32"; they throw
//   UnsupportedError for the rest) and accumulate in f32 or better. Index tensors are "i32".
// - Ops are enqueued in order; `download` (and `sync`) wait for all earlier ops.

/** Element type of a tensor. */
export type TensorDType = "f32" | "bf16" | "i32";

/** An opaque handle to engine memory: a contiguous block of `size` elements laid out as `shape`. */
export interface Tensor {
  readonly shape: readonly number[];
  readonly dtype: TensorDType;
  /** Number of elements (product of the shape). */
  readonly size: number;
}

/** Host arrays accepted by `upload` and returned by `download` (bf16 travels as f32 on the host). */
export type HostArray = Float32Array | Int32Array;

/** Target value that marks a row excluded from the loss (no next token, padding). */
export const IGNORE_INDEX = -1;

/** Arguments of {@link Engine.matmul}. */
export interface MatmulArgs {
  out: Tensor;
  a: Tensor;
  b: Tensor;
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  beta?: number;
}

/** Arguments of {@link Engine.rmsnormBackward}. */
export interface RmsnormBackwardArgs {
  dx: Tensor;
  dweight: Tensor;
  dout: Tensor;
  x: Tensor;
  weight: Tensor;
  rstd: Tensor;
  accumulate?: boolean;
}

/** Arguments of {@link Engine.attentionBackward}. */
export interface AttentionBackwardArgs {
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
  dout: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  out: Tensor;
  lse: Tensor;
}

/** Arguments of {@link Engine.crossEntropy}. */
export interface CrossEntropyArgs {
  losses: Tensor;
  hidden: Tensor;
  weight: Tensor;
  targets: Tensor;
  dhidden?: Tensor;
  dweight?: Tensor;
  scale?: number;
}

/** Arguments of {@link Engine.adamw}: f32 param, m and v updated in place from grad (same size). */
export interface AdamWArgs {
  param: Tensor;
  grad: Tensor;
  m: Tensor;
  v: Tensor;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Counts from 1. */
  step: number;
  /** Multiplies grad before the update (clipping and averaging); default 1. */
  gradScale?: number;
}

/** The op interface. One instance per device; tensors of one engine cannot be used by another. */
export interface Engine {
  /** "cpu" or "cuda" (with the device name after a colon where useful). */
  readonly name: string;

  // ---- memory ----------------------------------------------------------------------------------
  /** A new zero-filled tensor. */
  alloc(shape: readonly number[], dtype?: TensorDType): Tensor;
  /** A tensor sharing `base`'s memory: `shape`'s elements starting at element `offset` of `base`
   * (same dtype). Used for parameters inside the one parameter buffer and for reshapes. */
  view(base: Tensor, shape: readonly number[], offset?: number): Tensor;
  /** Releases memory of a tensor from `alloc` (views are released with their base). */
  free(tensor: Tensor): void;
  /** Copies host data into the tensor (`data.length` == size; f32 data into bf16 rounds to nearest
   * even; Int32Array only into i32). */
  upload(tensor: Tensor, data: HostArray): void;
  /** Copies the tensor to the host (bf16 widened to f32). */
  download(tensor: Tensor): Promise<HostArray>;
  /** Waits for every enqueued op. */
  sync(): Promise<void>;
  /** Releases everything the engine holds. */
  dispose(): void;

  // ---- elementwise -------------------------------------------------------------------------------
  /** Writes `value` into every element of `out`. */
  fill(args: { out: Tensor; value: number }): void;
  /** Writes `x` into `out` (same size), casting between f32 and bf16 as needed. */
  copy(args: { out: Tensor; x: Tensor }): void;
  /** Writes out = a + b elementwise (same size; `out` may alias `a` or `b`). Residual connections. */
  add(args: { out: Tensor; a: Tensor; b: Tensor }): void;
  /** Writes x *= alpha in place. */
  scale(args: { x: Tensor; alpha: number }): void;

  // ---- linear algebra ----------------------------------------------------------------------------
  /**
   * Writes out[M, N] = alpha * op(a) @ op(b) + beta * out, with op(a) [M, P] and op(b) [P, N];
   * op(x) = x^T when `transA`/`transB` (then `a` is stored [P, M], `b` is stored [N, P]).
   * alpha defaults to 1, beta to 0 (beta 1 accumulates; out is not read when beta is 0).
   * Linear layer y = x W^T: matmul({out: y[N,O], a: x[N,I], b: W[O,I], transB: true});
   * dx = dy W: ({out: dx, a: dy, b: W}); dW += dy^T x: ({out: dW, a: dy, b: x, transA: true, beta: 1}).
   * a and b may be 2-D views of any tensor; only the element count of the last two dims matters.
   */
  matmul(args: MatmulArgs): void;
  /** Accumulates out[N, X] += bias[X] on every row. */
  biasAdd(args: { out: Tensor; bias: Tensor }): void;
  /** Accumulates dbias[X] += sum over rows of dout[N, X]. */
  biasBackward(args: { dbias: Tensor; dout: Tensor }): void;

  // ---- embedding ---------------------------------------------------------------------------------
  /** Writes out[N, C] = table[V, C][tokens[N]] (tokens i32). */
  embeddingForward(args: { out: Tensor; table: Tensor; tokens: Tensor }): void;
  /** Accumulates dtable[tokens[n]] += dout[n] for every row n. */
  embeddingBackward(args: { dtable: Tensor; dout: Tensor; tokens: Tensor }): void;

  // ---- normalization -----------------------------------------------------------------------------
  /**
   * Writes out[N, X] = x * rstd * weight[X] and rstd[N] = 1 / sqrt(mean(x^2) + eps) per row.
   * Layer norms use X = C; Qwen3's q/k norms view [B*T, H*D] as [B*T*H, D].
   */
  rmsnormForward(args: { out: Tensor; rstd: Tensor; x: Tensor; weight: Tensor; eps: number }): void;
  /**
   * From dout[N, X], the saved x and rstd: writes dx[N, X] (accumulates when `accumulate`, for the
   * residual stream) and accumulates dweight[X]. dx must not alias dout.
   */
  rmsnormBackward(args: RmsnormBackwardArgs): void;

  // ---- rotary position embedding (per head; HF rotate_half layout) -------------------------------
  /**
   * Writes out[B*T, Ho, D] = x[B*T, Hx, D] rotated per head: out head h reads x head
   * floor(h / (Ho / Hx)) and rotates by angle = positions[n] * invFreq[h][i], i < R/2:
   *   out[i] = x[i] cos - x[i + R/2] sin,  out[i + R/2] = x[i + R/2] cos + x[i] sin;  dims >= R copy.
   * invFreq is f32 [Ho, R/2] (uploaded once, from the head's base: base^(-2i/R)); positions is i32
   * [B*T]. Angles are computed at least as accurately as an f32 product. `out` may alias `x` when
   * Ho == Hx. Ho > Hx gives each query head its own rotation of a shared key (`query` granularity).
   */
  ropeForward(args: { out: Tensor; x: Tensor; invFreq: Tensor; positions: Tensor }): void;
  /**
   * The backward of ropeForward: writes dx[B*T, Hx, D] = sum over the out heads h reading x head
   * (rotation of dout[B*T, Ho, D] head h by -angle). `dx` may alias `dout` when Ho == Hx.
   */
  ropeBackward(args: { dx: Tensor; dout: Tensor; invFreq: Tensor; positions: Tensor }): void;

  // ---- attention ---------------------------------------------------------------------------------
  /**
   * Causal attention with grouped heads, softmax scale 1/sqrt(D). q [B, T, H, D], k [B, T, Hk, D],
   * v [B, T, Hv, D] (Hk and Hv divide H; query head h uses key head floor(h / (H / Hk)) and value
   * head floor(h / (H / Hv))). Writes out [B, T, H, D] and lse f32 [B, H, T] (log-sum-exp of each
   * query row's scaled scores, saved for the backward). Token t attends to tokens 0..t of its row.
   */
  attentionForward(args: { out: Tensor; lse: Tensor; q: Tensor; k: Tensor; v: Tensor }): void;
  /** Writes dq [B, T, H, D], dk [B, T, Hk, D], dv [B, T, Hv, D] from dout [B, T, H, D] and the forward's
   * q, k, v, out and lse. */
  attentionBackward(args: AttentionBackwardArgs): void;

  // ---- feed-forward ------------------------------------------------------------------------------
  /** Writes out[N, F] = silu(gate) * up, silu(g) = g / (1 + exp(-g)). */
  swigluForward(args: { out: Tensor; gate: Tensor; up: Tensor }): void;
  /** Writes dgate[N, F] and dup[N, F] from dout[N, F] and the forward's gate and up. */
  swigluBackward(args: { dgate: Tensor; dup: Tensor; dout: Tensor; gate: Tensor; up: Tensor }): void;

  // ---- loss --------------------------------------------------------------------------------------
  /**
   * Fused lm head + cross-entropy, chunked over rows so the [N, V] logits never exist at once.
   * hidden [N, C], weight [V, C], targets i32 [N] (IGNORE_INDEX rows give loss 0 and no gradient).
   * Writes losses f32 [N] = -log softmax(hidden @ weight^T)[target]. When `dhidden` is given, writes
   * dhidden [N, C] = scale * dloss/dhidden; when `dweight` is given, accumulates
   * dweight [V, C] += scale * dloss/dweight. scale defaults to 1 (the model passes 1 / counted rows
   * so the gradients are those of the mean loss).
   */
  crossEntropy(args: CrossEntropyArgs): void;

  // ---- optimizer ---------------------------------------------------------------------------------
  /** Writes out f32 [1] = sum of x^2 over every element (accumulates when `accumulate`). The gradient
   * norm is the square root; any non-finite gradient makes it non-finite. */
  sumSquares(args: { out: Tensor; x: Tensor; accumulate?: boolean }): void;
  /**
   * One AdamW step in place on f32 param, m, v (same size as grad). g = gradScale * grad (gradScale
   * carries clipping and averaging, default 1); m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
   * param -= lr * (m / (1 - b1^step) / (sqrt(v / (1 - b2^step)) + eps) + weightDecay * param)
   * (decoupled weight decay). step counts from 1.
   */
  adamw(args: AdamWArgs): void;
}
