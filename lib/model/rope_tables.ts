// The per-head inverse-frequency tables the engine's RoPE op reads, from the config's head bases
// (HARPE or plain): queries [H, R/2] and keys [Hk, R/2] (Hk = K, or H at `query` granularity).

import { headBases, type ModelConfig } from "../checkpoint/model_config.ts";
import type { Engine } from "../engine/engine.ts";
import { baseInverseFrequencies, type RopeScaling, scaleInverseFrequencies } from "../harpe/rope.ts";
import type { RopeTables } from "./decoder.ts";

/**
 * inv_freq[h][i] = bases[h] ** (-2i / R) for i < R/2, then a plain checkpoint's `linear` or `llama3`
 * scaling (`options.scaling`, see scaleInverseFrequencies), computed in f64 and rounded to f32.
 *
 * @example
 * ```ts
 * inverseFrequencies([10000, 500000], 4); // [1, 0.01, 1, 0.0014142...]
 * ```
 */
export function inverseFrequencies(
  bases: readonly number[],
  rotaryDim: number,
  options: { scaling?: RopeScaling } = {},
): Float32Array {
  const half = rotaryDim / 2;
  const table = new Float32Array(bases.length * half);
  bases.forEach((base, h) => {
    let row = baseInverseFrequencies(base, rotaryDim);
    if (options.scaling) row = scaleInverseFrequencies(row, options.scaling);
    table.set(row, h * half);
  });
  return table;
}

/**
 * Uploads the query and key tables of `config` to the engine.
 *
 * @example
 * ```ts
 * const tables = ropeTables(engine, config); // tables.key.shape = [K, R/2] at `kv` granularity
 * ```
 */
export function ropeTables(engine: Engine, config: ModelConfig): RopeTables {
  const bases = headBases(config);
  const R = config.rope.rotaryDim;
  // HARPE's per-head bases replace the original RoPE: only plain checkpoints are scaled.
  const scaling = config.rope.harpe ? undefined : config.rope;
  const upload = (b: number[]) => {
    const t = engine.alloc([b.length, R / 2]);
    engine.upload(t, inverseFrequencies(b, R, { scaling }));
    return t;
  };
  const query = upload(bases.query);
  return { query, key: bases.key ? upload(bases.key) : query };
}
