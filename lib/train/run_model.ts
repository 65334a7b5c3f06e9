// The model directory a run trains: `model` itself, or, when train.yaml names a `plan`, `model`
// converted with that plan into `<out>/model` (made once, reused when the run is resumed).

import { ConfigError } from "../errors.ts";
import { convertCheckpoint, PLAN_FILE, readPlan, stringifyPlan } from "../harpe/mod.ts";
import type { TrainConfig } from "./config.ts";

/** Folder of the converted model inside the run directory. */
export const CONVERTED_MODEL_DIR = "model";

/**
 * Returns the directory to load the model from, converting `config.model` with `config.plan` first
 * when a plan is given.
 *
 * @example
 * ```ts
 * const dir = await prepareModel(config); // config.model, or "<out>/model" (HARPE) with a plan
 * ```
 */
export async function prepareModel(config: TrainConfig): Promise<string> {
  if (config.plan === undefined) return config.model;
  const plan = await readPlan(config.plan);
  const target = `${config.out}/${CONVERTED_MODEL_DIR}`;
  let existing: string | undefined;
  try {
    existing = await Deno.readTextFile(`${target}/${PLAN_FILE}`);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (existing === undefined) {
    await convertCheckpoint(config.model, target, { plan });
  } else if (existing !== stringifyPlan(plan)) {
    throw new ConfigError(`${target} was converted with another plan than ${config.plan}`, {
      field: "plan",
      file: target,
      hint: "use the plan the run started with, or start a new run (another out)",
    });
  }
  return target;
}
