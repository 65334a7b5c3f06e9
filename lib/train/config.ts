// train.yaml: the zod schema of a training run, its defaults, and loading with flag overrides.
// Every validation error names the file and the field path, e.g.
// `train.yaml: optimizer.lr must be a positive number`.

import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { ConfigError, FileFormatError, PathError } from "../errors.ts";

const DEFAULT_BETAS: [number, number] = [0.9, 0.95];
const DEFAULT_EPS = 1e-8;
const DEFAULT_WEIGHT_DECAY = 0.1;
const DEFAULT_GRAD_CLIP = 1.0;
const DEFAULT_MAX_BAD_STEPS = 5;

function described(what: string) {
  return {
    error: (issue: { input?: unknown }) => (issue.input === undefined ? "is required" : `must be ${what}`),
  };
}
const positiveNumber = z.number(described("a positive number")).positive({
  error: "must be a positive number",
});
const nonNegativeNumber = z.number(described("a number >= 0")).min(0, { error: "must be a number >= 0" });
const positiveInt = z.number(described("a positive integer")).int({ error: "must be a positive integer" })
  .positive({ error: "must be a positive integer" });
const nonNegativeInt = z.number(described("an integer >= 0")).int({ error: "must be an integer >= 0" })
  .min(0, { error: "must be an integer >= 0" });
const path = z.string(described("a path")).min(1, { error: "must be a non-empty path" });
const beta = z.number(described("a number in [0, 1)")).min(0, { error: "must be in [0, 1)" })
  .lt(1, { error: "must be in [0, 1)" });

/** The schema of train.yaml (snake_case as in the file). */
export const trainConfigSchema = z.strictObject({
  /** A HARPE checkpoint dir, or a plain HF checkpoint dir when `plan` is given. */
  model: path,
  /** A plan.yaml: `model` is converted with it before training. */
  plan: path.optional(),
  /** A token file from `harpe tokenize`. */
  data: path,
  /** The run directory (train.yaml as resolved, log.jsonl, checkpoints/, latest). */
  out: path,
  seq_len: positiveInt,
  batch: positiveInt.default(1),
  grad_accum: positiveInt.default(1),
  steps: positiveInt.optional(),
  tokens: positiveInt.optional(),
  optimizer: z.strictObject({
    lr: positiveNumber,
    betas: z.tuple([beta, beta], described("a list of two numbers in [0, 1)")).default(DEFAULT_BETAS),
    eps: positiveNumber.default(DEFAULT_EPS),
    weight_decay: nonNegativeNumber.default(DEFAULT_WEIGHT_DECAY),
  }, described("a mapping with lr, betas, eps, weight_decay")),
  schedule: z.strictObject({
    kind: z.enum(["cosine", "constant"], described("cosine or constant")).default("cosine"),
    warmup: nonNegativeInt.default(0),
    min_lr: nonNegativeNumber.default(0),
  }, described("a mapping with kind, warmup, min_lr")).default({ kind: "cosine", warmup: 0, min_lr: 0 }),
  /** Clip the global gradient norm to this value; 0 turns clipping off. */
  grad_clip: nonNegativeNumber.default(DEFAULT_GRAD_CLIP),
  checkpoint: z.strictObject({ every: positiveInt }, described("a mapping with every")).optional(),
  seed: nonNegativeInt.default(0),
  device: z.enum(["cpu", "cuda"], described("cpu or cuda")).default("cpu"),
  /** Storage of activations and working weights: f32, or bf16 (f32 master weights and optimizer state). */
  precision: z.enum(["f32", "bf16"], described("f32 or bf16")).default("f32"),
  /** Keep only each layer's input, attention output and LSE for the backward; recompute the rest. */
  activation_checkpointing: z.boolean(described("true or false")).default(false),
  /** Refuse to start when the memory estimate exceeds this size (bytes, or e.g. "60GiB"); default: the
   * device's free memory. */
  memory_limit: z.union([positiveInt, z.string()], described("a size such as 60GiB")).optional(),
  max_bad_steps_in_row: positiveInt.default(DEFAULT_MAX_BAD_STEPS),
  /** Element type of the gradient all-reduce on several GPUs: f32 (default), or bf16 (half the
   * traffic; each rank's gradients are rounded to bf16 before the sum). */
  grad_reduce_dtype: z.enum(["f32", "bf16"], described("f32 or bf16")).default("f32"),
}, described("a mapping")).check((ctx) => {
  const { steps, tokens } = ctx.value;
  if ((steps === undefined) === (tokens === undefined)) {
    ctx.issues.push({
      code: "custom",
      path: ["steps"],
      message: "or tokens must be given (exactly one)",
      input: steps,
    });
  }
});

/** train.yaml as written (before defaults). */
export type TrainConfigInput = z.input<typeof trainConfigSchema>;

/** A validated training configuration with defaults filled in and `steps` computed from `tokens`. */
export type TrainConfig = z.output<typeof trainConfigSchema> & {
  steps: number;
  checkpoint: { every: number };
};

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === "unrecognized_keys") {
    return `has unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.join(", ")}`;
  }
  return issue.message;
}

function fieldPath(path: PropertyKey[]): string {
  return path.map((p) => (typeof p === "number" ? `[${p}]` : String(p))).join(".").replace(/\.\[/g, "[");
}

/**
 * Validates a parsed train.yaml object; `file` names it in errors. Relative paths are kept as given.
 *
 * @example
 * ```ts
 * const config = parseTrainConfig({ model: "m", data: "d.tokens", out: "run", seq_len: 256, steps: 10,
 *   optimizer: { lr: 1e-3 } });
 * ```
 */
export function parseTrainConfig(raw: unknown, options: { file?: string } = {}): TrainConfig {
  const file = options.file ?? "train.yaml";
  const result = trainConfigSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = fieldPath(issue.path);
    const message = where ? `${where} ${describeIssue(issue)}` : `the file ${describeIssue(issue)}`;
    throw new ConfigError(`${file}: ${message}`, { file, field: where || undefined });
  }
  const config = result.data;
  const tokensPerStep = config.batch * config.grad_accum * config.seq_len;
  const steps = config.steps ?? Math.ceil((config.tokens as number) / tokensPerStep);
  const every = config.checkpoint?.every ?? steps;
  return { ...config, steps, checkpoint: { every } };
}

function setPath(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split(".");
  let node = target;
  for (const key of keys.slice(0, -1)) {
    if (typeof node[key] !== "object" || node[key] === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  if (value === null) delete node[keys[keys.length - 1]];
  else node[keys[keys.length - 1]] = value;
}

const PATH_FIELDS = ["model", "plan", "data", "out"] as const;

/**
 * Reads train.yaml, applies `overrides` (dotted field paths, e.g. `{"optimizer.lr": 1e-4}`; undefined
 * leaves a field, null removes it; paths in overrides are relative to the working directory), validates, and resolves the file's relative paths
 * against the file's folder.
 *
 * @example
 * ```ts
 * const config = await loadTrainConfig("train.yaml", { overrides: { steps: 100 } });
 * ```
 */
export async function loadTrainConfig(
  file: string,
  options: { overrides?: Record<string, unknown> } = {},
): Promise<TrainConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new PathError(`Config "${file}" does not exist`, { file });
    }
    throw error;
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new FileFormatError(`${file}: not valid YAML: ${(error as Error).message.split("\n")[0]}`, {
      file,
    });
  }
  if (typeof raw === "object" && raw !== null && !Array.isArray(raw)) {
    const slash = file.lastIndexOf("/");
    const base = slash >= 0 ? file.slice(0, slash + 1) : "";
    const record = raw as Record<string, unknown>;
    for (const key of PATH_FIELDS) {
      const value = record[key];
      if (typeof value === "string" && value && !value.startsWith("/")) record[key] = base + value;
    }
    for (const [key, value] of Object.entries(options.overrides ?? {})) {
      if (value !== undefined) setPath(record, key, value);
    }
  }
  return parseTrainConfig(raw, { file: file.slice(file.lastIndexOf("/") + 1) });
}
