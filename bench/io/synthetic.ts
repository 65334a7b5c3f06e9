// Builds a synthetic Llama-shaped f32 checkpoint (random-looking weights, sharded) for the I/O bench.

import { parameterTable, parseConfig, writeCheckpoint } from "../../lib/checkpoint/mod.ts";

/** TinyLlama-like shape (C 2048, F 5632, 32 heads / 4 key heads, V 32000) with 9 layers: ~2.1 GB in f32. */
export const SYNTHETIC_CONFIG: Readonly<Record<string, unknown>> = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 2048,
  intermediate_size: 5632,
  num_hidden_layers: 9,
  num_attention_heads: 32,
  num_key_value_heads: 4,
  head_dim: 64,
  hidden_act: "silu",
  max_position_embeddings: 2048,
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  tie_word_embeddings: false,
  torch_dtype: "float32",
  vocab_size: 32000,
  bos_token_id: 1,
  eos_token_id: 2,
};

/** Elements of the random block tiled into every tensor (tiling keeps generation cheap). */
const BLOCK_ELEMENTS = 1 << 20;
/** Shard size of the source checkpoint. */
const SOURCE_SHARD_BYTES = 1_000_000_000;

/** What was built: total bytes of tensor data and the largest tensor. */
export interface SyntheticCheckpoint {
  dir: string;
  totalBytes: number;
  largestTensorBytes: number;
  tensors: number;
}

/**
 * Writes the synthetic checkpoint to `dir` (which must not exist) in shards of 1 GB.
 *
 * @example
 * ```ts
 * const { totalBytes } = await buildSyntheticCheckpoint("/tmp/src");
 * ```
 */
export async function buildSyntheticCheckpoint(dir: string): Promise<SyntheticCheckpoint> {
  const config = parseConfig({ ...SYNTHETIC_CONFIG });
  const block = new Float32Array(BLOCK_ELEMENTS);
  let state = 12345;
  for (let i = 0; i < block.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    block[i] = (state / 2 ** 32 - 0.5) * 0.04;
  }
  const specs = parameterTable(config);
  const tensors = specs.map((spec) => ({
    name: spec.name,
    dtype: "F32" as const,
    shape: spec.shape,
    read: () => {
      const n = spec.shape.reduce((a, b) => a * b, 1);
      const values = new Float32Array(n);
      for (let at = 0; at < n; at += BLOCK_ELEMENTS) {
        values.set(block.subarray(0, Math.min(BLOCK_ELEMENTS, n - at)), at);
      }
      return Promise.resolve(new Uint8Array(values.buffer));
    },
  }));
  const sizes = specs.map((s) => 4 * s.shape.reduce((a, b) => a * b, 1));
  await writeCheckpoint(dir, { config: { ...SYNTHETIC_CONFIG }, tensors }, {
    shardSize: SOURCE_SHARD_BYTES,
    progress: false,
  });
  return {
    dir,
    totalBytes: sizes.reduce((a, b) => a + b, 0),
    largestTensorBytes: Math.max(...sizes),
    tensors: specs.length,
  };
}
