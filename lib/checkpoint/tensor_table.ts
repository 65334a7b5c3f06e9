// The one table of a decoder's parameters: every tensor's HF name and shape, in a fixed order, derived
// from the config. Checkpoint validation, the model's parameter/gradient/optimizer layout and export
// all read it. Shapes use the letters of model_config.ts.

import type { ModelConfig } from "./model_config.ts";

/** Where a parameter belongs, so code can find the ones it needs without parsing names. */
export type ParameterRole =
  | "embed" // [V, C]
  | "attn_norm" // [C]
  | "q_proj" // [H*D, C]
  | "k_proj" // [K*D, C]
  | "v_proj" // [K*D, C]
  | "q_bias" // [H*D]
  | "k_bias" // [K*D]
  | "v_bias" // [K*D]
  | "o_proj" // [C, H*D]
  | "o_bias" // [C]
  | "q_norm" // [D]
  | "k_norm" // [D]
  | "mlp_norm" // [C]
  | "gate_proj" // [F, C]
  | "up_proj" // [F, C]
  | "down_proj" // [C, F]
  | "gate_bias" // [F]
  | "up_bias" // [F]
  | "down_bias" // [C]
  | "final_norm" // [C]
  | "lm_head"; // [V, C], absent when embeddings are tied

/** One parameter tensor. `layer` is null for embeddings, the final norm and the lm head. */
export interface ParameterSpec {
  name: string;
  role: ParameterRole;
  layer: number | null;
  shape: number[];
}

/**
 * Lists every parameter of the model described by `config`, in checkpoint order: embedding, then each
 * layer (attention, then MLP), then the final norm and the lm head (unless tied).
 *
 * @example
 * ```ts
 * const names = parameterTable(config).map((p) => p.name);
 * ```
 */
export function parameterTable(config: ModelConfig): ParameterSpec[] {
  const { vocabSize: V, hiddenSize: C, intermediateSize: F, numHeads: H, numKvHeads: K, headDim: D } = config;
  const specs: ParameterSpec[] = [{
    name: "model.embed_tokens.weight",
    role: "embed",
    layer: null,
    shape: [V, C],
  }];
  for (let layer = 0; layer < config.numLayers; layer++) {
    const p = `model.layers.${layer}`;
    const add = (name: string, role: ParameterRole, shape: number[]) =>
      specs.push({ name: `${p}.${name}`, role, layer, shape });
    add("input_layernorm.weight", "attn_norm", [C]);
    add("self_attn.q_proj.weight", "q_proj", [H * D, C]);
    if (config.qkvBias) add("self_attn.q_proj.bias", "q_bias", [H * D]);
    add("self_attn.k_proj.weight", "k_proj", [K * D, C]);
    if (config.qkvBias) add("self_attn.k_proj.bias", "k_bias", [K * D]);
    add("self_attn.v_proj.weight", "v_proj", [K * D, C]);
    if (config.qkvBias) add("self_attn.v_proj.bias", "v_bias", [K * D]);
    add("self_attn.o_proj.weight", "o_proj", [C, H * D]);
    if (config.outputBias) add("self_attn.o_proj.bias", "o_bias", [C]);
    if (config.qkNorm) {
      add("self_attn.q_norm.weight", "q_norm", [D]);
      add("self_attn.k_norm.weight", "k_norm", [D]);
    }
    add("post_attention_layernorm.weight", "mlp_norm", [C]);
    add("mlp.gate_proj.weight", "gate_proj", [F, C]);
    if (config.mlpBias) add("mlp.gate_proj.bias", "gate_bias", [F]);
    add("mlp.up_proj.weight", "up_proj", [F, C]);
    if (config.mlpBias) add("mlp.up_proj.bias", "up_bias", [F]);
    add("mlp.down_proj.weight", "down_proj", [C, F]);
    if (config.mlpBias) add("mlp.down_proj.bias", "down_bias", [C]);
  }
  specs.push({ name: "model.norm.weight", role: "final_norm", layer: null, shape: [C] });
  if (!config.tieWordEmbeddings) {
    specs.push({ name: "lm_head.weight", role: "lm_head", layer: null, shape: [V, C] });
  }
  return specs;
}
