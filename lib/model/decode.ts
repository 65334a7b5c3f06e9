// Inference without a backward (owned by the evaluation work, beside the model engineer's files): a
// layer-by-layer forward that keeps one layer's buffers, with a KV cache for greedy generation, and
// per-token losses for perplexity. Built only on engine-interface ops, so it runs on every engine.
//
// KV cache, per layer: f32/bf16 [S, Hk*D + K*D] (S = cache capacity): row t = [rotated key of token t
// for every key head | value of token t for every value head]. A prefill of T tokens computes the
// layer like the training forward (causal attention over its own keys) and writes its rows with two
// matmuls by 0/1 selector matrices (row = kRot @ Sk + v @ Sv). A step with one new token attends over
// rows 0..t through the fused cross-entropy op: with hidden row h = [q_h / sqrt(D) in the slot of its
// key head, 0 elsewhere] and weight = the cache rows, the op's logits are the attention scores and its
// dhidden = (softmax - onehot(target 0)) @ rows, whose value slot is sum_t p_t v_t - v_0: adding v_0
// back gives the attention output. No new engine op is needed (the price: H x (Hk*D + K*D) MACs per
// cached token instead of H x 2D, fine for generating answers after a long prefill).

import type { ModelConfig } from "../checkpoint/model_config.ts";
import { ShapeError } from "../errors.ts";
import type { Engine, Tensor, TensorDType } from "../engine/engine.ts";
import type { RopeTables } from "./decoder.ts";
import type { Model } from "./model.ts";
import { ropeTables } from "./rope_tables.ts";
import { type LayerTensors, type ModelTensors, modelTensors } from "./weights.ts";

/** Options of {@link DecodeSession.create}. */
export interface DecodeOptions {
  /** Cache capacity in tokens (prompt + generated). */
  maxTokens: number;
  /** Storage of the cache; default f32 (the CPU engine computes in f32 only). */
  cacheDtype?: TensorDType;
}

/** Buffers of one pass over T tokens, reused by every layer. */
interface Scratch {
  t: number;
  x: Tensor; // [T, C] residual stream
  ln: Tensor; // [T, C]
  rstd: Tensor; // [T]
  q: Tensor; // [T, H, D]
  k: Tensor; // [T, K, D]
  v: Tensor; // [T, K, D]
  qNormed?: Tensor; // [T, H, D]
  kNormed?: Tensor; // [T, K, D]
  qRstd?: Tensor; // [T*H]
  kRstd?: Tensor; // [T*K]
  kRot: Tensor; // [T, Hk, D]
  att: Tensor; // [T, H, D]
  lse: Tensor; // [1, H, T]
  mid: Tensor; // [T, C]
  gate: Tensor; // [T, F]
  up: Tensor; // [T, F]
  act: Tensor; // [T, F]
  positions: Tensor; // i32 [T]
  all: Tensor[];
}

/** The tensors a pass reads: engine, config, weights and RoPE tables of a model. */
interface Parts {
  engine: Engine;
  config: ModelConfig;
  weights: ModelTensors;
  rope: RopeTables;
  /** Rotated key heads Hk (K, or H at `query` granularity). */
  keyHeads: number;
}

function modelParts(model: Model): Parts {
  const engine = model.engine;
  const rope = ropeTables(engine, model.config);
  return {
    engine,
    config: model.config,
    weights: modelTensors(engine, model.params, model.layout, model.config),
    rope,
    keyHeads: rope.key.shape[0],
  };
}

function freeParts(parts: Parts): void {
  parts.engine.free(parts.rope.query);
  if (parts.rope.key !== parts.rope.query) parts.engine.free(parts.rope.key);
}

function allocScratch(parts: Parts, t: number): Scratch {
  const { engine: e, config, keyHeads: Hk } = parts;
  const { hiddenSize: C, intermediateSize: F, numHeads: H, numKvHeads: K, headDim: D } = config;
  const all: Tensor[] = [];
  const alloc = (shape: number[], dtype: TensorDType = "f32") => {
    const tensor = e.alloc(shape, dtype);
    all.push(tensor);
    return tensor;
  };
  const k = alloc([t, K, D]);
  const kNormed = config.qkNorm ? alloc([t, K, D]) : undefined;
  return {
    t,
    x: alloc([t, C]),
    ln: alloc([t, C]),
    rstd: alloc([t]),
    q: alloc([t, H, D]),
    k,
    v: alloc([t, K, D]),
    qNormed: config.qkNorm ? alloc([t, H, D]) : undefined,
    kNormed,
    qRstd: config.qkNorm ? alloc([t * H]) : undefined,
    kRstd: config.qkNorm ? alloc([t * K]) : undefined,
    kRot: Hk === K ? (kNormed ?? k) : alloc([t, Hk, D]),
    att: alloc([t, H, D]),
    lse: alloc([1, H, t]),
    mid: alloc([t, C]),
    gate: alloc([t, F]),
    up: alloc([t, F]),
    act: alloc([t, F]),
    positions: alloc([t], "i32"),
    all,
  };
}

function freeScratch(e: Engine, s: Scratch): void {
  for (const tensor of s.all) e.free(tensor);
}

function linear(e: Engine, y: Tensor, x: Tensor, w: Tensor, bias?: Tensor): void {
  e.matmul({ out: y, a: x, b: w, transB: true });
  if (bias) e.biasAdd({ out: y, bias });
}

function rows(e: Engine, t: Tensor, cols: number): Tensor {
  return e.view(t, [t.size / cols, cols]);
}

/**
 * The attention half of a layer up to rotated queries and keys: writes s.q (rotated, possibly via
 * s.qNormed), s.kRot and s.v for the tokens at s.positions. Returns the rotated query tensor.
 */
function projectAndRotate(parts: Parts, w: LayerTensors, s: Scratch): Tensor {
  const { engine: e, config, keyHeads: Hk } = parts;
  const { numHeads: H, numKvHeads: K, headDim: D, rmsNormEps: eps } = config;
  e.rmsnormForward({ out: s.ln, rstd: s.rstd, x: s.x, weight: w.attnNorm, eps });
  linear(e, rows(e, s.q, H * D), s.ln, w.q, w.qBias);
  linear(e, rows(e, s.k, K * D), s.ln, w.k, w.kBias);
  linear(e, rows(e, s.v, K * D), s.ln, w.v, w.vBias);
  if (s.qNormed && s.kNormed && s.qRstd && s.kRstd && w.qNorm && w.kNorm) {
    e.rmsnormForward({ out: s.qNormed, rstd: s.qRstd, x: s.q, weight: w.qNorm, eps });
    e.rmsnormForward({ out: s.kNormed, rstd: s.kRstd, x: s.k, weight: w.kNorm, eps });
  }
  const q = s.qNormed ?? s.q;
  e.ropeForward({ out: q, x: q, invFreq: parts.rope.query, positions: s.positions });
  e.ropeForward({
    out: e.view(s.kRot, [s.t, Hk, D]),
    x: s.kNormed ?? s.k,
    invFreq: parts.rope.key,
    positions: s.positions,
  });
  return q;
}

/** The rest of a layer after attention wrote s.att: output projection, residual, MLP, residual. */
function finishLayer(parts: Parts, w: LayerTensors, s: Scratch): void {
  const { engine: e, config } = parts;
  const { numHeads: H, headDim: D, rmsNormEps: eps } = config;
  linear(e, s.mid, rows(e, s.att, H * D), w.o, w.oBias);
  e.add({ out: s.mid, a: s.mid, b: s.x });
  e.rmsnormForward({ out: s.ln, rstd: s.rstd, x: s.mid, weight: w.mlpNorm, eps });
  linear(e, s.gate, s.ln, w.gate, w.gateBias);
  linear(e, s.up, s.ln, w.up, w.upBias);
  e.swigluForward({ out: s.act, gate: s.gate, up: s.up });
  linear(e, s.x, s.act, w.down, w.downBias);
  e.add({ out: s.x, a: s.x, b: s.mid });
}

/** Causal attention of the T tokens in s over themselves (positions 0..T-1 of one row). */
function selfAttention(parts: Parts, s: Scratch, q: Tensor): void {
  const { engine: e, config, keyHeads: Hk } = parts;
  const { numHeads: H, numKvHeads: K, headDim: D } = config;
  e.attentionForward({
    out: e.view(s.att, [1, s.t, H, D]),
    lse: s.lse,
    q: e.view(q, [1, s.t, H, D]),
    k: e.view(s.kRot, [1, s.t, Hk, D]),
    v: e.view(s.v, [1, s.t, K, D]),
  });
}

/** Embeds `tokens` into s.x and uploads their positions. */
function embed(parts: Parts, s: Scratch, tokens: Int32Array, firstPosition: number): void {
  const e = parts.engine;
  const ids = e.alloc([tokens.length], "i32");
  try {
    e.upload(ids, tokens);
    e.embeddingForward({ out: s.x, table: parts.weights.embed, tokens: ids });
  } finally {
    e.free(ids);
  }
  e.upload(s.positions, Int32Array.from({ length: tokens.length }, (_, i) => firstPosition + i));
}

/**
 * Per-token losses of a sequence without a backward and without materializing the logits:
 * losses[i] = -log p(targets[i] | tokens[0..i]) (0 where targets[i] is IGNORE_INDEX). Positions are
 * 0..T-1. Memory: one layer's buffers for T tokens.
 *
 * @example
 * ```ts
 * const losses = await tokenLosses(model, Int32Array.of(5, 9, 2), Int32Array.of(9, 2, IGNORE_INDEX));
 * ```
 */
export async function tokenLosses(
  model: Model,
  tokens: Int32Array,
  targets: Int32Array,
): Promise<Float32Array> {
  if (targets.length !== tokens.length || tokens.length === 0) {
    throw new ShapeError(
      `tokenLosses needs as many targets as tokens (at least 1), got ${targets.length} and ${tokens.length}`,
      {
        expected: tokens.length,
        actual: targets.length,
      },
    );
  }
  const parts = modelParts(model);
  const e = parts.engine;
  const s = allocScratch(parts, tokens.length);
  const extra: Tensor[] = [];
  try {
    embed(parts, s, tokens, 0);
    for (const w of parts.weights.layers) {
      selfAttention(parts, s, projectAndRotate(parts, w, s));
      finishLayer(parts, w, s);
    }
    e.rmsnormForward({
      out: s.ln,
      rstd: s.rstd,
      x: s.x,
      weight: parts.weights.finalNorm,
      eps: parts.config.rmsNormEps,
    });
    const targetTensor = e.alloc([tokens.length], "i32");
    const losses = e.alloc([tokens.length]);
    extra.push(targetTensor, losses);
    e.upload(targetTensor, targets);
    e.crossEntropy({ losses, hidden: s.ln, weight: parts.weights.head, targets: targetTensor });
    return await e.download(losses) as Float32Array;
  } finally {
    for (const tensor of extra) e.free(tensor);
    freeScratch(e, s);
    freeParts(parts);
  }
}

/**
 * A KV-cached decoding session: `prefill` the prompt once, then `step` one token at a time; each
 * returns the logits f32 [V] of the next token. The results equal a full forward over all tokens so
 * far (up to float rounding).
 *
 * @example
 * ```ts
 * const session = DecodeSession.create(model, { maxTokens: 200 });
 * let logits = await session.prefill(Int32Array.from(prompt));
 * logits = await session.step(argmax(logits));
 * session.dispose();
 * ```
 */
export class DecodeSession {
  #parts: Parts;
  #caches: Tensor[];
  #rowSize: number;
  #length = 0;
  #step: Scratch;
  #selectKey: Tensor; // [Hk*D, rowSize]: identity into the key slot
  #selectValue: Tensor; // [K*D, rowSize]: identity into the value slot
  #cacheDtype: TensorDType;
  #hidden: Tensor; // [H, rowSize] (cache dtype): the cross-entropy "hidden" rows of a step
  #dhidden: Tensor; // [H, rowSize] (cache dtype)
  #rowStaging: Tensor; // f32 [1, rowSize]: a step's cache row before it is cast into a bf16 cache
  #valueStaging: Tensor; // f32 [D]: one cached value, widened
  #losses: Tensor; // [H]
  #targets: Tensor; // i32 [H], all zero
  #logits: Tensor; // [1, V]

  private constructor(parts: Parts, readonly maxTokens: number, cacheDtype: TensorDType) {
    const { engine: e, config, keyHeads: Hk } = parts;
    const { numHeads: H, numKvHeads: K, headDim: D, vocabSize: V } = config;
    this.#parts = parts;
    this.#rowSize = Hk * D + K * D;
    this.#caches = Array.from(
      { length: config.numLayers },
      () => e.alloc([maxTokens, this.#rowSize], cacheDtype),
    );
    this.#step = allocScratch(parts, 1);
    this.#selectKey = e.alloc([Hk * D, this.#rowSize]);
    this.#selectValue = e.alloc([K * D, this.#rowSize]);
    e.upload(this.#selectKey, selector(Hk * D, this.#rowSize, 0));
    e.upload(this.#selectValue, selector(K * D, this.#rowSize, Hk * D));
    this.#cacheDtype = cacheDtype;
    this.#hidden = e.alloc([H, this.#rowSize], cacheDtype);
    this.#dhidden = e.alloc([H, this.#rowSize], cacheDtype);
    this.#rowStaging = e.alloc([1, this.#rowSize]);
    this.#valueStaging = e.alloc([D]);
    this.#losses = e.alloc([H]);
    this.#targets = e.alloc([H], "i32");
    this.#logits = e.alloc([1, V]);
  }

  /** A session for `model` (its current weights and RoPE settings) holding up to `maxTokens` tokens. */
  static create(model: Model, options: DecodeOptions): DecodeSession {
    if (!Number.isInteger(options.maxTokens) || options.maxTokens < 1) {
      throw new ShapeError(`maxTokens must be a positive integer, got ${options.maxTokens}`, {
        actual: options.maxTokens,
      });
    }
    return new DecodeSession(modelParts(model), options.maxTokens, options.cacheDtype ?? "f32");
  }

  /** Tokens in the cache. */
  get length(): number {
    return this.#length;
  }

  /** Empties the cache so the session can take a new prompt (its buffers are kept). */
  reset(): void {
    this.#length = 0;
  }

  /** Runs the prompt (positions 0..T-1) into an empty cache; returns the logits after its last token. */
  async prefill(tokens: Int32Array): Promise<Float32Array> {
    if (this.#length !== 0) {
      throw new ShapeError(`prefill needs an empty cache; it holds ${this.#length} tokens`, {
        actual: this.#length,
      });
    }
    this.#checkRoom(tokens.length);
    if (tokens.length === 0) throw new ShapeError("prefill needs at least one token");
    const parts = this.#parts;
    const e = parts.engine;
    const s = allocScratch(parts, tokens.length);
    try {
      embed(parts, s, tokens, 0);
      parts.weights.layers.forEach((w, l) => {
        const q = projectAndRotate(parts, w, s);
        this.#writeRows(l, s, 0);
        selfAttention(parts, s, q);
        finishLayer(parts, w, s);
      });
      this.#length = tokens.length;
      return await this.#lastLogits(s);
    } finally {
      freeScratch(e, s);
    }
  }

  /** Appends one token (at position `length`) and returns the logits of the token after it. */
  async step(token: number): Promise<Float32Array> {
    this.#checkRoom(1);
    if (this.#length === 0) throw new ShapeError("step needs a prefilled cache; call prefill first");
    const parts = this.#parts;
    const s = this.#step;
    const position = this.#length;
    embed(parts, s, Int32Array.of(token), position);
    parts.weights.layers.forEach((w, l) => {
      const q = projectAndRotate(parts, w, s);
      this.#writeRows(l, s, position);
      this.#cachedAttention(l, q, position + 1);
      finishLayer(parts, w, s);
    });
    this.#length++;
    return await this.#lastLogits(s);
  }

  /** Frees the cache and every buffer of the session (the model is untouched). */
  dispose(): void {
    const e = this.#parts.engine;
    for (const tensor of this.#caches) e.free(tensor);
    freeScratch(e, this.#step);
    for (
      const tensor of [
        this.#selectKey,
        this.#selectValue,
        this.#hidden,
        this.#dhidden,
        this.#rowStaging,
        this.#valueStaging,
        this.#losses,
        this.#targets,
        this.#logits,
      ]
    ) e.free(tensor);
    freeParts(this.#parts);
    this.#caches = [];
  }

  #checkRoom(tokens: number): void {
    if (this.#length + tokens > this.maxTokens) {
      throw new ShapeError(`The KV cache holds ${this.maxTokens} tokens; ${this.#length + tokens} needed`, {
        expected: `<= ${this.maxTokens}`,
        actual: this.#length + tokens,
        hint: "create the session with a larger maxTokens",
      });
    }
  }

  /** Cache rows [first, first + T) of layer l = [kRot | v] of the tokens in s (computed in f32, then
   * cast when the cache is bf16: engines multiply f32 inputs into f32 outputs only). */
  #writeRows(layer: number, s: Scratch, first: number): void {
    const { engine: e, config, keyHeads: Hk } = this.#parts;
    const { numKvHeads: K, headDim: D } = config;
    const target = e.view(this.#caches[layer], [s.t, this.#rowSize], first * this.#rowSize);
    const staging = this.#cacheDtype === "f32"
      ? target
      : s.t === 1
      ? this.#rowStaging
      : e.alloc([s.t, this.#rowSize]);
    e.matmul({ out: staging, a: rows(e, s.kRot, Hk * D), b: this.#selectKey });
    e.matmul({ out: staging, a: rows(e, s.v, K * D), b: this.#selectValue, beta: 1 });
    if (staging === target) return;
    e.copy({ out: target, x: staging });
    if (staging !== this.#rowStaging) e.free(staging);
  }

  /** s.att of one query (rotated q [1, H, D]) over cache rows 0..cached-1 of layer l. */
  #cachedAttention(layer: number, q: Tensor, cached: number): void {
    const { engine: e, config, keyHeads: Hk } = this.#parts;
    const { numHeads: H, numKvHeads: K, headDim: D } = config;
    const row = this.#rowSize;
    e.scale({ x: q, alpha: 1 / Math.sqrt(D) });
    e.fill({ out: this.#hidden, value: 0 });
    for (let h = 0; h < H; h++) {
      const keyHead = Math.floor(h / (H / Hk));
      e.copy({ out: e.view(this.#hidden, [D], h * row + keyHead * D), x: e.view(q, [D], h * D) });
    }
    const cache = this.#caches[layer];
    e.crossEntropy({
      losses: this.#losses,
      hidden: this.#hidden,
      weight: e.view(cache, [cached, row]),
      targets: this.#targets,
      dhidden: this.#dhidden,
    });
    for (let h = 0; h < H; h++) {
      const valueSlot = Hk * D + Math.floor(h / (H / K)) * D;
      const out = e.view(this.#step.att, [D], h * D);
      e.copy({ out, x: e.view(this.#dhidden, [D], h * row + valueSlot) });
      e.copy({ out: this.#valueStaging, x: e.view(cache, [D], valueSlot) });
      e.add({ out, a: out, b: this.#valueStaging });
    }
  }

  async #lastLogits(s: Scratch): Promise<Float32Array> {
    const { engine: e, config, weights } = this.#parts;
    const C = config.hiddenSize;
    const last = e.view(s.x, [1, C], (s.t - 1) * C);
    const ln = e.view(s.ln, [1, C], (s.t - 1) * C);
    const rstd = e.view(s.rstd, [1], s.t - 1);
    e.rmsnormForward({ out: ln, rstd, x: last, weight: weights.finalNorm, eps: config.rmsNormEps });
    e.matmul({ out: this.#logits, a: ln, b: weights.head, transB: true });
    return await e.download(this.#logits) as Float32Array;
  }
}

/** A [rows, cols] 0/1 matrix with ones at (i, offset + i): copies a [T, rows] block into columns offset.. */
function selector(rowCount: number, cols: number, offset: number): Float32Array {
  const m = new Float32Array(rowCount * cols);
  for (let i = 0; i < rowCount; i++) m[i * cols + offset + i] = 1;
  return m;
}
