// AdamW over a model's flat f32 parameter buffer, run by the engine's adamw op: m and v mirror the
// parameter layout (one allocation each), weight decay applies to matrices only (not to norms or
// biases), and the global gradient norm drives clipping.

import type { Engine, Tensor } from "../engine/engine.ts";
import type { ParameterLayout } from "../model/layout.ts";
import { ShapeError } from "../errors.ts";

/** AdamW hyper-parameters (train.yaml `optimizer`). */
export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay, applied to parameters with two or more dims. */
  weightDecay: number;
}

/** Host copies of the optimizer state, in layout order ([P] each). */
export interface AdamWState {
  m: Float32Array;
  v: Float32Array;
}

/**
 * AdamW with decoupled weight decay.
 *
 * @example
 * ```ts
 * const opt = new AdamW(engine, layout, { params, grads }, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
 * const norm = await opt.gradNorm();
 * opt.step({ lr: 1e-3, step: 1, gradScale: Math.min(1, 1 / norm) });
 * ```
 */
export class AdamW {
  readonly m: Tensor; // [P]
  readonly v: Tensor; // [P]
  #engine: Engine;
  #layout: ParameterLayout;
  #params: Tensor;
  #grads: Tensor;
  #norm: Tensor;
  #options: AdamWOptions;

  constructor(
    engine: Engine,
    layout: ParameterLayout,
    buffers: { params: Tensor; grads: Tensor },
    options: AdamWOptions,
  ) {
    for (const [name, t] of [["params", buffers.params], ["grads", buffers.grads]] as const) {
      if (t.size !== layout.size || t.dtype !== "f32") {
        throw new ShapeError(
          `AdamW: ${name} must be f32 with ${layout.size} elements, got ${t.dtype} ${t.size}`,
        );
      }
    }
    this.#engine = engine;
    this.#layout = layout;
    this.#params = buffers.params;
    this.#grads = buffers.grads;
    this.#options = options;
    this.m = engine.alloc([layout.size]);
    this.v = engine.alloc([layout.size]);
    this.#norm = engine.alloc([1]);
  }

  /** The L2 norm of the whole gradient buffer (non-finite if any gradient is). */
  async gradNorm(): Promise<number> {
    this.#engine.sumSquares({ out: this.#norm, x: this.#grads });
    const sum = (await this.#engine.download(this.#norm))[0];
    return Math.sqrt(sum);
  }

  /** One update of every parameter with learning rate `lr`; `step` counts from 1, `gradScale`
   * multiplies the gradients first (clipping and accumulation averaging). */
  step(args: { lr: number; step: number; gradScale?: number }): void {
    const { beta1, beta2, eps, weightDecay } = this.#options;
    const e = this.#engine;
    for (const slot of this.#layout.slots) {
      const at = (t: Tensor) => e.view(t, [slot.size], slot.offset);
      e.adamw({
        param: at(this.#params),
        grad: at(this.#grads),
        m: at(this.m),
        v: at(this.v),
        lr: args.lr,
        beta1,
        beta2,
        eps,
        weightDecay: slot.shape.length >= 2 ? weightDecay : 0,
        step: args.step,
        gradScale: args.gradScale ?? 1,
      });
    }
  }

  /** Copies m and v to the host (for checkpoints). */
  async state(): Promise<AdamWState> {
    const m = await this.#engine.download(this.m) as Float32Array;
    const v = await this.#engine.download(this.v) as Float32Array;
    return { m, v };
  }

  /** Restores m and v from {@link AdamW.state}. */
  load(state: AdamWState): void {
    this.#engine.upload(this.m, state.m);
    this.#engine.upload(this.v, state.v);
  }
}
