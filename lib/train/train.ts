// `harpe train` as a library function: sets up (or resumes) a run directory from a validated
// train.yaml, loads the model and the token file, and runs the training loop on the chosen device.

import { stringify as toYaml } from "yaml";
import { readConfig } from "../checkpoint/config.ts";
import { parseSize } from "../checkpoint/size.ts";
import { PackedLoader } from "../data/loader.ts";
import { openTokenFile } from "../data/token_file.ts";
import type { Communicator } from "../distributed/communicator.ts";
import { rankShare } from "../distributed/data_parallel.ts";
import type { Engine } from "../engine/engine.ts";
import { openEngine } from "../engine/open.ts";
import { ConfigError, PathError, ShapeError } from "../errors.ts";
import { loadModel } from "../model/load.ts";
import { writeTextFileAtomically } from "../util/atomic.ts";
import type { TrainConfig } from "./config.ts";
import { type LogRecord, TrainLog } from "./log.ts";
import { runTraining } from "./loop.ts";
import {
  checkMemoryFits,
  estimateTrainingMemory,
  type MemoryCapacity,
  memoryCapacity,
  type MemoryEstimate,
} from "./memory.ts";
import { AdamW } from "./optimizer.ts";
import { findLatestCheckpoint, loadRunState, type TrainerState } from "./run_checkpoint.ts";
import { prepareModel } from "./run_model.ts";
import { pathExists } from "../util/files.ts";

/** Settings that must not change when a run is resumed (they decide the data order and batches). */
const RESUME_INVARIANTS = ["data", "seq_len", "batch", "grad_accum", "seed"] as const;

/** Options for {@link train}. */
export interface TrainOptions {
  /** Continue from the newest complete checkpoint in `config.out` (start fresh if there is none). */
  resume?: boolean;
  /** Folder holding the CUDA libraries when not in the usual places (device cuda; `--cuda-lib-dir`). */
  cudaLibDir?: string;
  /** Draw the progress line (default: when stderr is a terminal). */
  progress?: boolean;
  /** Called with each log record. */
  onStep?: (record: LogRecord) => void;
  /** Called with the memory estimate and what the device offers, before the model is loaded (and before
   * a run that cannot fit is refused). */
  onMemoryEstimate?: (estimate: MemoryEstimate, capacity: MemoryCapacity) => void;
  /** Train as rank `rank` of `worldSize` data-parallel processes; `connect` makes this rank's
   * communicator once the engine is open (e.g. NcclCommunicator.create). Rank 0 alone writes the run
   * directory; every rank must call `train` with the same config. */
  distributed?: { rank: number; worldSize: number; connect: (engine: Engine) => Promise<Communicator> };
}

/** What a training run did. */
export interface TrainSummary {
  runDir: string;
  /** The step the run started from (0, or the resumed checkpoint's step). */
  startStep: number;
  steps: number;
  skipped: number;
  tokens: number;
  /** The newest checkpoint (HF layout, f32). */
  checkpoint: string;
}

function checkResumable(saved: Record<string, unknown>, config: TrainConfig): void {
  for (const key of RESUME_INVARIANTS) {
    if (saved[key] !== config[key]) {
      throw new ConfigError(
        `Cannot resume: ${key} is ${JSON.stringify(config[key])}, the run started with ${
          JSON.stringify(saved[key])
        }`,
        { field: key, expected: saved[key], actual: config[key], hint: `set ${key} back or start a new run` },
      );
    }
  }
}

/**
 * Trains the model of `config` and writes the run directory `config.out`: train.yaml (resolved),
 * log.jsonl, checkpoints/step-N/, latest.
 *
 * @example
 * ```ts
 * const summary = await train(await loadTrainConfig("train.yaml"), { resume: true });
 * ```
 */
export async function train(config: TrainConfig, options: TrainOptions = {}): Promise<TrainSummary> {
  const runDir = config.out;
  const distributed = options.distributed;
  const lead = !distributed || distributed.rank === 0;
  // On several ranks each holds micro-batches of share.microBatch sequences, not `batch`.
  const share = distributed
    ? rankShare({ batch: config.batch, gradAccum: config.grad_accum }, distributed)
    : null;
  if (lead && !options.resume && await pathExists(`${runDir}/train.yaml`)) {
    throw new PathError(`Run directory "${runDir}" already holds a run`, {
      file: runDir,
      hint: "pass --resume to continue it, or choose another out",
    });
  }
  const resumeFrom = options.resume ? await findLatestCheckpoint(runDir) : null;
  const limit = config.memory_limit === undefined
    ? undefined
    : parseSize(String(config.memory_limit), { field: "memory_limit" });
  const data = await openTokenFile(config.data);
  let engine: Engine;
  try {
    engine = await openEngine(config.device, { cudaLibDir: options.cudaLibDir });
  } catch (error) {
    data.close();
    throw error;
  }
  let communicator: Communicator | undefined;
  try {
    communicator = await distributed?.connect(engine);
    const modelDir = await prepareModelOnRanks(config, communicator);
    const memoryRun = {
      seqLen: config.seq_len,
      batch: share?.microBatch ?? config.batch,
      precision: config.precision,
      checkpointing: config.activation_checkpointing,
      device: config.device,
    };
    const estimate = estimateTrainingMemory(await readConfig(resumeFrom ?? modelDir), memoryRun);
    const capacity = memoryCapacity(engine, { limit });
    options.onMemoryEstimate?.(estimate, capacity);
    checkMemoryFits(estimate, memoryRun, { capacity });
    const model = await loadModel(engine, resumeFrom ?? modelDir, {
      precision: config.precision,
      checkpointing: config.activation_checkpointing,
    });
    if (data.info.vocabSize > model.config.vocabSize) {
      throw new ShapeError(
        `Token file "${config.data}" has a vocabulary of ${data.info.vocabSize}, the model only ${model.config.vocabSize}`,
        {
          file: config.data,
          expected: `<= ${model.config.vocabSize}`,
          actual: data.info.vocabSize,
          hint: "tokenize with the model's tokenizer",
        },
      );
    }
    const optimizer = new AdamW(engine, model.layout, { params: model.params, grads: model.grads }, {
      beta1: config.optimizer.betas[0],
      beta2: config.optimizer.betas[1],
      eps: config.optimizer.eps,
      weightDecay: config.optimizer.weight_decay,
    });
    let state: TrainerState | undefined;
    if (resumeFrom) {
      const saved = await loadRunState(resumeFrom, model.layout);
      checkResumable(saved.state.config as Record<string, unknown>, config);
      optimizer.load(saved.optimizer);
      state = { ...saved.state, config };
    }
    if (communicator) {
      for (const tensor of [model.params, optimizer.m, optimizer.v]) await communicator.broadcast(tensor);
    }
    const loaderOptions = {
      seqLen: config.seq_len,
      batch: config.batch,
      seed: config.seed,
      eosId: data.info.eosId,
    };
    const loader = new PackedLoader(data, loaderOptions, state?.loader);
    const start: TrainerState = state ??
      { step: 0, updates: 0, tokens: 0, skipped: 0, badStepsInRow: 0, loader: loader.cursor(), config };
    let log: TrainLog | undefined;
    if (lead) {
      await Deno.mkdir(runDir, { recursive: true });
      await writeTextFileAtomically(`${runDir}/train.yaml`, toYaml(config));
      log = await TrainLog.open(`${runDir}/log.jsonl`, { keepThroughStep: start.step });
    }
    const final = await runTraining(model, loader, {
      config,
      runDir,
      state: start,
      optimizer,
      log,
      communicator,
      copyFilesFrom: modelDir,
      progress: options.progress,
      onStep: options.onStep,
    });
    communicator?.destroy();
    communicator = undefined;
    return {
      runDir,
      startStep: start.step,
      steps: final.step,
      skipped: final.skipped,
      tokens: final.tokens,
      checkpoint: `${runDir}/checkpoints/step-${final.step}`,
    };
  } catch (error) {
    try {
      communicator?.abort();
    } catch {
      // The original error is the one to report; the group is torn down with this process anyway.
    }
    throw error;
  } finally {
    engine.dispose();
    data.close();
  }
}

/** The model directory on every rank: rank 0 prepares it (converting with the plan) while the others
 * wait, then they find it ready. */
async function prepareModelOnRanks(config: TrainConfig, communicator?: Communicator): Promise<string> {
  if (!communicator) return await prepareModel(config);
  if (communicator.rank === 0) {
    const dir = await prepareModel(config);
    await communicator.barrier();
    return dir;
  }
  await communicator.barrier();
  return await prepareModel(config);
}
