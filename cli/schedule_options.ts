// The schedule flags shared by `harpe plan` and `harpe convert`: parsed into the schedule name,
// granularity and parameters of lib/harpe, with errors that name the flag.

import type { Command } from "commander";
import { ConfigError } from "../lib/errors.ts";
import type { Granularity } from "../lib/checkpoint/model_config.ts";
import { parseStages, type ScheduleName, type ScheduleParameters, SCHEDULES } from "../lib/harpe/mod.ts";

/** The raw schedule flags as commander gives them. */
export interface ScheduleFlags {
  schedule?: string;
  bMin?: string;
  bMax?: string;
  stride?: string;
  order?: string;
  stages?: string;
  keepOriginal?: boolean;
  bases?: string;
  granularity?: string;
  windowStart?: string;
  windowEnd?: string;
  sampleStep?: string;
  neighbourhood?: string;
}

/** The schedule used when none is named. */
export const DEFAULT_SCHEDULE: ScheduleName = "auto";

/** Adds the schedule flags to a command. */
export function addScheduleOptions(command: Command): Command {
  return command
    .option("--schedule <name>", `base schedule: ${SCHEDULES.join(", ")} (default ${DEFAULT_SCHEDULE})`)
    .option("--b-min <base>", "smallest base (default: the auto rule)")
    .option("--b-max <base>", "largest base (default: the auto rule)")
    .option("--stride <base>", "peak-valley candidate grid step (default: (b_max - b_min) / (4 * heads))")
    .option("--order <order>", "uniform/geometric head order: asc or desc (default asc)")
    .option("--stages <list>", 'stages schedule: LENGTH:BASE pairs, e.g. "32k:1e6,64k:2e6,128k:5e6"')
    .option("--keep-original", "stages schedule: keep one head group at the original base")
    .option("--bases <list>", "explicit schedule: comma-separated bases in head order")
    .option("--granularity <g>", "one base per key/value head (kv, default) or per query head (query)")
    .option("--window-start <m>", "peak-valley: first relative distance searched (default 0)")
    .option("--window-end <m>", "peak-valley: last relative distance searched (default: target length)")
    .option("--sample-step <m>", "peak-valley: tokens between waveform samples (default window/8192)")
    .option(
      "--neighbourhood <m>",
      "peak-valley: a peak is the extremum within +-this many tokens (default window/64)",
    );
}

/** True when any schedule flag was given. */
export function hasScheduleFlags(flags: ScheduleFlags): boolean {
  return Object.entries(flags).some(([key, value]) =>
    SCHEDULE_FLAG_KEYS.includes(key as keyof ScheduleFlags) && value !== undefined
  );
}

const SCHEDULE_FLAG_KEYS: (keyof ScheduleFlags)[] = [
  "schedule",
  "bMin",
  "bMax",
  "stride",
  "order",
  "stages",
  "keepOriginal",
  "bases",
  "granularity",
  "windowStart",
  "windowEnd",
  "sampleStep",
  "neighbourhood",
];

function number(text: string | undefined, flag: string, min: number): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value) || value < min) {
    throw new ConfigError(`--${flag} "${text}" must be a number >= ${min}`, { field: flag, actual: text });
  }
  return value;
}

/** Parses the schedule flags. */
export function parseScheduleFlags(flags: ScheduleFlags): {
  schedule: ScheduleName;
  granularity: Granularity;
  parameters: ScheduleParameters;
} {
  const schedule = (flags.schedule ?? DEFAULT_SCHEDULE) as ScheduleName;
  if (!SCHEDULES.includes(schedule)) {
    throw new ConfigError(`--schedule "${flags.schedule}" is not a schedule`, {
      field: "schedule",
      expected: SCHEDULES,
      hint: `choose one of ${SCHEDULES.join(", ")}`,
    });
  }
  const granularity = (flags.granularity ?? "kv") as Granularity;
  if (granularity !== "kv" && granularity !== "query") {
    throw new ConfigError(`--granularity "${flags.granularity}" must be kv or query`, {
      field: "granularity",
    });
  }
  if (flags.order !== undefined && flags.order !== "asc" && flags.order !== "desc") {
    throw new ConfigError(`--order "${flags.order}" must be asc or desc`, { field: "order" });
  }
  const bases = flags.bases?.split(",").map((text) => number(text.trim(), "bases", 1) as number);
  return {
    schedule,
    granularity,
    parameters: {
      bMin: number(flags.bMin, "b-min", 1),
      bMax: number(flags.bMax, "b-max", 1),
      stride: number(flags.stride, "stride", 0),
      order: flags.order as "asc" | "desc" | undefined,
      stages: flags.stages === undefined ? undefined : parseStages(flags.stages),
      keepOriginal: flags.keepOriginal,
      bases,
      windowStart: number(flags.windowStart, "window-start", 0),
      windowEnd: number(flags.windowEnd, "window-end", 1),
      sampleStep: number(flags.sampleStep, "sample-step", 0),
      neighbourhood: number(flags.neighbourhood, "neighbourhood", 0),
    },
  };
}

/** Resolves a checkpoint directory or a config.json path to the config.json file. */
export async function configFile(path: string): Promise<string> {
  try {
    return (await Deno.stat(path)).isDirectory ? `${path.replace(/\/+$/, "")}/config.json` : path;
  } catch {
    return path;
  }
}
