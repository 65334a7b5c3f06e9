// The decoder as an object the training loop and evaluation use: parameters and gradients in one
// engine buffer each (laid out by layout.ts), forward to logits, forward+backward to a loss.

import type { ModelConfig, RopeConfig } from "../checkpoint/model_config.ts";
import { ShapeError } from "../errors.ts";
import { type Engine, IGNORE_INDEX, type Tensor } from "../engine/engine.ts";
import { type Activations, allocateActivations } from "./activations.ts";
import { decoderBackward, type DecoderContext, decoderForward } from "./decoder.ts";
import { type ParameterLayout, parameterLayout } from "./layout.ts";
import { ropeTables } from "./rope_tables.ts";
import { type ModelTensors, modelTensors } from "./weights.ts";

/** Storage of the working weights and activations: "f32", or "bf16" (f32 master parameters and
 * gradients, a bf16 copy of the parameters refreshed at the start of every pass, bf16 activations). */
export type Precision = "f32" | "bf16";

/** How the model runs. */
export interface ModelOptions {
  /** Default "f32". */
  precision?: Precision;
  /** Keep only each layer's input, attention output and lse between forward and backward, and
   * recompute the rest (all but attention) layer by layer in the backward. Default false. */
  checkpointing?: boolean;
}

/** Token batch options: `batch` rows of equal length (B, default 1) and optional positions per token. */
export interface BatchOptions {
  batch?: number;
  /** Absolute position of every token ([B*T]; default 0..T-1 in each row). */
  positions?: Int32Array;
}

/**
 * A decoder on an engine.
 *
 * @example
 * ```ts
 * const model = Model.create(new CpuEngine(), config, { weights });
 * const loss = await model.forwardBackward(inputs, targets, { batch: 2 }); // grads accumulate
 * const logits = await model.forward(inputs, { batch: 2 }); // [B, T, V]
 * ```
 */
export class Model {
  /** The parameters, f32 [P] in layout order. */
  readonly params: Tensor;
  /** The gradients, f32 [P] in layout order. */
  readonly grads: Tensor;
  readonly layout: ParameterLayout;
  readonly precision: Precision;
  /** Per-layer activation checkpointing (see ModelOptions). */
  readonly checkpointing: boolean;
  #config: ModelConfig;
  /** The bf16 working copy of `params` (bf16 precision only). */
  #working?: Tensor;
  #weights: ModelTensors;
  #gradTensors: ModelTensors;
  #rope: DecoderContext["rope"];
  #activations?: Activations;

  private constructor(readonly engine: Engine, config: ModelConfig, options: ModelOptions) {
    const precision = options.precision ?? "f32";
    this.#config = config;
    this.precision = precision;
    this.checkpointing = options.checkpointing ?? false;
    this.layout = parameterLayout(config);
    this.params = engine.alloc([this.layout.size]);
    this.grads = engine.alloc([this.layout.size]);
    if (precision === "bf16") this.#working = engine.alloc([this.layout.size], "bf16");
    this.#weights = modelTensors(engine, this.#working ?? this.params, this.layout, config);
    this.#gradTensors = modelTensors(engine, this.grads, this.layout, config);
    this.#rope = ropeTables(engine, config);
  }

  /**
   * A model for `config`. With `weights` (every name of the parameter table, f32 data of the table's
   * shape) the parameters are uploaded, else they are zero until set with setParameter. Throws
   * ShapeError for a missing or wrongly sized tensor.
   */
  static create(
    engine: Engine,
    config: ModelConfig,
    options: ModelOptions & { weights?: Map<string, Float32Array> } = {},
  ): Model {
    const model = new Model(engine, config, options);
    const weights = options.weights;
    if (!weights) return model;
    for (const slot of model.layout.slots) {
      const data = weights.get(slot.name);
      if (!data) throw new ShapeError(`Missing weight "${slot.name}"`, { tensor: slot.name });
      model.setParameter(slot.name, data);
    }
    return model;
  }

  /** The normalized config, with the RoPE settings in use. */
  get config(): ModelConfig {
    return this.#config;
  }

  /** Replaces the RoPE settings (e.g. plain vs HARPE bases) for later passes; weights are unchanged. */
  setRope(rope: RopeConfig): void {
    this.#config = { ...this.#config, rope };
    this.#rope = ropeTables(this.engine, this.#config);
    this.#activations = undefined;
  }

  /** A view of one parameter inside `params` (by HF name). */
  parameter(name: string): Tensor {
    return this.engine.view(this.params, this.#slot(name).shape, this.#slot(name).offset);
  }

  /** A view of one parameter's gradient inside `grads`. */
  gradient(name: string): Tensor {
    return this.engine.view(this.grads, this.#slot(name).shape, this.#slot(name).offset);
  }

  /** Uploads one parameter's values (f32, the table's element count). */
  setParameter(name: string, data: Float32Array): void {
    const slot = this.#slot(name);
    if (data.length !== slot.size) {
      throw new ShapeError(
        `Weight "${name}" has ${data.length} values, expected ${slot.size} ([${slot.shape}])`,
        {
          tensor: name,
          expected: slot.size,
          actual: data.length,
        },
      );
    }
    this.engine.upload(this.parameter(name), data);
  }

  /** Sets every gradient to zero. */
  zeroGrads(): void {
    this.engine.fill({ out: this.grads, value: 0 });
  }

  /** Logits f32 [B, T, V] of `tokens` ([B*T]). Materializes all logits: for evaluation and checks. */
  async forward(tokens: Int32Array, options: BatchOptions = {}): Promise<Float32Array> {
    const act = this.#prepare(tokens, options);
    decoderForward(this.#context(), act);
    const { vocabSize: V } = this.#config;
    const logits = this.engine.alloc([tokens.length, V]);
    try {
      this.engine.matmul({ out: logits, a: act.lnf, b: this.#weights.head, transB: true });
      return await this.engine.download(logits) as Float32Array;
    } finally {
      this.engine.free(logits);
    }
  }

  /**
   * Mean cross-entropy of `targets` ([B*T] token ids, IGNORE_INDEX for none) given `inputs` ([B*T]),
   * and its gradient times `gradScale` (default 1) added to `grads`.
   */
  async forwardBackward(
    inputs: Int32Array,
    targets: Int32Array,
    options: BatchOptions & { gradScale?: number } = {},
  ): Promise<number> {
    if (targets.length !== inputs.length) {
      throw new ShapeError(`targets has ${targets.length} tokens, inputs ${inputs.length}`, {
        expected: inputs.length,
        actual: targets.length,
      });
    }
    const counted = targets.reduce((n, t) => n + (t === IGNORE_INDEX ? 0 : 1), 0);
    if (counted === 0) throw new ShapeError("No target tokens: every target is IGNORE_INDEX");
    const act = this.#prepare(inputs, options);
    this.engine.upload(act.targets, targets);
    const ctx = this.#context();
    decoderForward(ctx, act);
    decoderBackward(ctx, act, this.#gradTensors, (options.gradScale ?? 1) / counted);
    const losses = await this.engine.download(act.losses);
    let sum = 0;
    for (const l of losses) sum += l;
    return sum / counted;
  }

  /** Every parameter by HF name, in table order, as f32 copies. */
  async exportWeights(): Promise<Map<string, Float32Array>> {
    const all = await this.engine.download(this.params) as Float32Array;
    return new Map(this.layout.slots.map((s) => [s.name, all.slice(s.offset, s.offset + s.size)]));
  }

  /** Every gradient by HF name (as exportWeights). */
  async exportGradients(): Promise<Map<string, Float32Array>> {
    const all = await this.engine.download(this.grads) as Float32Array;
    return new Map(this.layout.slots.map((s) => [s.name, all.slice(s.offset, s.offset + s.size)]));
  }

  /** Frees the model's engine memory. */
  dispose(): void {
    this.#freeActivations();
    this.engine.free(this.params);
    this.engine.free(this.grads);
    if (this.#working) this.engine.free(this.#working);
  }

  #slot(name: string) {
    const slot = this.layout.byName.get(name);
    if (!slot) throw new ShapeError(`The model has no parameter "${name}"`, { tensor: name });
    return slot;
  }

  #context(): DecoderContext {
    return { engine: this.engine, config: this.#config, weights: this.#weights, rope: this.#rope };
  }

  #freeActivations(): void {
    for (const t of this.#activations?.all ?? []) this.engine.free(t);
    this.#activations = undefined;
  }

  #prepare(tokens: Int32Array, options: BatchOptions): Activations {
    const batch = options.batch ?? 1;
    const seq = tokens.length / batch;
    if (!Number.isInteger(batch) || batch < 1 || !Number.isInteger(seq) || seq < 1) {
      throw new ShapeError(`${tokens.length} tokens do not split into ${batch} rows`, {
        expected: `a multiple of ${batch}`,
        actual: tokens.length,
      });
    }
    if (this.#activations?.batch !== batch || this.#activations.seq !== seq) {
      this.#freeActivations();
      this.#activations = allocateActivations(this.engine, this.#config, {
        batch,
        seq,
        keyHeads: this.#rope.key.shape[0],
        dtype: this.precision,
        checkpointing: this.checkpointing,
      });
    }
    const act = this.#activations;
    const positions = options.positions ?? Int32Array.from({ length: tokens.length }, (_, i) => i % seq);
    if (positions.length !== tokens.length) {
      throw new ShapeError(`positions has ${positions.length} entries, tokens ${tokens.length}`, {
        expected: tokens.length,
        actual: positions.length,
      });
    }
    this.engine.upload(act.tokens, tokens);
    this.engine.upload(act.positions, positions);
    if (this.#working) this.engine.copy({ out: this.#working, x: this.params });
    return act;
  }
}
