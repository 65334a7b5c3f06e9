// A HARPE plan: the bases chosen for one checkpoint and target length, with everything needed to
// reproduce and check them (schedule, parameters, source config hash, tool version), and its YAML form.

import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { z } from "zod";
import { FileFormatError, ShapeError } from "../errors.ts";
import type { Granularity, ModelConfig } from "../checkpoint/model_config.ts";
import { VERSION } from "../version.ts";
import { computeBases, type ScheduleName, type ScheduleParameters, SCHEDULES } from "./schedule.ts";

/** The plan file format written by this version. */
export const PLAN_FORMAT = 1;

/** What a plan was made from, so `convert` can tell it applies to the checkpoint at hand. */
export interface PlanSource {
  /** The checkpoint directory or config.json path as given to `harpe plan`. */
  checkpoint: string;
  /** sha256 (hex) of the config.json bytes. */
  configSha256: string;
  /** Model facts the bases depend on. */
  numHeads: number; // H
  numKvHeads: number; // K
  rotaryDim: number; // R
  ropeTheta: number;
  maxPositionEmbeddings: number;
  /** The checkpoint's original RoPE scaling (`linear` or `llama3`), which the HARPE bases replace. */
  ropeScaling?: { type: string; parameters: Record<string, number> };
}

/** Per-head RoPE bases for one checkpoint and target length. */
export interface Plan {
  format: number;
  toolVersion: string;
  schedule: ScheduleName;
  /** The schedule's parameters as used (snake_case keys). */
  parameters: Record<string, unknown>;
  granularity: Granularity;
  targetLength: number;
  /** One base per head at `granularity` (K for kv, H for query), in head order. */
  headBases: number[];
  source: PlanSource;
}

/** Options of {@link makePlan}. */
export interface MakePlanOptions {
  schedule: ScheduleName;
  targetLength: number;
  granularity?: Granularity;
  parameters?: ScheduleParameters;
  /** Path recorded as the plan's source. */
  checkpoint: string;
  /** sha256 (hex) of the config.json bytes. */
  configSha256: string;
}

/** Number of bases a model needs at a granularity: K for `kv`, H for `query`. */
export function baseCount(
  config: Pick<ModelConfig, "numHeads" | "numKvHeads">,
  granularity: Granularity,
): number {
  return granularity === "kv" ? config.numKvHeads : config.numHeads;
}

/**
 * The context length the checkpoint's unscaled base was trained at, which the schedules (`auto`
 * included) read as the original context: `original_max_position_embeddings` for `llama3` (Llama 3.1
 * pretrained at 8192 with base theta; its 131072 came from rescaling the low frequencies, which HARPE's
 * unscaled per-head bases replace), `max_position_embeddings` otherwise. A `linear` checkpoint keeps
 * `max_position_embeddings`: such configs disagree on whether it is the stretched length or not.
 *
 * @example
 * ```ts
 * originalContextLength(config); // 8192 for Llama 3.1 (max_position_embeddings 131072)
 * ```
 */
export function originalContextLength(config: Pick<ModelConfig, "maxPositionEmbeddings" | "rope">): number {
  const { rope } = config;
  if (rope.type === "llama3" && rope.scaling) return rope.scaling.original_max_position_embeddings;
  return config.maxPositionEmbeddings;
}

/**
 * Plans the bases of a checkpoint.
 *
 * @example
 * ```ts
 * const plan = makePlan(config, { schedule: "uniform", targetLength: 131072, checkpoint: "m", configSha256: hash,
 *   parameters: { bMin: 1e6, bMax: 5e6 } });
 * ```
 */
export function makePlan(config: ModelConfig, options: MakePlanOptions): Plan {
  const granularity = options.granularity ?? "kv";
  const { bases, parameters } = computeBases(options.schedule, {
    count: baseCount(config, granularity),
    rotaryDim: config.rope.rotaryDim,
    originalBase: config.rope.theta,
    originalLength: originalContextLength(config),
    targetLength: options.targetLength,
  }, options.parameters);
  const plan: Plan = {
    format: PLAN_FORMAT,
    toolVersion: VERSION,
    schedule: options.schedule,
    parameters,
    granularity,
    targetLength: options.targetLength,
    headBases: bases,
    source: {
      checkpoint: options.checkpoint,
      configSha256: options.configSha256,
      numHeads: config.numHeads,
      numKvHeads: config.numKvHeads,
      rotaryDim: config.rope.rotaryDim,
      ropeTheta: config.rope.theta,
      maxPositionEmbeddings: config.maxPositionEmbeddings,
    },
  };
  const { rope } = config;
  if (rope.scaling && !rope.harpe) {
    plan.source.ropeScaling = { type: rope.type, parameters: { ...rope.scaling } };
  }
  return plan;
}

/** The plan as written to YAML and printed by `--json` (snake_case keys, bases under `head_bases`). */
export function planToObject(plan: Plan): Record<string, unknown> {
  const scaling = plan.source.ropeScaling;
  const ropeScaling = scaling ? { rope_scaling: { rope_type: scaling.type, ...scaling.parameters } } : {};
  return {
    format: plan.format,
    tool_version: plan.toolVersion,
    schedule: plan.schedule,
    granularity: plan.granularity,
    target_length: plan.targetLength,
    head_bases: plan.headBases,
    parameters: plan.parameters,
    source: {
      checkpoint: plan.source.checkpoint,
      config_sha256: plan.source.configSha256,
      num_heads: plan.source.numHeads,
      num_kv_heads: plan.source.numKvHeads,
      rotary_dim: plan.source.rotaryDim,
      rope_theta: plan.source.ropeTheta,
      max_position_embeddings: plan.source.maxPositionEmbeddings,
      ...ropeScaling,
    },
  };
}

/**
 * Writes a plan as YAML text (numbers in shortest round-trip form, so bases survive exactly).
 *
 * @example
 * ```ts
 * await Deno.writeTextFile("plan.yaml", stringifyPlan(plan));
 * ```
 */
export function stringifyPlan(plan: Plan): string {
  return `# HARPE plan written by harpe ${plan.toolVersion}\n` + stringifyYaml(planToObject(plan));
}

const positiveInt = z.number({ error: "must be a number" }).int({ error: "must be a whole number" })
  .positive({ error: "must be a positive number" });
const positive = z.number({ error: "must be a number" }).positive({ error: "must be a positive number" });

const PLAN_SCHEMA = z.object({
  format: z.literal(PLAN_FORMAT, {
    error: `must be ${PLAN_FORMAT} (a plan written by another harpe version?)`,
  }),
  tool_version: z.string({ error: "must be a string" }),
  schedule: z.enum(SCHEDULES, { error: `must be one of ${SCHEDULES.join(", ")}` }),
  granularity: z.enum(["kv", "query"], { error: 'must be "kv" or "query"' }),
  target_length: positiveInt,
  head_bases: z.array(positive, { error: "must be a list of numbers" }).min(1, {
    error: "must not be empty",
  }),
  parameters: z.record(z.string(), z.unknown(), { error: "must be a mapping" }),
  source: z.object({
    checkpoint: z.string({ error: "must be a string" }),
    config_sha256: z.string({ error: "must be a string" }).regex(/^[0-9a-f]{64}$/, {
      error: "must be 64 hex digits",
    }),
    num_heads: positiveInt,
    num_kv_heads: positiveInt,
    rotary_dim: positiveInt,
    rope_theta: positive,
    max_position_embeddings: positiveInt,
    rope_scaling: z.object({ rope_type: z.string({ error: "must be a string" }) }, {
      error: "must be a mapping",
    })
      .catchall(positive).optional(),
  }, { error: "must be a mapping" }),
}, { error: "must be a mapping" });

function issuePath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) out += typeof key === "number" ? `[${key}]` : (out ? "." : "") + String(key);
  return out;
}

/**
 * Parses and validates plan YAML; errors name the file and the field, e.g.
 * `plan.yaml: head_bases[3] must be a positive number`.
 *
 * @example
 * ```ts
 * const plan = parsePlan(await Deno.readTextFile("plan.yaml"), { file: "plan.yaml" });
 * ```
 */
export function parsePlan(text: string, options: { file?: string } = {}): Plan {
  const file = options.file ?? "plan";
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new FileFormatError(`${file}: is not valid YAML (${(error as Error).message.split("\n")[0]})`, {
      file,
    });
  }
  const result = PLAN_SCHEMA.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issuePath(issue.path);
    throw new FileFormatError(`${file}: ${where ? where + " " : ""}${issue.message}`, {
      file,
      field: where,
      hint: "write the plan with harpe plan -o",
    });
  }
  const p = result.data;
  const { rope_type: scalingType, ...scalingParameters } = p.source.rope_scaling ?? {};
  const expected = p.granularity === "kv" ? p.source.num_kv_heads : p.source.num_heads;
  if (p.head_bases.length !== expected) {
    throw new ShapeError(
      `${file}: head_bases has ${p.head_bases.length} entries, but granularity ${p.granularity} needs ${expected}`,
      { file, field: "head_bases", expected, actual: p.head_bases.length },
    );
  }
  return {
    format: p.format,
    toolVersion: p.tool_version,
    schedule: p.schedule,
    parameters: p.parameters,
    granularity: p.granularity,
    targetLength: p.target_length,
    headBases: p.head_bases,
    source: {
      checkpoint: p.source.checkpoint,
      configSha256: p.source.config_sha256,
      numHeads: p.source.num_heads,
      numKvHeads: p.source.num_kv_heads,
      rotaryDim: p.source.rotary_dim,
      ropeTheta: p.source.rope_theta,
      maxPositionEmbeddings: p.source.max_position_embeddings,
      ...(scalingType === undefined
        ? {}
        : { ropeScaling: { type: scalingType, parameters: scalingParameters as Record<string, number> } }),
    },
  };
}

/** Reads and validates a plan file (see {@link parsePlan}). */
export async function readPlan(path: string): Promise<Plan> {
  return parsePlan(await Deno.readTextFile(path), { file: path });
}
