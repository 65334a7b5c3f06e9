// Checks the model against a reference case (the format of fixtures/golden: meta.json, checkpoint/,
// reference.safetensors): plain and HARPE logits, the loss and every gradient, as max relative errors.

import type { ModelConfig, RopeConfig } from "../checkpoint/model_config.ts";
import { ConfigError, FileFormatError, PathError, ShapeError } from "../errors.ts";
import type { Engine } from "../engine/engine.ts";
import { IGNORE_INDEX } from "../engine/engine.ts";
import { SafetensorsFile } from "../safetensors/mod.ts";
import { loadModel } from "./load.ts";
import type { Precision } from "./model.ts";

/** Largest accepted relative error of logits and loss. */
export const LOGITS_TOLERANCE = 1e-4;
/** Largest accepted relative error of any gradient. */
export const GRADIENT_TOLERANCE = 1e-3;

/** The fields of a case's meta.json that the check reads. */
export interface ReferenceMeta {
  architecture: string;
  granularity: "kv" | "query";
  qBases: number[];
  kBases: number[] | null;
  seq: number;
  batch: number;
}

/** Max relative errors (max |a - b| / max |b|) of one case, and whether they are within tolerance. */
export interface ReferenceReport {
  case: string;
  logitsPlain: number;
  logitsHarpe: number;
  loss: number;
  /** Computed loss (mean next-token cross-entropy with HARPE bases) and the reference's. */
  lossValue: { actual: number; expected: number };
  /** Relative error per parameter name, in parameter-table order. */
  gradients: Record<string, number>;
  maxGradient: number;
  passed: boolean;
}

/**
 * max |a - b| / max |b| (Infinity on NaN; the plain max |a - b| when b is all zero).
 *
 * @example
 * ```ts
 * maxRelativeError([1, 2.002], [1, 2]); // 0.001
 * ```
 */
export function maxRelativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let diff = 0, scale = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return scale === 0 ? diff : diff / scale;
}

/**
 * Reads and checks a case's meta.json; ConfigError names a missing or wrong field.
 *
 * @example
 * ```ts
 * const meta = await readReferenceMeta("fixtures/golden/llama_mha/meta.json"); // meta.kBases: 4 bases
 * ```
 */
export async function readReferenceMeta(path: string): Promise<ReferenceMeta> {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new PathError(`${path} does not exist`, { file: path });
    if (error instanceof SyntaxError) {
      throw new FileFormatError(`${path} is not valid JSON: ${error.message}`, { file: path });
    }
    throw error;
  }
  const field = <T>(name: string, ok: (v: unknown) => boolean, expected: string): T => {
    if (!ok(raw[name])) {
      throw new ConfigError(`${path}: "${name}" must be ${expected}`, {
        file: path,
        field: name,
        expected,
        actual: raw[name],
      });
    }
    return raw[name] as T;
  };
  const bases = (v: unknown) =>
    Array.isArray(v) && v.length > 0 && v.every((b) => typeof b === "number" && b > 0);
  const count = (v: unknown) => Number.isInteger(v) && (v as number) > 0;
  const granularity = field<"kv" | "query">(
    "granularity",
    (v) => v === "kv" || v === "query",
    '"kv" or "query"',
  );
  return {
    architecture: field("architecture", (v) => typeof v === "string", "a string"),
    granularity,
    qBases: field("q_bases", bases, "a list of positive bases"),
    kBases: granularity === "kv"
      ? field("k_bases", bases, "a list of positive bases")
      : field("k_bases", (v) => v === null || v === undefined, "null at query granularity") ?? null,
    seq: field("seq", count, "a positive integer"),
    batch: field("batch", count, "a positive integer"),
  };
}

/** The RoPE settings of the case: HARPE with the bases of meta.json, checked against the config. */
function harpeRope(config: ModelConfig, meta: ReferenceMeta, file: string): RopeConfig {
  const { numHeads: H, numKvHeads: K } = config;
  const wrong = (field: string, expected: unknown, actual: unknown) =>
    new ConfigError(`${file}: "${field}" has ${actual} entries, the checkpoint has ${expected} heads`, {
      file,
      field,
      expected,
      actual,
    });
  if (meta.qBases.length !== H) throw wrong("q_bases", H, meta.qBases.length);
  if (meta.granularity === "kv") {
    const k = meta.kBases!;
    if (k.length !== K) throw wrong("k_bases", K, k.length);
    const group = H / K;
    meta.qBases.forEach((b, h) => {
      if (b !== k[Math.floor(h / group)]) {
        throw new ConfigError(
          `${file}: q_bases[${h}] = ${b} differs from its key head's base ${k[Math.floor(h / group)]}`,
          {
            file,
            field: "q_bases",
          },
        );
      }
    });
  }
  const headBases = meta.granularity === "kv" ? meta.kBases! : meta.qBases;
  return {
    ...config.rope,
    type: "harpe",
    harpe: { headBases: [...headBases], granularity: meta.granularity },
  };
}

/**
 * Runs the checks of one case directory on `engine`, with the model at `precision` (default "f32"),
 * against `tolerances` (default LOGITS_TOLERANCE for logits and loss, GRADIENT_TOLERANCE for gradients).
 *
 * @example
 * ```ts
 * const report = await verifyReference("fixtures/golden/llama_mha", { engine: new CpuEngine() });
 * console.log(report.passed, report.maxGradient);
 * ```
 */
export async function verifyReference(
  dir: string,
  options: { engine: Engine; precision?: Precision; tolerances?: { logits: number; gradients: number } },
): Promise<ReferenceReport> {
  const tolerance = options.tolerances ?? { logits: LOGITS_TOLERANCE, gradients: GRADIENT_TOLERANCE };
  const root = dir.replace(/\/+$/, "");
  const meta = await readReferenceMeta(`${root}/meta.json`);
  const model = await loadModel(options.engine, `${root}/checkpoint`, { precision: options.precision });
  const reference = await SafetensorsFile.open(`${root}/reference.safetensors`);
  try {
    const config = model.config;
    if (meta.architecture !== config.architectureClass) {
      throw new ConfigError(
        `${root}/meta.json: architecture ${meta.architecture} differs from the checkpoint's ${config.architectureClass}`,
        {
          file: `${root}/meta.json`,
          field: "architecture",
          expected: config.architectureClass,
          actual: meta.architecture,
        },
      );
    }
    const refFile = reference.path;
    const { batch, seq } = meta;
    const ids = reference.info("input_ids");
    if (ids.dtype !== "I32" || ids.shape.join() !== [batch, seq].join()) {
      throw new FileFormatError(
        `${refFile}: input_ids is ${ids.dtype} [${ids.shape}], expected I32 [${batch}, ${seq}]`,
        {
          file: refFile,
          tensor: "input_ids",
        },
      );
    }
    const tokens = await reference.readTyped("input_ids") as Int32Array;
    const expectLogits = async (name: string) => {
      const info = reference.info(name);
      const shape = [batch, seq, config.vocabSize];
      if (info.shape.join() !== shape.join()) {
        throw new ShapeError(`${refFile}: ${name} is [${info.shape}], expected [${shape}]`, {
          file: refFile,
          tensor: name,
        });
      }
      return await reference.readF32(name);
    };
    const harpe = harpeRope(config, meta, `${root}/meta.json`);
    const plain: RopeConfig = { ...config.rope, type: "default", harpe: undefined };

    model.setRope(plain);
    const logitsPlain = maxRelativeError(
      await model.forward(tokens, { batch }),
      await expectLogits("logits.plain"),
    );
    model.setRope(harpe);
    const logitsHarpe = maxRelativeError(
      await model.forward(tokens, { batch }),
      await expectLogits("logits.harpe"),
    );

    const targets = tokens.map((_, i) => (i % seq === seq - 1 ? IGNORE_INDEX : tokens[i + 1]));
    model.zeroGrads();
    const lossActual = await model.forwardBackward(tokens, targets, { batch });
    const lossExpected = (await reference.readF32("loss.harpe"))[0];
    const loss = Math.abs(lossActual - lossExpected) / Math.abs(lossExpected);

    const grads = await model.exportGradients();
    const gradients: Record<string, number> = {};
    for (const [name, grad] of grads) {
      const refName = `grad.${name}`;
      if (!reference.tensors.has(refName)) {
        throw new FileFormatError(`${refFile} has no "${refName}"`, { file: refFile, tensor: refName });
      }
      const expected = await reference.readF32(refName);
      if (expected.length !== grad.length) {
        throw new ShapeError(
          `${refFile}: ${refName} has ${expected.length} values, expected ${grad.length}`,
          {
            file: refFile,
            tensor: refName,
          },
        );
      }
      gradients[name] = maxRelativeError(grad, expected);
    }
    const maxGradient = Math.max(...Object.values(gradients));
    const passed = Math.max(logitsPlain, logitsHarpe, loss) <= tolerance.logits &&
      maxGradient <= tolerance.gradients;
    return {
      case: root.split("/").pop() ?? root,
      logitsPlain,
      logitsHarpe,
      loss,
      lossValue: { actual: lossActual, expected: lossExpected },
      gradients,
      maxGradient,
      passed,
    };
  } finally {
    reference.close();
    model.dispose();
  }
}
