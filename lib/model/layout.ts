// Where every parameter lives in the model's flat buffers: one offset per parameter of
// parameterTable(config), shared by the parameter, gradient and AdamW m and v buffers.

import type { ModelConfig } from "../checkpoint/model_config.ts";
import { type ParameterRole, type ParameterSpec, parameterTable } from "../checkpoint/tensor_table.ts";

/** One parameter inside the flat buffers: elements offset .. offset + size. */
export interface ParameterSlot extends ParameterSpec {
  offset: number;
  size: number;
}

/** The layout of a model's parameters (and of its gradients and optimizer state, which mirror it). */
export interface ParameterLayout {
  /** Every parameter in checkpoint order; offsets increase. */
  slots: ParameterSlot[];
  /** Total number of elements (= parameter count). */
  size: number;
  /** Slot by HF name. */
  byName: Map<string, ParameterSlot>;
}

/**
 * Lays out the parameters of `config` back to back in table order.
 *
 * @example
 * ```ts
 * const layout = parameterLayout(config);
 * const embed = layout.byName.get("model.embed_tokens.weight")!; // offset 0, [V, C]
 * ```
 */
export function parameterLayout(config: ModelConfig): ParameterLayout {
  let offset = 0;
  const slots = parameterTable(config).map((spec) => {
    const size = spec.shape.reduce((a, b) => a * b, 1);
    const slot = { ...spec, offset, size };
    offset += size;
    return slot;
  });
  return { slots, size: offset, byName: new Map(slots.map((s) => [s.name, s])) };
}

/**
 * The slot of `role` in `layer` (null for the model-level ones), or undefined when the model has none.
 *
 * @example
 * ```ts
 * const q = findSlot(parameterLayout(config), "q_proj", 0); // model.layers.0.self_attn.q_proj.weight
 * ```
 */
export function findSlot(
  layout: ParameterLayout,
  role: ParameterRole,
  layer: number | null,
): ParameterSlot | undefined {
  return layout.slots.find((s) => s.role === role && s.layer === layer);
}
