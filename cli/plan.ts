// `harpe plan CHECKPOINT|config.json --target-length N [schedule flags] [-o plan.yaml] [--plot FILE]
// [--json]`: chooses one RoPE base per head, prints them with the distance each head resolves, writes
// the plan as YAML and draws the bases' waveforms and the base per head.

import { Command } from "commander";
import { readConfig } from "../lib/checkpoint/mod.ts";
import type { ModelConfig } from "../lib/checkpoint/model_config.ts";
import {
  lowestWavelength,
  makePlan,
  type Plan,
  planToObject,
  stringifyPlan,
  waveform,
} from "../lib/harpe/mod.ts";
import { barSpec, lineSpec, plotFormat, renderSvg, vconcat, writePlot } from "../lib/plot/mod.ts";
import { writeTextFileAtomically } from "../lib/util/atomic.ts";
import { parseLength } from "../lib/util/length.ts";
import { formatTable } from "../lib/util/table.ts";
import { printJson, runAction } from "./run_action.ts";
import {
  addScheduleOptions,
  configFile,
  parseScheduleFlags,
  type ScheduleFlags,
} from "./schedule_options.ts";
import { sha256Hex } from "../lib/util/hash.ts";

/** Points per waveform in the plot (log-spaced from 1 to the target length). */
const PLOT_POINTS = 400;

interface PlanFlags extends ScheduleFlags {
  targetLength: string;
  output?: string;
  plot?: string;
  json?: boolean;
}

/** Rows of the plan table: one per query head. */
function planRows(config: ModelConfig, plan: Plan): (string | number)[][] {
  const group = config.numHeads / config.numKvHeads;
  return Array.from({ length: config.numHeads }, (_, h) => {
    const key = Math.floor(h / group);
    const base = plan.granularity === "kv" ? plan.headBases[key] : plan.headBases[h];
    return [h, key, base, Math.round(lowestWavelength(base, config.rope.rotaryDim))];
  });
}

async function drawPlan(path: string, config: ModelConfig, plan: Plan): Promise<void> {
  const distinct = [...new Set(plan.headBases)].sort((a, b) => a - b);
  const ratio = Math.log(plan.targetLength) / (PLOT_POINTS - 1);
  const positions = Array.from({ length: PLOT_POINTS }, (_, i) => Math.exp(i * ratio));
  const series = distinct.map((base) => {
    const w = waveform(base, positions, { rotaryDim: config.rope.rotaryDim });
    return { name: String(base), points: positions.map((x, i) => ({ x, y: w[i] })) };
  });
  const unit = plan.granularity === "kv" ? "key/value head" : "query head";
  const svg = await renderSvg(vconcat(
    lineSpec({
      title: `Waveforms w_b(m) of the ${distinct.length} bases (${plan.schedule})`,
      xLabel: "relative distance m (tokens)",
      yLabel: "w_b(m)",
      logX: true,
      series,
    }),
    barSpec({
      title: `RoPE base per ${unit}`,
      xLabel: unit,
      yLabel: "base",
      labels: plan.headBases.map((_, h) => h),
      values: plan.headBases,
    }),
  ));
  await writePlot(path, svg);
}

/** The `plan` command. */
export function planCommand(): Command {
  const command = new Command("plan")
    .description(
      "Choose one RoPE base per head (HARPE) for a checkpoint and a target length; write plan.yaml",
    )
    .argument("<checkpoint>", "checkpoint directory, or its config.json")
    .requiredOption("--target-length <n>", "context length after extension: 131072, 128k or 128K")
    .option("-o, --output <plan.yaml>", "write the plan as YAML")
    .option("--plot <file>", "draw the waveforms and the base per head (.svg or .png)")
    .option("--json", "print the plan as JSON (bases in head order under head_bases)");
  addScheduleOptions(command);
  return command.action(runAction("plan", async (path: string, flags: PlanFlags) => {
    const targetLength = parseLength(flags.targetLength, { field: "--target-length" });
    const { schedule, granularity, parameters } = parseScheduleFlags(flags);
    if (flags.plot) plotFormat(flags.plot);
    const config = await readConfig(path);
    const configSha256 = await sha256Hex(await Deno.readFile(await configFile(path)));
    const plan = makePlan(config, {
      schedule,
      granularity,
      targetLength,
      parameters,
      checkpoint: path,
      configSha256,
    });
    if (flags.plot) await drawPlan(flags.plot, config, plan);
    if (flags.output) await writeTextFileAtomically(flags.output, stringifyPlan(plan));
    if (flags.json) {
      printJson(planToObject(plan));
      return;
    }
    const params = Object.entries(plan.parameters).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ");
    console.log(
      `schedule ${plan.schedule} (${params || "explicit bases"}), granularity ${plan.granularity}, ` +
        `target length ${plan.targetLength}`,
    );
    console.log(formatTable(["head", "key head", "base", "longest distance"], planRows(config, plan)));
    if (flags.output) console.log(`wrote ${flags.output}`);
    if (flags.plot) console.log(`wrote ${flags.plot}`);
  }));
}
