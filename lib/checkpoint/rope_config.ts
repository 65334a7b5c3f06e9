// RoPE settings from config.json in both forms: v5 `rope_parameters` and v4 `rope_theta` +
// `rope_scaling` (HARPE checkpoints mirror theirs in both). When both forms are present they must agree.
// Accepted types: default, linear and llama3 scaling (parameters validated), harpe.

import type { ConfigFields } from "./config_fields.ts";
import type { Granularity, HarpeRope, RopeConfig } from "./model_config.ts";

/** The RoPE types harpe can run: plain RoPE, linear and Llama-3 scaling of it, HARPE's per-head bases. */
export const SUPPORTED_ROPE_TYPES: readonly string[] = ["default", "linear", "llama3", "harpe"];

/** The parameters each scaled rope type requires, by their HF names (all numbers). */
export const SCALING_FIELDS: Readonly<Record<string, readonly string[]>> = {
  linear: ["factor"],
  llama3: ["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"],
};

/** The smallest scaling factor (1: no stretch); HF documents `factor` as a float >= 1. */
const MIN_SCALING_FACTOR = 1;

/** HF's base when a config names none (the default of every supported architecture). */
export const DEFAULT_ROPE_THETA = 10000;

const GRANULARITIES: readonly Granularity[] = ["kv", "query"];

/** The head counts the per-head bases are checked against. */
export interface RopeDims {
  headDim: number; // D
  numHeads: number; // H
  numKvHeads: number; // K
}

/** What one form of the config says. `theta` undefined: the form leaves it to the default. */
interface RopeForm {
  name: string;
  type: string;
  theta?: number;
  harpe?: HarpeRope;
  scaling?: Record<string, number>;
}

function ropeType(fields: ConfigFields): string {
  const type = fields.has("rope_type") ? fields.string("rope_type") : fields.string("type", "default");
  if (fields.has("rope_type") && fields.has("type") && fields.string("type") !== type) {
    throw fields.error("type", `is "${fields.string("type")}" but "rope_type" is "${type}"`, {
      hint: "give one rope type",
    });
  }
  if (!SUPPORTED_ROPE_TYPES.includes(type)) {
    const field = fields.has("rope_type") ? "rope_type" : "type";
    throw fields.error(field, `is "${type}", which harpe does not support`, {
      expected: SUPPORTED_ROPE_TYPES,
      actual: type,
      hint: `supported rope types: ${SUPPORTED_ROPE_TYPES.join(", ")}`,
    });
  }
  return type;
}

/** The validated scaling parameters of a `linear` or `llama3` rope type; undefined for the others. */
function ropeScaling(fields: ConfigFields, type: string): Record<string, number> | undefined {
  if (!(type in SCALING_FIELDS)) return undefined;
  const factor = fields.positiveNumber("factor");
  if (factor < MIN_SCALING_FACTOR) {
    throw fields.error(
      "factor",
      `must be at least ${MIN_SCALING_FACTOR} (the context stretch), got ${factor}`,
      {
        expected: `>= ${MIN_SCALING_FACTOR}`,
        actual: factor,
      },
    );
  }
  if (type === "linear") return { factor };
  const low = fields.positiveNumber("low_freq_factor");
  const high = fields.positiveNumber("high_freq_factor");
  if (high <= low) {
    throw fields.error("high_freq_factor", `(${high}) must be greater than "low_freq_factor" (${low})`, {
      expected: `> ${low}`,
      actual: high,
    });
  }
  return {
    factor,
    low_freq_factor: low,
    high_freq_factor: high,
    original_max_position_embeddings: fields.positiveInt("original_max_position_embeddings"),
  };
}

function harpeRope(fields: ConfigFields, dims: RopeDims): HarpeRope {
  const granularity = fields.string("granularity") as Granularity;
  if (!GRANULARITIES.includes(granularity)) {
    throw fields.error("granularity", `must be "kv" or "query", got "${granularity}"`, {
      expected: GRANULARITIES,
      actual: granularity,
    });
  }
  const bases = fields.raw["head_bases"];
  if (!Array.isArray(bases)) {
    throw fields.error("head_bases", `must be a list of numbers, got ${JSON.stringify(bases ?? null)}`, {
      hint: "a HARPE config lists one RoPE base per head",
    });
  }
  const expected = granularity === "kv" ? dims.numKvHeads : dims.numHeads;
  if (bases.length !== expected) {
    const per = granularity === "kv" ? "key/value head" : "query head";
    throw fields.error("head_bases", `has ${bases.length} entries, expected ${expected} (one per ${per})`, {
      expected,
      actual: bases.length,
    });
  }
  bases.forEach((base, h) => {
    if (typeof base !== "number" || !Number.isFinite(base) || base <= 1) {
      throw fields.error(`head_bases[${h}]`, `must be a number greater than 1, got ${JSON.stringify(base)}`);
    }
  });
  return { headBases: bases.slice() as number[], granularity };
}

function v5Form(top: ConfigFields, dims: RopeDims): RopeForm | undefined {
  const params = top.object("rope_parameters");
  if (!params) return undefined;
  const type = ropeType(params);
  return {
    name: '"rope_parameters"',
    type,
    theta: params.has("rope_theta") ? params.positiveNumber("rope_theta") : undefined,
    harpe: type === "harpe" ? harpeRope(params, dims) : undefined,
    scaling: ropeScaling(params, type),
  };
}

function v4Form(top: ConfigFields, dims: RopeDims): RopeForm | undefined {
  const scaling = top.object("rope_scaling");
  if (!scaling && !top.has("rope_theta")) return undefined;
  const type = scaling ? ropeType(scaling) : "default";
  return {
    name: '"rope_theta"/"rope_scaling"',
    type,
    theta: top.has("rope_theta") ? top.positiveNumber("rope_theta") : undefined,
    harpe: type === "harpe" && scaling ? harpeRope(scaling, dims) : undefined,
    scaling: scaling ? ropeScaling(scaling, type) : undefined,
  };
}

function checkAgree(top: ConfigFields, v5: RopeForm, v4: RopeForm): void {
  const disagree = (what: string, a: unknown, b: unknown) =>
    top.error(
      "rope_parameters",
      `and the v4 fields ${v4.name} disagree on ${what}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`,
      { expected: a, actual: b, hint: "make both forms say the same, or remove the v4 fields" },
    );
  if (v5.type !== v4.type) throw disagree("the rope type", v5.type, v4.type);
  if (v5.theta !== undefined && v4.theta !== undefined && v5.theta !== v4.theta) {
    throw disagree("rope_theta", v5.theta, v4.theta);
  }
  if (v5.harpe && v4.harpe) {
    if (v5.harpe.granularity !== v4.harpe.granularity) {
      throw disagree("the HARPE granularity", v5.harpe.granularity, v4.harpe.granularity);
    }
    const same = v5.harpe.headBases.every((base, h) => base === v4.harpe!.headBases[h]);
    if (!same) throw disagree("the HARPE head_bases", v5.harpe.headBases, v4.harpe.headBases);
  }
  if (v5.scaling && v4.scaling) {
    for (const [field, value] of Object.entries(v5.scaling)) {
      if (value !== v4.scaling[field]) throw disagree(field, value, v4.scaling[field]);
    }
  }
}

function rotaryDim(top: ConfigFields, headDim: number): number {
  const params = top.object("rope_parameters");
  const inner = params?.has("partial_rotary_factor")
    ? params.positiveNumber("partial_rotary_factor")
    : undefined;
  const outer = top.has("partial_rotary_factor") ? top.positiveNumber("partial_rotary_factor") : undefined;
  if (inner !== undefined && outer !== undefined && inner !== outer) {
    throw top.error(
      "partial_rotary_factor",
      `is ${outer} but "rope_parameters.partial_rotary_factor" is ${inner}`,
    );
  }
  const factor = inner ?? outer ?? 1;
  const field = inner !== undefined ? "rope_parameters.partial_rotary_factor" : "partial_rotary_factor";
  // HF rotates int(head_dim * factor) dims.
  const dim = Math.floor(headDim * factor);
  if (factor > 1 || dim < 2 || dim % 2 !== 0) {
    throw top.error(
      field,
      `(${factor}) times head_dim (${headDim}) must give an even number of rotary dims from 2 to ${headDim}`,
      { expected: "factor in (0, 1] giving an even rotary dim", actual: factor },
    );
  }
  return dim;
}

/**
 * Reads the RoPE settings of a config (`top` = the whole config.json object).
 *
 * @example
 * ```ts
 * const rope = parseRope(new ConfigFields(raw, "config.json"), { headDim: 128, numHeads: 32, numKvHeads: 8 });
 * ```
 */
export function parseRope(top: ConfigFields, dims: RopeDims): RopeConfig {
  const v5 = v5Form(top, dims);
  const v4 = v4Form(top, dims);
  if (v5 && v4) checkAgree(top, v5, v4);
  const form = v5 ?? v4;
  const rope: RopeConfig = {
    type: form?.type ?? "default",
    theta: v5?.theta ?? v4?.theta ?? DEFAULT_ROPE_THETA,
    rotaryDim: rotaryDim(top, dims.headDim),
  };
  const harpe = v5?.harpe ?? v4?.harpe;
  if (harpe) rope.harpe = harpe;
  const scaling = v5?.scaling ?? v4?.scaling;
  if (scaling) rope.scaling = scaling;
  return rope;
}
