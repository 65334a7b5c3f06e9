// The inputs of bench/train/scaling.ts: a random-init HARPE checkpoint of a bench/train shape (HF layout,
// bf16 safetensors, per-KV-head bases HEAD_BASES) and a token file of random ids that `harpe train` loads.
// `harpe train` checks a token file against its model by vocabulary size only (the tokenizer hash is
// recorded, not compared), so the pair has no tokenizer: the token file names none and uses the model's V.

import { parseConfig } from "../../lib/checkpoint/config.ts";
import { parameterTable } from "../../lib/checkpoint/tensor_table.ts";
import { writeCheckpoint } from "../../lib/checkpoint/writer.ts";
import { Rng } from "../../lib/data/rng.ts";
import { writeTokenFile } from "../../lib/data/token_file.ts";
import { f32ToBf16 } from "../../lib/safetensors/mod.ts";
import { HEAD_BASES, hfConfig, INIT_SPREAD, INIT_STD } from "./main.ts";

/** The EOS id the token file names (Llama's `</s>`); the loader appends it after every document. */
const EOS_ID = 2;
/** bf16 bits of 1.0: the norm weights. */
const BF16_ONE = 0x3f80;
/** Tokenizer recorded in the token file: there is none, the ids are random. */
const NO_TOKENIZER = "none: random ids (bench/train/scaling.ts)";

/**
 * The config.json of the random checkpoint: bench/train's HF config of `shape` with HEAD_BASES (one per
 * key head) as HARPE bases in the v5 and v4 forms, `max_position_embeddings` = `maxLength`, bf16 weights.
 *
 * @example
 * ```ts
 * const raw = harpeScalingConfig("tiny", 64); // raw.rope_parameters.head_bases: [1e6, 2.3e6]
 * ```
 */
export function harpeScalingConfig(shape: string, maxLength: number): Record<string, unknown> {
  const hf = hfConfig(shape, maxLength);
  const headBases = HEAD_BASES.slice(0, hf.num_key_value_heads as number);
  const harpe = { head_bases: headBases, granularity: "kv" };
  return {
    ...hf,
    torch_dtype: "bfloat16",
    rope_parameters: { rope_type: "harpe", rope_theta: hf.rope_theta, ...harpe },
    rope_scaling: { rope_type: "harpe", type: "harpe", ...harpe },
  };
}

/**
 * Writes the random-init checkpoint into `dir` (made atomically): matrices N(0, INIT_STD) as bench/train
 * draws them (one pool of normals, each matrix a window at a random offset), norm weights 1, all bf16.
 * Returns the number of parameters.
 *
 * @example
 * ```ts
 * await writeRandomCheckpoint("/tmp/x/model", { shape: "tiny", maxLength: 64, seed: 1 });
 * ```
 */
export async function writeRandomCheckpoint(
  dir: string,
  options: { shape: string; maxLength: number; seed: number },
): Promise<number> {
  const raw = harpeScalingConfig(options.shape, options.maxLength);
  const specs = parameterTable(parseConfig(raw));
  const sizes = specs.map((s) => s.shape.reduce((a, b) => a * b, 1));
  const rng = new Rng(options.seed);
  const normals = new Float32Array(Math.max(...sizes) + INIT_SPREAD);
  for (let i = 0; i < normals.length; i++) normals[i] = rng.nextNormal() * INIT_STD;
  const pool = f32ToBf16(normals);
  const tensors = specs.map((spec, i) => {
    const offset = rng.nextBelow(INIT_SPREAD);
    const bits = spec.shape.length >= 2
      ? pool.subarray(offset, offset + sizes[i])
      : new Uint16Array(sizes[i]).fill(BF16_ONE);
    const bytes = new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
    return { name: spec.name, dtype: "BF16" as const, shape: spec.shape, read: () => Promise.resolve(bytes) };
  });
  await writeCheckpoint(dir, { config: raw, tensors }, { progress: false });
  return sizes.reduce((a, b) => a + b, 0);
}

/**
 * Writes a token file of `documents` documents of `length` random ids each in [0, vocabSize): with EOS
 * appended, each document fills one training sequence of T = `length` (windows of T + 1 tokens that
 * share one), so `documents` >= sequences + 1 keeps every sequence of a run distinct.
 *
 * @example
 * ```ts
 * await writeRandomTokens("/tmp/x/train.tokens", { documents: 9, length: 64, vocabSize: 512, seed: 1 });
 * ```
 */
export async function writeRandomTokens(
  path: string,
  options: { documents: number; length: number; vocabSize: number; seed: number },
): Promise<void> {
  const { documents, length, vocabSize } = options;
  const rng = new Rng(options.seed);
  const tokens = new Uint32Array(documents * length);
  for (let i = 0; i < tokens.length; i++) tokens[i] = rng.nextBelow(vocabSize);
  const docOffsets = Array.from({ length: documents + 1 }, (_, d) => d * length);
  await writeTokenFile(path, { tokens, docOffsets }, {
    tokenizer: NO_TOKENIZER,
    tokenizerSha256: "",
    vocabSize,
    eosId: EOS_ID,
  });
}
