// `harpe train --config train.yaml [overrides]`: single-stage training at the target length.

import { Command } from "commander";
import { formatMemoryEstimate, loadTrainConfig, train, TrainingDivergedError } from "../lib/train/mod.ts";
import { EXIT_FAILURE, printJson, runAction } from "./run_action.ts";
import { launchRanks, rankOptions } from "./train_ranks.ts";
import { cudaLibDirOption } from "./engine_options.ts";

interface TrainFlags {
  config: string;
  resume?: boolean;
  json?: boolean;
  model?: string;
  data?: string;
  out?: string;
  steps?: string;
  seqLen?: string;
  batch?: string;
  gradAccum?: string;
  lr?: string;
  seed?: string;
  device?: string;
  cudaLibDir?: string;
  checkpointEvery?: string;
  activationCheckpointing?: boolean;
  memoryLimit?: string;
  gpus?: string;
  rank?: string;
  worldSize?: string;
  rendezvous?: string;
}

const number = (value: string | undefined) => (value === undefined ? undefined : Number(value));

/** The `train` command. */
export function trainCommand(): Command {
  return new Command("train")
    .description(
      "Train a (HARPE) checkpoint on a token file as configured in train.yaml (see README, Training)",
    )
    .requiredOption("--config <path>", "train.yaml")
    .option("--resume", "continue from the newest complete checkpoint in the run directory")
    .option("--model <dir>", "override model")
    .option("--data <path>", "override data")
    .option("--out <dir>", "override out (the run directory)")
    .option("--steps <n>", "override steps (tokens is then ignored)")
    .option("--seq-len <n>", "override seq_len")
    .option("--batch <n>", "override batch")
    .option("--grad-accum <n>", "override grad_accum")
    .option("--lr <x>", "override optimizer.lr")
    .option("--seed <n>", "override seed")
    .option("--device <name>", "override device (cpu)")
    .addOption(cudaLibDirOption())
    .option("--checkpoint-every <n>", "override checkpoint.every")
    .option(
      "--activation-checkpointing",
      "set activation_checkpointing (keep per layer only what the backward cannot recompute)",
    )
    .option(
      "--memory-limit <size>",
      "override memory_limit: refuse when the estimate exceeds it (e.g. 60GiB)",
    )
    .option("--gpus <n>", "train on n GPUs of this host: start and supervise one rank process per GPU")
    .option(
      "--rank <i>",
      "run as rank i of a data-parallel group started by your launcher (README, Several GPUs)",
    )
    .option("--world-size <n>", "number of ranks in the group (with --rank)")
    .option("--rendezvous <where>", "where the ranks meet: file:<path> or tcp://<host>:<port> (with --rank)")
    .option("--json", "print the summary as JSON")
    .action(runAction("train", async (flags: TrainFlags) => {
      const config = await loadTrainConfig(flags.config, {
        overrides: {
          model: flags.model,
          data: flags.data,
          out: flags.out,
          steps: number(flags.steps),
          tokens: flags.steps === undefined ? undefined : null,
          seq_len: number(flags.seqLen),
          batch: number(flags.batch),
          grad_accum: number(flags.gradAccum),
          "optimizer.lr": number(flags.lr),
          seed: number(flags.seed),
          device: flags.device,
          "checkpoint.every": number(flags.checkpointEvery),
          activation_checkpointing: flags.activationCheckpointing,
          memory_limit: flags.memoryLimit,
        },
      });
      const distributed = rankOptions(flags, config);
      if (flags.gpus !== undefined && Number(flags.gpus) !== 1) {
        const failure = await launchRanks(config, { gpus: flags.gpus, args: Deno.args, json: flags.json });
        if (failure === null) return;
        console.error(`harpe train: ${failure}`);
        Deno.exit(EXIT_FAILURE);
      }
      let last: { step: number; loss: number | null } | undefined;
      try {
        const summary = await train(config, {
          resume: flags.resume,
          cudaLibDir: flags.cudaLibDir,
          distributed,
          onStep: (r) => (last = { step: r.step, loss: r.loss }),
          onMemoryEstimate: (estimate, capacity) =>
            console.error(formatMemoryEstimate(estimate, { capacity })),
        });
        const result = { ...summary, last_loss: last?.loss ?? null };
        if (flags.json) {
          printJson(result);
        } else {
          console.log(
            `trained steps ${summary.startStep + 1}..${summary.steps} (${summary.skipped} skipped), ` +
              `last loss ${last?.loss ?? "n/a"}; run: ${summary.runDir}, checkpoint: ${summary.checkpoint}`,
          );
        }
      } catch (error) {
        if (!(error instanceof TrainingDivergedError)) throw error;
        console.error(`harpe train: ${error.message}`);
        Deno.exit(EXIT_FAILURE);
      }
    }));
}
