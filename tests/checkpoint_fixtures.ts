// Test helpers for checkpoint tests: golden paths, directory copies, small synthetic checkpoints with
// seeded weights, and an independent bf16 rounding reference.

import { PROJECT_ROOT } from "./harness.ts";
import { parseConfig } from "../lib/checkpoint/config.ts";
import { parameterTable } from "../lib/checkpoint/tensor_table.ts";
import { type DType, writeSafetensors } from "../lib/safetensors/mod.ts";

export const GOLDEN_MHA = `${PROJECT_ROOT}fixtures/golden/llama_mha/checkpoint`;
export const GOLDEN_GQA = `${PROJECT_ROOT}fixtures/golden/llama_gqa_tied_bf16_sharded/checkpoint`;

/** Copies the files of a flat directory. */
export async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isFile) await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
  }
}

/** Reads a JSON file. */
export async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(path));
}

/** Rewrites a JSON file through `edit`. */
export async function editJson(path: string, edit: (json: Record<string, unknown>) => void): Promise<void> {
  const json = await readJson(path);
  edit(json);
  await Deno.writeTextFile(path, JSON.stringify(json, null, 2));
}

/** Deterministic pseudo-random f32 values in [-2, 2) (a small LCG: tests need no quality). */
export function seededValues(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let state = seed >>> 0;
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = (state / 2 ** 32) * 4 - 2;
  }
  return out;
}

/** A small Llama config (v5 form) with GQA; `overrides` replace fields. */
export function smallConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: 40,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-6,
    rope_parameters: { rope_type: "default", rope_theta: 10000 },
    tie_word_embeddings: false,
    dtype: "float32",
    ...overrides,
  };
}

/**
 * Writes a single-file checkpoint for `config` into `dir`: every parameter of the table with seeded f32
 * values, minus `drop`, plus `extra` tensors.
 */
export async function writeSmallCheckpoint(
  dir: string,
  config: Record<string, unknown>,
  options: { drop?: string[]; extra?: { name: string; dtype: DType; shape: number[]; data: Uint8Array }[] } =
    {},
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
  const tensors = parameterTable(parseConfig(config))
    .filter((spec) => !options.drop?.includes(spec.name))
    .map((spec, i) => ({
      name: spec.name,
      dtype: "F32" as DType,
      shape: spec.shape,
      data: new Uint8Array(seededValues(spec.shape.reduce((a, b) => a * b, 1), i + 1).buffer),
    }));
  await writeSafetensors(`${dir}/model.safetensors`, [...tensors, ...(options.extra ?? [])]);
}

/**
 * The bf16 value nearest to `x` (ties to an even mantissa), by comparing the two bf16 neighbours in
 * float64: an independent check of the bit-trick rounding in the code under test. Finite inputs only.
 */
export function bf16Reference(x: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, x, true);
  const bits = view.getUint32(0, true);
  const down = bits & 0xffff0000;
  const up = down + 0x10000;
  const value = (b: number) => {
    view.setUint32(0, b >>> 0, true);
    return view.getFloat32(0, true);
  };
  const a = value(down);
  const b = value(up);
  const da = Math.abs(x - a);
  const db = Math.abs(b - x);
  if (da < db) return a;
  if (db < da) return b;
  return ((down >>> 16) & 1) === 0 ? a : b;
}
