// Checks a checkpoint's tensors against the parameter table its config implies: every parameter present
// with the right shape and a float dtype, and nothing unexpected. Failures are ShapeErrors naming the tensor.

import { ShapeError, UnsupportedError } from "../errors.ts";
import type { DType } from "../safetensors/mod.ts";
import type { ModelConfig } from "./model_config.ts";
import { type ParameterSpec, parameterTable } from "./tensor_table.ts";

/** Weight dtypes a checkpoint may store (anything else, e.g. quantized integers, is refused). */
export const WEIGHT_DTYPES: readonly DType[] = ["F32", "BF16", "F16", "F64"];

/** Saved buffers that are not parameters; HF ignores them on load, and so does harpe. */
export const IGNORED_TENSOR_PATTERN = /\.rotary_emb\.inv_freq$/;

/** What validation needs to know of each stored tensor. */
export interface StoredTensor {
  dtype: DType;
  shape: number[];
  /** The file holding it, for messages. */
  file: string;
}

const showShape = (shape: number[]) => `[${shape.join(", ")}]`;

function unexpectedHint(name: string, config: ModelConfig): string {
  if (name === "lm_head.weight" && config.tieWordEmbeddings) {
    return 'config.json has "tie_word_embeddings": true, so the checkpoint must not store lm_head.weight';
  }
  if (name.endsWith(".bias")) return "config.json does not enable biases there (attention_bias / mlp_bias)";
  return `config.json describes a ${config.architectureClass} with ${config.numLayers} layers; check that they match`;
}

/**
 * Checks `tensors` (name -> stored dtype and shape) against `parameterTable(config)` and returns the
 * parameter specs in table order. Throws ShapeError for a missing, unexpected or wrongly shaped tensor,
 * UnsupportedError for a non-float dtype.
 *
 * @example
 * ```ts
 * const specs = checkTensors(config, new Map([["model.norm.weight", { dtype: "F32", shape: [64], file: "a" }]]));
 * ```
 */
export function checkTensors(
  config: ModelConfig,
  tensors: Map<string, StoredTensor>,
  options: { source?: string } = {},
): ParameterSpec[] {
  const where = options.source ? ` in checkpoint "${options.source}"` : "";
  const specs = parameterTable(config);
  const expected = new Set(specs.map((spec) => spec.name));
  for (const [name, stored] of tensors) {
    if (expected.has(name) || IGNORED_TENSOR_PATTERN.test(name)) continue;
    throw new ShapeError(`Unexpected tensor "${name}" ${showShape(stored.shape)} in "${stored.file}"`, {
      file: stored.file,
      tensor: name,
      expected: "no such tensor",
      actual: stored.shape,
      hint: unexpectedHint(name, config),
    });
  }
  for (const spec of specs) {
    const stored = tensors.get(spec.name);
    if (!stored) {
      throw new ShapeError(
        `Missing tensor "${spec.name}"${where} (expected shape ${showShape(spec.shape)})`,
        {
          file: options.source,
          tensor: spec.name,
          expected: spec.shape,
          actual: "missing",
          hint: "the checkpoint does not match its config.json",
        },
      );
    }
    const sameShape = stored.shape.length === spec.shape.length &&
      stored.shape.every((dim, i) => dim === spec.shape[i]);
    if (!sameShape) {
      throw new ShapeError(
        `Tensor "${spec.name}" in "${stored.file}" has shape ${showShape(stored.shape)}, expected ${
          showShape(spec.shape)
        } from config.json`,
        { file: stored.file, tensor: spec.name, expected: spec.shape, actual: stored.shape },
      );
    }
    if (!WEIGHT_DTYPES.includes(stored.dtype)) {
      throw new UnsupportedError(
        `Tensor "${spec.name}" in "${stored.file}" has dtype ${stored.dtype}, which harpe cannot load`,
        {
          file: stored.file,
          tensor: spec.name,
          expected: WEIGHT_DTYPES,
          actual: stored.dtype,
          hint: `supported weight dtypes: ${WEIGHT_DTYPES.join(", ")}`,
        },
      );
    }
  }
  return specs;
}
