// `harpe convert CHECKPOINT (--plan plan.yaml | schedule flags) [--target-length N] -o OUT [--force]`:
// writes the HARPE checkpoint (config.json with per-head bases in the v5 and v4 forms, harpe_plan.yaml,
// tokenizer/generation files, weights hard-linked or copied unchanged), atomically.

import { Command } from "commander";
import { readConfig } from "../lib/checkpoint/mod.ts";
import { ConfigError } from "../lib/errors.ts";
import { convertCheckpoint, makePlan, type Plan, readPlan } from "../lib/harpe/mod.ts";
import { parseLength } from "../lib/util/length.ts";
import { printJson, runAction } from "./run_action.ts";
import {
  addScheduleOptions,
  configFile,
  hasScheduleFlags,
  parseScheduleFlags,
  type ScheduleFlags,
} from "./schedule_options.ts";
import { sha256Hex } from "../lib/util/hash.ts";

interface ConvertFlags extends ScheduleFlags {
  plan?: string;
  targetLength?: string;
  output: string;
  force?: boolean;
  json?: boolean;
}

async function resolvePlan(checkpoint: string, flags: ConvertFlags): Promise<Plan> {
  const target = flags.targetLength === undefined
    ? undefined
    : parseLength(flags.targetLength, { field: "--target-length" });
  if (flags.plan !== undefined) {
    if (hasScheduleFlags(flags)) {
      throw new ConfigError("Give either --plan or schedule flags, not both", {
        field: "plan",
        hint: "the plan file already holds the schedule and its bases",
      });
    }
    const plan = await readPlan(flags.plan);
    if (target !== undefined && target !== plan.targetLength) {
      throw new ConfigError(
        `--target-length ${target} differs from the plan's target_length ${plan.targetLength}`,
        {
          field: "target-length",
          expected: plan.targetLength,
          actual: target,
          hint: "drop --target-length or re-plan",
        },
      );
    }
    return plan;
  }
  if (target === undefined) {
    throw new ConfigError("Missing --target-length", {
      field: "target-length",
      hint: "give --plan plan.yaml, or schedule flags with --target-length (e.g. 128k)",
    });
  }
  const { schedule, granularity, parameters } = parseScheduleFlags(flags);
  const config = await readConfig(checkpoint);
  const configSha256 = await sha256Hex(await Deno.readFile(await configFile(checkpoint)));
  return makePlan(config, {
    schedule,
    granularity,
    targetLength: target,
    parameters,
    checkpoint,
    configSha256,
  });
}

/** The `convert` command. */
export function convertCommand(): Command {
  const command = new Command("convert")
    .description("Write a HARPE checkpoint: per-head RoPE bases in config.json, weights unchanged")
    .argument("<checkpoint>", "checkpoint directory (config.json + safetensors)")
    .requiredOption("-o, --output <dir>", "output checkpoint directory (written atomically)")
    .option("--plan <plan.yaml>", "use the bases of a plan written by harpe plan")
    .option("--target-length <n>", "context length after extension (with schedule flags): 131072, 128k")
    .option("--force", "convert a checkpoint that already is HARPE; replace an existing output")
    .option("--json", "print what was written as JSON");
  addScheduleOptions(command);
  return command.action(runAction("convert", async (checkpoint: string, flags: ConvertFlags) => {
    const plan = await resolvePlan(checkpoint, flags);
    const summary = await convertCheckpoint(checkpoint, flags.output, { plan, force: flags.force });
    for (const warning of summary.warnings) console.error(`harpe convert: warning: ${warning}`);
    if (flags.json) {
      printJson({
        ...summary,
        head_bases: plan.headBases,
        granularity: plan.granularity,
        target_length: plan.targetLength,
      });
      return;
    }
    console.log(
      `wrote ${summary.output}: ${plan.headBases.length} bases (${plan.granularity}), ` +
        `max_position_embeddings ${plan.targetLength}; weights ${summary.linked.length} linked, ` +
        `${summary.copied.length} copied; ${summary.auxiliary.length} auxiliary files`,
    );
  }));
}
