// Conversion to a HARPE checkpoint: config.json gains the per-head bases (v5 `rope_parameters`,
// mirrored in the v4 `rope_theta` + `rope_scaling`) and the target length; the weights are hard-linked
// (or copied) unchanged; harpe_plan.yaml and the tokenizer/generation files go beside them; atomic.

import { ConfigError, PathError, ShapeError, UnsupportedError } from "../errors.ts";
import { AUXILIARY_FILES, Checkpoint, INDEX_FILE } from "../checkpoint/mod.ts";
import type { ModelConfig } from "../checkpoint/model_config.ts";
import { writeDirectoryAtomically } from "../util/atomic.ts";
import { baseCount, type Plan, stringifyPlan } from "./plan.ts";
import { sha256Hex } from "../util/hash.ts";
import { isFile } from "../util/files.ts";

/** The plan file written into every converted checkpoint. */
export const PLAN_FILE = "harpe_plan.yaml";

/** Files of the source checkpoint that conversion never copies (it writes its own). */
const REWRITTEN_FILES: readonly string[] = ["config.json", PLAN_FILE];

/**
 * The config.json object of the HARPE checkpoint: every field of `config.raw` kept (in order), the HARPE
 * rope parameters in the v5 and v4 forms with the original base (`config.rope.theta`) kept and a
 * `linear`/`llama3` scaling's parameters dropped (the per-head bases are not scaled),
 * `max_position_embeddings` = the plan's target length.
 *
 * @example
 * ```ts
 * const out = harpeConfig(config, plan); // out.rope_parameters.head_bases === plan.headBases (values)
 * ```
 */
export function harpeConfig(config: ModelConfig, plan: Plan): Record<string, unknown> {
  const raw = config.raw;
  const originalBase = config.rope.theta;
  const out: Record<string, unknown> = structuredClone(raw);
  const previous = (typeof raw.rope_parameters === "object" && raw.rope_parameters !== null)
    ? raw.rope_parameters as Record<string, unknown>
    : {};
  // The original scaling's parameters go: HARPE's bases replace it (harpe_plan.yaml records it).
  const scalingFields = Object.keys(config.rope.scaling ?? {});
  const keep = Object.fromEntries(
    Object.entries(previous).filter(([field]) => field !== "type" && !scalingFields.includes(field)),
  );
  out.rope_parameters = {
    ...keep,
    rope_type: "harpe",
    rope_theta: originalBase,
    head_bases: plan.headBases.slice(),
    granularity: plan.granularity,
  };
  out.rope_theta = originalBase;
  out.rope_scaling = {
    rope_type: "harpe",
    type: "harpe",
    head_bases: plan.headBases.slice(),
    granularity: plan.granularity,
  };
  out.max_position_embeddings = plan.targetLength;
  return out;
}

/** Options of {@link convertCheckpoint}. */
export interface ConvertOptions {
  plan: Plan;
  /** Convert a checkpoint that already is HARPE, and replace an existing output directory. */
  force?: boolean;
}

/** What a conversion did. */
export interface ConvertSummary {
  output: string;
  /** Weight and index files hard-linked / copied. */
  linked: string[];
  copied: string[];
  /** Tokenizer, generation and template files copied. */
  auxiliary: string[];
  /** Non-fatal findings, e.g. a config hash that differs from the plan's. */
  warnings: string[];
}

/** Checks a plan against the checkpoint it is applied to; returns warnings, throws on a misfit. */
export function checkPlanFits(config: ModelConfig, plan: Plan, options: { configSha256: string }): string[] {
  const { configSha256 } = options;
  const needed = baseCount(config, plan.granularity);
  if (plan.headBases.length !== needed) {
    const per = plan.granularity === "kv" ? "key/value head" : "query head";
    throw new ShapeError(
      `The plan has ${plan.headBases.length} bases, but this model needs ${needed} at granularity ${plan.granularity} (one per ${per})`,
      {
        field: "head_bases",
        expected: needed,
        actual: plan.headBases.length,
        hint: "make a plan for this checkpoint with harpe plan",
      },
    );
  }
  if (plan.targetLength < config.maxPositionEmbeddings) {
    throw new ShapeError(
      `Target length ${plan.targetLength} is shorter than the checkpoint's max_position_embeddings ${config.maxPositionEmbeddings}`,
      {
        field: "target_length",
        expected: `>= ${config.maxPositionEmbeddings}`,
        actual: plan.targetLength,
        hint: "HARPE extends the context; pass a longer --target-length",
      },
    );
  }
  if (configSha256 === plan.source.configSha256) return [];
  const src = plan.source;
  const facts: [string, number, number][] = [
    ["num_attention_heads", src.numHeads, config.numHeads],
    ["num_key_value_heads", src.numKvHeads, config.numKvHeads],
    ["rotary dims", src.rotaryDim, config.rope.rotaryDim],
    ["rope_theta", src.ropeTheta, config.rope.theta],
  ];
  const differ = facts.filter(([, planned, actual]) => planned !== actual);
  if (differ.length > 0) {
    const [name, planned, actual] = differ[0];
    throw new ConfigError(
      `The plan was made for another model: ${name} is ${planned} in the plan but ${actual} here`,
      { field: name, expected: planned, actual, hint: "make a plan for this checkpoint with harpe plan" },
    );
  }
  return [
    `config.json differs from the one the plan was made from (${src.checkpoint}); heads, rotary dims and rope_theta agree, so the plan is used`,
  ];
}

async function linkOrCopy(from: string, to: string): Promise<"linked" | "copied"> {
  try {
    await Deno.link(from, to);
    return "linked";
  } catch {
    await Deno.copyFile(from, to);
    return "copied";
  }
}

function fileName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/**
 * Converts the checkpoint in `dir` into a HARPE checkpoint at `output` (atomically: nothing appears
 * at `output` unless every file was written). Refuses (typed errors) a plan that does not fit, a
 * target shorter than the original context, an already-HARPE checkpoint or an existing output
 * without `force`.
 *
 * @example
 * ```ts
 * await convertCheckpoint("Llama-2-7b-hf", "llama2-harpe", { plan: await readPlan("plan.yaml") });
 * ```
 */
export async function convertCheckpoint(
  dir: string,
  output: string,
  options: ConvertOptions,
): Promise<ConvertSummary> {
  const source = dir.length > 1 ? dir.replace(/\/+$/, "") : dir;
  const target = output.length > 1 ? output.replace(/\/+$/, "") : output;
  const checkpoint = await Checkpoint.open(source);
  const shards = checkpoint.shards.slice();
  const config = checkpoint.config;
  checkpoint.close();
  if (config.rope.harpe && !options.force) {
    throw new UnsupportedError(`"${source}" is already a HARPE checkpoint`, {
      file: source,
      hint: "pass --force to convert it again with the new plan (the original base is kept)",
    });
  }
  if (await samePath(source, target)) {
    throw new PathError(`Output "${target}" is the input checkpoint`, {
      file: target,
      hint: "choose another -o",
    });
  }
  const configBytes = await Deno.readFile(`${source}/config.json`);
  const warnings = checkPlanFits(config, options.plan, { configSha256: await sha256Hex(configBytes) });
  const converted = harpeConfig(config, options.plan);
  const summary: ConvertSummary = { output: target, linked: [], copied: [], auxiliary: [], warnings };
  await writeDirectoryAtomically(target, async (tmp) => {
    const weights = [...shards];
    if (await isFile(`${source}/${INDEX_FILE}`)) weights.push(`${source}/${INDEX_FILE}`);
    for (const path of weights) {
      const how = await linkOrCopy(path, `${tmp}/${fileName(path)}`);
      summary[how].push(fileName(path));
    }
    for (const name of AUXILIARY_FILES) {
      if (REWRITTEN_FILES.includes(name) || !await isFile(`${source}/${name}`)) continue;
      await Deno.copyFile(`${source}/${name}`, `${tmp}/${name}`);
      summary.auxiliary.push(name);
    }
    await Deno.writeTextFile(`${tmp}/config.json`, JSON.stringify(converted, null, 2) + "\n");
    await Deno.writeTextFile(`${tmp}/${PLAN_FILE}`, stringifyPlan(options.plan));
  }, { overwrite: options.force });
  return summary;
}

async function samePath(a: string, b: string): Promise<boolean> {
  try {
    return await Deno.realPath(a) === await Deno.realPath(b);
  } catch {
    return false;
  }
}
