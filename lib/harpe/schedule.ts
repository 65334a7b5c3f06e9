// One entry point for every base schedule: resolves the parameters a schedule needs (filling the
// documented defaults: the `auto` range when b_min/b_max are missing, the target length as the
// peak-valley window) and returns the bases in head order with the parameters actually used.

import { ConfigError, ShapeError } from "../errors.ts";
import { autoRange, autoStride } from "./auto.ts";
import { extremaDefinition, peakValleyBases } from "./peak_valley.ts";
import { type Stage, stageBases } from "./stages.ts";
import { checkCount, geometricBases, type HeadOrder, uniformBases } from "./uniform.ts";

/** Every schedule harpe can plan with. */
export const SCHEDULES = ["uniform", "peak-valley", "geometric", "stages", "explicit", "auto"] as const;
/** A schedule's name. */
export type ScheduleName = typeof SCHEDULES[number];

/** What the model and the extension look like (the inputs every schedule may use). */
export interface ScheduleContext {
  /** Number of bases to make: K at `kv` granularity, H at `query`. */
  count: number;
  /** Rotated dims per head (R). */
  rotaryDim: number;
  /** The checkpoint's base (rope_theta). */
  originalBase: number;
  /** The checkpoint's context length (max_position_embeddings). */
  originalLength: number;
  /** The context length after extension. */
  targetLength: number;
}

/** User-given schedule parameters; each schedule reads the ones it needs. */
export interface ScheduleParameters {
  bMin?: number;
  bMax?: number;
  order?: HeadOrder;
  stride?: number;
  windowStart?: number;
  windowEnd?: number;
  sampleStep?: number;
  neighbourhood?: number;
  stages?: Stage[];
  /** stages: keep one head group at the original base. */
  keepOriginal?: boolean;
  /** explicit: the bases, in head order. */
  bases?: number[];
}

/** The bases of a schedule and the complete parameters that reproduce them. */
export interface ScheduleResult {
  bases: number[];
  /** Parameters as used (snake_case keys, as written into plan.yaml). */
  parameters: Record<string, unknown>;
}

function range(context: ScheduleContext, params: ScheduleParameters): { bMin: number; bMax: number } {
  if (params.bMin !== undefined && params.bMax !== undefined) return { bMin: params.bMin, bMax: params.bMax };
  const auto = autoRange(context);
  const bMin = params.bMin ?? auto.bMin;
  return { bMin, bMax: params.bMax ?? Math.max(bMin, auto.bMax) };
}

function peakValley(context: ScheduleContext, params: ScheduleParameters): ScheduleResult {
  const { bMin, bMax } = range(context, params);
  const stride = params.stride ?? autoStride(bMin, bMax, context.count);
  const definition = extremaDefinition({
    windowStart: params.windowStart,
    windowEnd: params.windowEnd ?? context.targetLength,
    sampleStep: params.sampleStep,
    neighbourhood: params.neighbourhood,
  });
  const bases = peakValleyBases(context.count, {
    bMin,
    bMax,
    stride,
    rotaryDim: context.rotaryDim,
    ...definition,
  });
  return {
    bases,
    parameters: {
      b_min: bMin,
      b_max: bMax,
      stride,
      window_start: definition.windowStart,
      window_end: definition.windowEnd,
      sample_step: definition.sampleStep,
      neighbourhood: definition.neighbourhood,
    },
  };
}

/**
 * Computes the bases of `schedule` for a model and target length, in head order.
 *
 * @example
 * ```ts
 * const context = { count: 32, rotaryDim: 128, originalBase: 1e4, originalLength: 4096, targetLength: 131072 };
 * computeBases("uniform", context, { bMin: 1e6, bMax: 5e6, order: "desc" }).bases[0]; // 5e6
 * ```
 */
export function computeBases(
  schedule: ScheduleName,
  context: ScheduleContext,
  params: ScheduleParameters = {},
): ScheduleResult {
  checkCount(context.count);
  switch (schedule) {
    case "uniform":
    case "geometric": {
      const { bMin, bMax } = range(context, params);
      const order = params.order ?? "asc";
      const spaced = schedule === "uniform" ? uniformBases : geometricBases;
      return {
        bases: spaced(context.count, { bMin, bMax, order }),
        parameters: { b_min: bMin, b_max: bMax, order },
      };
    }
    case "peak-valley":
      return peakValley(context, params);
    case "auto": {
      if (params.bMin !== undefined || params.bMax !== undefined) {
        throw new ConfigError("The auto schedule derives b_min and b_max itself", {
          field: "schedule",
          hint: "drop --b-min/--b-max, or use --schedule peak-valley with them",
        });
      }
      const auto = autoRange(context);
      const result = peakValley(context, { ...params, bMin: auto.bMin, bMax: auto.bMax });
      return { bases: result.bases, parameters: { ...result.parameters, critical_dim: auto.criticalDim } };
    }
    case "stages": {
      if (!params.stages || params.stages.length === 0) {
        throw new ConfigError("The stages schedule needs a stage list", {
          field: "stages",
          hint: 'pass e.g. --stages "32k:1e6,64k:2e6,128k:5e6"',
        });
      }
      const keep = params.keepOriginal ? context.originalBase : undefined;
      return {
        bases: stageBases(context.count, { stages: params.stages, keepOriginal: keep }),
        parameters: {
          stages: params.stages.map((stage) => ({ length: stage.length, base: stage.base })),
          keep_original: params.keepOriginal ?? false,
        },
      };
    }
    case "explicit": {
      const bases = params.bases ?? [];
      if (bases.length !== context.count) {
        throw new ShapeError(`The explicit list has ${bases.length} bases, expected ${context.count}`, {
          field: "bases",
          expected: context.count,
          actual: bases.length,
          hint: "give one base per head at the chosen granularity (--granularity kv: one per key/value head)",
        });
      }
      bases.forEach((base, h) => {
        if (!(Number.isFinite(base) && base > 1)) {
          throw new ShapeError(`bases[${h}] must be a number greater than 1, got ${base}`, {
            field: `bases[${h}]`,
          });
        }
      });
      return { bases: bases.slice(), parameters: {} };
    }
  }
}
