// What `harpe inspect` reports about a checkpoint or a config.json: architecture, sizes, heads, RoPE
// (with HARPE's per-head bases), dtypes and shards, as one JSON-ready object.

import type { Checkpoint } from "./checkpoint.ts";
import { headBases, type ModelConfig } from "./model_config.ts";
import { parameterTable } from "./tensor_table.ts";

/** The RoPE part of a summary. */
export interface RopeSummary {
  type: string;
  /** The original single base (`rope_theta`). */
  theta: number;
  rotary_dim: number;
  head_dim: number;
  /** `linear`/`llama3` only: the scaling parameters by their HF names. */
  scaling?: Record<string, number>;
  /** HARPE only: granularity, the listed bases, and the base each query head uses. */
  harpe?: { granularity: string; head_bases: number[]; query_head_bases: number[] };
}

/** A summary of a checkpoint (or of a config alone: then `dtypes` and `shards` are null). */
export interface CheckpointSummary {
  path: string;
  architecture: string;
  architecture_class: string;
  parameters: number;
  layers: number;
  hidden_size: number;
  intermediate_size: number;
  vocab_size: number;
  heads: number;
  kv_heads: number;
  head_dim: number;
  tied_embeddings: boolean;
  qkv_bias: boolean;
  qk_norm: boolean;
  rope: RopeSummary;
  max_position_embeddings: number;
  sliding_window: number | null;
  config_dtype: string;
  /** Stored dtypes: how many tensors and bytes each. */
  dtypes: { dtype: string; tensors: number; bytes: number }[] | null;
  /** Weight files: name, tensor count, file size in bytes. */
  shards: { file: string; tensors: number; bytes: number }[] | null;
  warnings: string[];
}

function ropeSummary(config: ModelConfig): RopeSummary {
  const { rope } = config;
  const summary: RopeSummary = {
    type: rope.type,
    theta: rope.theta,
    rotary_dim: rope.rotaryDim,
    head_dim: config.headDim,
  };
  if (rope.scaling) summary.scaling = rope.scaling;
  if (rope.harpe) {
    summary.harpe = {
      granularity: rope.harpe.granularity,
      head_bases: rope.harpe.headBases,
      query_head_bases: headBases(config).query,
    };
  }
  return summary;
}

/**
 * Summarizes a config (no weights needed).
 *
 * @example
 * ```ts
 * const summary = summarizeConfig(await readConfig("model/config.json"), "model/config.json");
 * ```
 */
export function summarizeConfig(config: ModelConfig, path: string): CheckpointSummary {
  const warnings: string[] = [];
  if (config.slidingWindow !== undefined) {
    warnings.push(
      `the checkpoint was trained with a ${config.slidingWindow}-token sliding window; harpe trains and ` +
        "evaluates with full attention, which long context needs",
    );
  }
  return {
    path,
    architecture: config.architecture,
    architecture_class: config.architectureClass,
    parameters: parameterTable(config).reduce((sum, p) => sum + p.shape.reduce((a, b) => a * b, 1), 0),
    layers: config.numLayers,
    hidden_size: config.hiddenSize,
    intermediate_size: config.intermediateSize,
    vocab_size: config.vocabSize,
    heads: config.numHeads,
    kv_heads: config.numKvHeads,
    head_dim: config.headDim,
    tied_embeddings: config.tieWordEmbeddings,
    qkv_bias: config.qkvBias,
    qk_norm: config.qkNorm,
    rope: ropeSummary(config),
    max_position_embeddings: config.maxPositionEmbeddings,
    sliding_window: config.slidingWindow ?? null,
    config_dtype: config.dtype,
    dtypes: null,
    shards: null,
    warnings,
  };
}

/**
 * Summarizes an opened checkpoint: the config summary plus stored dtypes and shard sizes.
 *
 * @example
 * ```ts
 * const summary = await summarizeCheckpoint(await Checkpoint.open("model"));
 * ```
 */
export async function summarizeCheckpoint(checkpoint: Checkpoint): Promise<CheckpointSummary> {
  const summary = summarizeConfig(checkpoint.config, checkpoint.dir);
  const dtypes = new Map<string, { dtype: string; tensors: number; bytes: number }>();
  const perShard = new Map<string, number>();
  for (const tensor of checkpoint.tensors.values()) {
    const entry = dtypes.get(tensor.dtype) ?? { dtype: tensor.dtype, tensors: 0, bytes: 0 };
    entry.tensors++;
    entry.bytes += tensor.byteLength;
    dtypes.set(tensor.dtype, entry);
    perShard.set(tensor.file, (perShard.get(tensor.file) ?? 0) + 1);
  }
  summary.dtypes = [...dtypes.values()];
  summary.shards = [];
  for (const path of checkpoint.shards) {
    const { size } = await Deno.stat(path);
    summary.shards.push({
      file: path.slice(path.lastIndexOf("/") + 1),
      tensors: perShard.get(path) ?? 0,
      bytes: size,
    });
  }
  return summary;
}
