// The training loop: gradient accumulation over micro-batches, the non-finite guard, global-norm
// clipping, AdamW with the LR schedule, log.jsonl, the progress line, and checkpoints every N steps.
// With a communicator, each rank trains on its share of the global batch and the gradients are
// averaged over ranks before clipping (lib/distributed/data_parallel.ts); rank 0 alone writes.

import type { Engine, Tensor } from "../engine/engine.ts";
import type { ParameterLayout } from "../model/layout.ts";
import type { PackedLoader } from "../data/loader.ts";
import type { Communicator } from "../distributed/communicator.ts";
import { averageOverRanks, rankMicroBatches, rankShare } from "../distributed/data_parallel.ts";
import { Progress } from "../util/progress.ts";
import type { TrainConfig } from "./config.ts";
import type { LogRecord, TrainLog } from "./log.ts";
import type { AdamW } from "./optimizer.ts";
import { saveRunCheckpoint, type TrainerState } from "./run_checkpoint.ts";
import { learningRate } from "./schedule.ts";

/** What the loop needs of a model (lib/model's Model satisfies it). */
export interface TrainableModel {
  readonly engine: Engine;
  readonly layout: ParameterLayout;
  readonly params: Tensor; // [P] f32
  readonly grads: Tensor; // [P] f32
  readonly config: { raw: Record<string, unknown> };
  zeroGrads(): void;
  /** Mean loss of the batch; adds gradScale * its gradient to `grads`. */
  forwardBackward(
    inputs: Int32Array,
    targets: Int32Array,
    options: { batch: number; gradScale: number },
  ): Promise<number>;
}

/** Raised when too many steps in a row had a non-finite loss or gradient norm. */
export class TrainingDivergedError extends Error {
  override name = "TrainingDivergedError";
  constructor(message: string, readonly step: number) {
    super(message);
  }
}

/** Everything the loop works with besides the model and the data. */
export interface LoopContext {
  config: TrainConfig;
  runDir: string;
  /** The state to continue from (step 0 for a new run). */
  state: TrainerState;
  optimizer: AdamW;
  /** log.jsonl (on rank 0 only; other ranks pass none). */
  log?: TrainLog;
  /** Data-parallel group this process is one rank of (none: train alone). */
  communicator?: Communicator;
  /** Folder whose tokenizer and generation files are copied into each checkpoint. */
  copyFilesFrom?: string;
  /** Draw the progress line (default: when stderr is a terminal). */
  progress?: boolean;
  /** Called with each log record (after it is written). */
  onStep?: (record: LogRecord) => void;
}

/**
 * Trains from `ctx.state.step + 1` through `config.steps`, checkpointing every `checkpoint.every`
 * steps and at the end. Returns the final state.
 *
 * @example
 * ```ts
 * const state = await runTraining(model, loader, { config, runDir, state, optimizer, log });
 * ```
 */
export async function runTraining(
  model: TrainableModel,
  loader: PackedLoader,
  ctx: LoopContext,
): Promise<TrainerState> {
  const { config } = ctx;
  const state: TrainerState = { ...ctx.state };
  const accum = config.grad_accum;
  const tokensPerStep = config.batch * config.seq_len * accum;
  const comm = ctx.communicator;
  const lead = !comm || comm.rank === 0;
  const share = rankShare({ batch: config.batch, gradAccum: accum }, comm ?? { rank: 0, worldSize: 1 });
  const lossScratch = comm ? model.engine.alloc([1]) : null;
  const wire = comm && config.grad_reduce_dtype === "bf16"
    ? model.engine.alloc([model.grads.size], "bf16")
    : undefined;
  const schedule = {
    lr: config.optimizer.lr,
    warmup: config.schedule.warmup,
    kind: config.schedule.kind,
    minLr: config.schedule.min_lr,
    totalSteps: config.steps,
  };
  const startStep = state.step;
  const label = startStep > 0 ? `train (from step ${startStep})` : "train";
  const progress = new Progress(label, config.steps - startStep, {
    unit: "steps",
    enabled: lead ? ctx.progress : false,
  });
  while (state.step < config.steps) {
    const step = state.step + 1;
    const started = performance.now();
    model.zeroGrads();
    let lossSum = 0;
    const batches = Array.from({ length: accum }, () => loader.next());
    for (const { inputs, targets } of rankMicroBatches(batches, { share, seqLen: config.seq_len })) {
      lossSum += await model.forwardBackward(inputs, targets, {
        batch: share.microBatch,
        gradScale: 1 / share.microSteps,
      });
    }
    const localLoss = lossSum / share.microSteps;
    const loss = comm && lossScratch
      ? await averageOverRanks(comm, {
        engine: model.engine,
        grads: model.grads,
        scratch: lossScratch,
        localLoss,
        wire,
      })
      : localLoss;
    const gradNorm = await ctx.optimizer.gradNorm();
    const lr = learningRate(step, schedule);
    const finite = Number.isFinite(loss) && Number.isFinite(gradNorm);
    if (finite) {
      const clip = config.grad_clip > 0 && gradNorm > config.grad_clip ? config.grad_clip / gradNorm : 1;
      state.updates++;
      ctx.optimizer.step({ lr, step: state.updates, gradScale: clip });
      state.badStepsInRow = 0;
    } else {
      state.skipped++;
      state.badStepsInRow++;
    }
    await model.engine.sync();
    const seconds = (performance.now() - started) / 1000;
    state.step = step;
    state.tokens += tokensPerStep;
    state.loader = loader.cursor();
    const record: LogRecord = {
      step,
      loss: Number.isFinite(loss) ? loss : null,
      lr,
      grad_norm: Number.isFinite(gradNorm) ? gradNorm : null,
      tokens: tokensPerStep,
      tokens_per_s: Math.round(tokensPerStep / Math.max(seconds, 1e-9)),
      rss_bytes: Deno.memoryUsage().rss,
      skipped: !finite,
      skipped_total: state.skipped,
    };
    await ctx.log?.append(record);
    ctx.onStep?.(record);
    progress.set(
      step - startStep,
      `loss ${finite ? loss.toFixed(4) : "non-finite"} ${record.tokens_per_s} tok/s`,
    );
    if (state.badStepsInRow >= config.max_bad_steps_in_row) {
      progress.finish();
      throw new TrainingDivergedError(
        `stopped at step ${step}: ${state.badStepsInRow} steps in a row had a non-finite loss or gradient ` +
          `norm (max_bad_steps_in_row is ${config.max_bad_steps_in_row}); lower optimizer.lr or check the data, ` +
          `then resume from the last checkpoint`,
        step,
      );
    }
    if (lead && (step % config.checkpoint.every === 0 || step === config.steps)) {
      await saveRunCheckpoint(ctx.runDir, {
        model: {
          engine: model.engine,
          layout: model.layout,
          params: model.params,
          rawConfig: model.config.raw,
        },
        optimizer: await ctx.optimizer.state(),
        state,
        copyFilesFrom: ctx.copyFilesFrom,
      });
    }
  }
  progress.finish();
  for (const t of [lossScratch, wire]) if (t) model.engine.free(t);
  return state;
}
