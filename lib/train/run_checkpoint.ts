// Training checkpoints: `checkpoints/step-N/` holds the f32 weights as a HF-layout checkpoint
// (config.json, model safetensors, tokenizer files), `optimizer.safetensors` (AdamW m and v per
// parameter) and `trainer_state.json` (step, data cursor with its RNG state, counters, resolved
// config). Each is built under a temporary name and renamed; `latest` (a relative symlink) is swapped
// atomically only after its checkpoint is complete.

import { writeCheckpointFiles } from "../checkpoint/writer.ts";
import type { Engine, Tensor } from "../engine/engine.ts";
import type { ParameterLayout } from "../model/layout.ts";
import { SafetensorsFile, SafetensorsWriter } from "../safetensors/mod.ts";
import { FileFormatError } from "../errors.ts";
import { writeDirectoryAtomically } from "../util/atomic.ts";
import type { LoaderCursor } from "../data/loader.ts";
import type { AdamWState } from "./optimizer.ts";

/** Folder of the checkpoints inside a run directory. */
export const CHECKPOINTS_DIR = "checkpoints";
/** Name of the pointer to the newest complete checkpoint. */
export const LATEST = "latest";
const STATE_FILE = "trainer_state.json";
const OPTIMIZER_FILE = "optimizer.safetensors";
const STEP_DIR = /^step-(\d+)$/;
/** Temporary names of unfinished checkpoints (lib/util/atomic.ts naming), left behind by a killed run. */
const STALE_CHECKPOINT = /^\.step-\d+\.tmp-/;
/** Shard size of the checkpoint weights (HF's usual 5 GB). */
const WEIGHT_SHARD_BYTES = 5e9;

/** Everything besides weights and optimizer moments that a resumed run needs. */
export interface TrainerState {
  /** Optimizer steps done (the run continues at step + 1). */
  step: number;
  /** AdamW updates applied (steps minus skipped ones; drives bias correction). */
  updates: number;
  tokens: number;
  skipped: number;
  badStepsInRow: number;
  loader: LoaderCursor;
  /** train.yaml as resolved for the run. */
  config: unknown;
}

/** The parts of a model a checkpoint reads and writes. */
export interface CheckpointModel {
  readonly engine: Engine;
  readonly layout: ParameterLayout;
  readonly params: Tensor; // [P] f32
  /** config.json of the model being trained (written with dtype float32). */
  readonly rawConfig: Record<string, unknown>;
}

function f32Config(raw: Record<string, unknown>): Record<string, unknown> {
  const config = { ...raw };
  if ("dtype" in config) config.dtype = "float32";
  if ("torch_dtype" in config || !("dtype" in config)) config.torch_dtype = "float32";
  return config;
}

function bytesOf(array: Float32Array): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

/**
 * Writes `runDir/checkpoints/step-N/` atomically and then points `runDir/latest` at it.
 *
 * @example
 * ```ts
 * await saveRunCheckpoint("runs/a", { model, optimizer: await opt.state(), state, copyFilesFrom: "model" });
 * ```
 */
export async function saveRunCheckpoint(
  runDir: string,
  parts: { model: CheckpointModel; optimizer: AdamWState; state: TrainerState; copyFilesFrom?: string },
): Promise<string> {
  const { model, optimizer, state } = parts;
  const name = `step-${state.step}`;
  const target = `${runDir}/${CHECKPOINTS_DIR}/${name}`;
  await Deno.mkdir(`${runDir}/${CHECKPOINTS_DIR}`, { recursive: true });
  await removeStaleCheckpoints(runDir);
  await writeDirectoryAtomically(target, async (dir) => {
    const { engine, layout, params } = model;
    await writeCheckpointFiles(dir, {
      config: f32Config(model.rawConfig),
      tensors: layout.slots.map((slot) => ({
        name: slot.name,
        dtype: "F32" as const,
        shape: slot.shape,
        read: async () =>
          bytesOf(await engine.download(engine.view(params, [slot.size], slot.offset)) as Float32Array),
      })),
    }, { shardSize: WEIGHT_SHARD_BYTES, copyFilesFrom: parts.copyFilesFrom, progress: false });
    const headers = layout.slots.flatMap((slot) => [
      { name: `exp_avg.${slot.name}`, dtype: "F32" as const, shape: slot.shape },
      { name: `exp_avg_sq.${slot.name}`, dtype: "F32" as const, shape: slot.shape },
    ]);
    const writer = await SafetensorsWriter.create(`${dir}/${OPTIMIZER_FILE}`, headers, {
      metadata: { format: "harpe-adamw", step: String(state.step), updates: String(state.updates) },
    });
    try {
      for (const slot of layout.slots) {
        const range = (a: Float32Array) => bytesOf(a.subarray(slot.offset, slot.offset + slot.size));
        await writer.write(`exp_avg.${slot.name}`, range(optimizer.m));
        await writer.write(`exp_avg_sq.${slot.name}`, range(optimizer.v));
      }
      await writer.finish();
    } catch (error) {
      await writer.abort();
      throw error;
    }
    await Deno.writeTextFile(`${dir}/${STATE_FILE}`, JSON.stringify(state, null, 2) + "\n");
  }, { overwrite: true });
  const pointer = `${runDir}/.${LATEST}.tmp-${Deno.pid}`;
  await Deno.remove(pointer).catch(() => {});
  await Deno.symlink(`${CHECKPOINTS_DIR}/${name}`, pointer);
  await Deno.rename(pointer, `${runDir}/${LATEST}`);
  return target;
}

/** Removes unfinished checkpoints that a killed run left under temporary names. */
async function removeStaleCheckpoints(runDir: string): Promise<void> {
  for await (const entry of Deno.readDir(`${runDir}/${CHECKPOINTS_DIR}`)) {
    if (STALE_CHECKPOINT.test(entry.name)) {
      await Deno.remove(`${runDir}/${CHECKPOINTS_DIR}/${entry.name}`, { recursive: true });
    }
  }
}

async function isCheckpoint(dir: string): Promise<boolean> {
  try {
    return (await Deno.stat(`${dir}/${STATE_FILE}`)).isFile;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) return false;
    throw error;
  }
}

/**
 * The newest complete checkpoint of a run: the one `latest` points at, else the highest `step-N`
 * with its trainer state; null when there is none.
 *
 * @example
 * ```ts
 * const dir = await findLatestCheckpoint("runs/a"); // "runs/a/checkpoints/step-40" or null
 * ```
 */
export async function findLatestCheckpoint(runDir: string): Promise<string | null> {
  let best: { step: number; dir: string } | null = null;
  try {
    for await (const entry of Deno.readDir(`${runDir}/${CHECKPOINTS_DIR}`)) {
      const match = STEP_DIR.exec(entry.name);
      const dir = `${runDir}/${CHECKPOINTS_DIR}/${entry.name}`;
      if (match && entry.isDirectory && (!best || Number(match[1]) > best.step) && await isCheckpoint(dir)) {
        best = { step: Number(match[1]), dir };
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  try {
    const target = await Deno.readLink(`${runDir}/${LATEST}`);
    const match = STEP_DIR.exec(target.slice(target.lastIndexOf("/") + 1));
    const dir = `${runDir}/${target}`;
    if (match && (!best || Number(match[1]) >= best.step) && await isCheckpoint(dir)) return dir;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return best?.dir ?? null;
}

/** Reads the trainer state and optimizer moments of a checkpoint written by {@link saveRunCheckpoint}. */
export async function loadRunState(
  dir: string,
  layout: ParameterLayout,
): Promise<{ state: TrainerState; optimizer: AdamWState }> {
  const state = JSON.parse(await Deno.readTextFile(`${dir}/${STATE_FILE}`)) as TrainerState;
  const file = await SafetensorsFile.open(`${dir}/${OPTIMIZER_FILE}`);
  try {
    const m = new Float32Array(layout.size);
    const v = new Float32Array(layout.size);
    for (const slot of layout.slots) {
      for (const [prefix, target] of [["exp_avg", m], ["exp_avg_sq", v]] as const) {
        const values = await file.readF32(`${prefix}.${slot.name}`);
        if (values.length !== slot.size) {
          throw new FileFormatError(
            `${file.path}: "${prefix}.${slot.name}" has ${values.length} values, expected ${slot.size}`,
            {
              file: file.path,
              tensor: `${prefix}.${slot.name}`,
            },
          );
        }
        target.set(values, slot.offset);
      }
    }
    return { state, optimizer: { m, v } };
  } finally {
    file.close();
  }
}
