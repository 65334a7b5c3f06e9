// Loads a Hugging Face checkpoint directory into a Model on an engine, one tensor at a time.

import { Checkpoint } from "../checkpoint/checkpoint.ts";
import type { Engine } from "../engine/engine.ts";
import { Model, type ModelOptions } from "./model.ts";

/**
 * Opens `dir` (config.json + safetensors, single file or sharded), checks it against the parameter
 * table, and uploads every weight (any float dtype, widened to f32). Options as in Model.create.
 *
 * @example
 * ```ts
 * const model = await loadModel(new CpuEngine(), "fixtures/golden/llama_mha/checkpoint");
 * ```
 */
export async function loadModel(
  engine: Engine,
  dir: string,
  options: ModelOptions = {},
): Promise<Model> {
  const checkpoint = await Checkpoint.open(dir);
  try {
    const model = Model.create(engine, checkpoint.config, options);
    for (const slot of model.layout.slots) model.setParameter(slot.name, await checkpoint.readF32(slot.name));
    return model;
  } finally {
    checkpoint.close();
  }
}
