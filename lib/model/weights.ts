// Views of one layer's (or the model-level) tensors inside a flat parameter-shaped buffer, with the 2-D
// shapes the decoder uses. Built for the parameters and, identically, for the gradients.

import type { ModelConfig } from "../checkpoint/model_config.ts";
import type { ParameterRole } from "../checkpoint/tensor_table.ts";
import type { Engine, Tensor } from "../engine/engine.ts";
import type { ParameterLayout } from "./layout.ts";

/** One decoder layer's tensors (optional ones are absent when the architecture has none). */
export interface LayerTensors {
  attnNorm: Tensor; // [C]
  q: Tensor; // [H*D, C]
  k: Tensor; // [K*D, C]
  v: Tensor; // [K*D, C]
  o: Tensor; // [C, H*D]
  qBias?: Tensor; // [H*D]
  kBias?: Tensor; // [K*D]
  vBias?: Tensor; // [K*D]
  oBias?: Tensor; // [C]
  qNorm?: Tensor; // [D]
  kNorm?: Tensor; // [D]
  mlpNorm: Tensor; // [C]
  gate: Tensor; // [F, C]
  up: Tensor; // [F, C]
  down: Tensor; // [C, F]
  gateBias?: Tensor; // [F]
  upBias?: Tensor; // [F]
  downBias?: Tensor; // [C]
}

/** Every tensor of the model inside one buffer. `head` is the embedding when embeddings are tied. */
export interface ModelTensors {
  embed: Tensor; // [V, C]
  layers: LayerTensors[];
  finalNorm: Tensor; // [C]
  head: Tensor; // [V, C]
}

const LAYER_ROLES: Record<keyof LayerTensors, ParameterRole> = {
  attnNorm: "attn_norm",
  q: "q_proj",
  k: "k_proj",
  v: "v_proj",
  o: "o_proj",
  qBias: "q_bias",
  kBias: "k_bias",
  vBias: "v_bias",
  oBias: "o_bias",
  qNorm: "q_norm",
  kNorm: "k_norm",
  mlpNorm: "mlp_norm",
  gate: "gate_proj",
  up: "up_proj",
  down: "down_proj",
  gateBias: "gate_bias",
  upBias: "up_bias",
  downBias: "down_bias",
};

/**
 * Views of every parameter inside `buffer` (a parameter-sized tensor: the parameters or the gradients).
 *
 * @example
 * ```ts
 * const grads = modelTensors(engine, gradBuffer, layout, config);
 * engine.fill({ out: grads.layers[0].q, value: 0 });
 * ```
 */
export function modelTensors(
  engine: Engine,
  buffer: Tensor,
  layout: ParameterLayout,
  config: ModelConfig,
): ModelTensors {
  const byRole = new Map<string, Tensor>();
  for (const slot of layout.slots) {
    byRole.set(`${slot.layer}:${slot.role}`, engine.view(buffer, slot.shape, slot.offset));
  }
  const get = (role: ParameterRole, layer: number | null) => byRole.get(`${layer}:${role}`);
  const layers = Array.from({ length: config.numLayers }, (_, layer) => {
    const tensors: Partial<Record<keyof LayerTensors, Tensor>> = {};
    for (const [key, role] of Object.entries(LAYER_ROLES) as [keyof LayerTensors, ParameterRole][]) {
      const t = get(role, layer);
      if (t) tensors[key] = t;
    }
    return tensors as LayerTensors;
  });
  const embed = get("embed", null)!;
  return { embed, layers, finalNorm: get("final_norm", null)!, head: get("lm_head", null) ?? embed };
}
