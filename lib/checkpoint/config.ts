// Parses a Hugging Face config.json (v4 or v5 form) into the normalized ModelConfig, refusing what
// harpe cannot run with a ConfigError or UnsupportedError that names the field and the supported values.

import { ConfigError, PathError, UnsupportedError } from "../errors.ts";
import { readJsonObject } from "../util/files.ts";
import { ConfigFields } from "./config_fields.ts";
import type { Architecture, ConfigDType, ModelConfig } from "./model_config.ts";
import { parseRope } from "./rope_config.ts";

/** The HF causal-LM class of each supported `model_type`. */
export const ARCHITECTURE_CLASSES: Readonly<Record<Architecture, string>> = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
  qwen3: "Qwen3ForCausalLM",
};

/** Activations of the MLP harpe implements (HF treats "swish" as SiLU). */
export const SUPPORTED_ACTIVATIONS: readonly string[] = ["silu", "swish"];

/** Storage dtypes a config may name. */
export const CONFIG_DTYPES: readonly ConfigDType[] = ["float32", "bfloat16", "float16"];

/** HF's RMSNorm epsilon when a config names none (the default of every supported architecture). */
export const DEFAULT_RMS_NORM_EPS = 1e-6;

/** The dtype value that leaves the choice to the loader, as if none were given. */
const AUTO_DTYPE = "auto";

/** HF's dtype when a config names none. */
const DEFAULT_DTYPE: ConfigDType = "float32";

/** Prefix of the model_type `harpe export --hf-remote-code` writes (lib/interop), e.g. "harpe_llama". */
const REMOTE_CODE_MODEL_TYPE_PREFIX = "harpe_";

/** The class name HARPE remote code may put in `architectures`. */
const REMOTE_CODE_ARCHITECTURE_CLASS = "HarpeForCausalLM";

function architecture(fields: ConfigFields): Architecture {
  const named = fields.string("model_type");
  const type = named.startsWith(REMOTE_CODE_MODEL_TYPE_PREFIX)
    ? named.slice(REMOTE_CODE_MODEL_TYPE_PREFIX.length)
    : named;
  const supported = Object.keys(ARCHITECTURE_CLASSES);
  if (!supported.includes(type)) throw fields.unsupported("model_type", { actual: named, supported });
  return type as Architecture;
}

function architectureClass(fields: ConfigFields, arch: Architecture): string {
  const expected = ARCHITECTURE_CLASSES[arch];
  if (!fields.has("architectures")) return expected;
  const classes = fields.raw["architectures"];
  if (!Array.isArray(classes) || classes.length === 0 || typeof classes[0] !== "string") {
    throw fields.error("architectures", `must be a list of class names, got ${JSON.stringify(classes)}`);
  }
  if (classes[0] === REMOTE_CODE_ARCHITECTURE_CLASS) return expected;
  if (classes[0] !== expected) {
    throw new UnsupportedError(
      `${fields.file}: "architectures" names ${
        classes[0]
      }; harpe supports ${expected} for model_type "${arch}"`,
      { file: fields.file, field: "architectures", expected, actual: classes[0] },
    );
  }
  return expected;
}

function activation(fields: ConfigFields): void {
  const act = fields.string("hidden_act", "silu");
  if (!SUPPORTED_ACTIVATIONS.includes(act)) {
    throw fields.unsupported("hidden_act", { actual: act, supported: SUPPORTED_ACTIVATIONS });
  }
}

function dtype(fields: ConfigFields): ConfigDType {
  const read = (field: string): ConfigDType | undefined => {
    if (!fields.has(field)) return undefined;
    const value = fields.string(field).replace(/^torch\./, "");
    if (value === AUTO_DTYPE) return undefined;
    if (!CONFIG_DTYPES.includes(value as ConfigDType)) {
      throw fields.unsupported(field, { actual: value, supported: CONFIG_DTYPES });
    }
    return value as ConfigDType;
  };
  const v5 = read("dtype");
  const v4 = read("torch_dtype");
  if (v5 && v4 && v5 !== v4) {
    throw fields.error("dtype", `is "${v5}" but the v4 field "torch_dtype" is "${v4}"`, {
      expected: v5,
      actual: v4,
      hint: "make both say the same, or remove torch_dtype",
    });
  }
  return v5 ?? v4 ?? DEFAULT_DTYPE;
}

function headDim(fields: ConfigFields, arch: Architecture, hidden: number, heads: number): number {
  if (fields.has("head_dim")) return fields.positiveInt("head_dim");
  if (arch === "qwen3") {
    throw fields.error("head_dim", "is missing; Qwen3 configs must give it explicitly", {
      hint: 'add "head_dim" to config.json',
    });
  }
  if (hidden % heads !== 0) {
    throw fields.error(
      "hidden_size",
      `(${hidden}) must be divisible by "num_attention_heads" (${heads}) when "head_dim" is not given`,
      { expected: `a multiple of ${heads}`, actual: hidden },
    );
  }
  return hidden / heads;
}

/** Biases by architecture: Qwen2 always has q/k/v bias; Llama and Qwen3 follow `attention_bias`. */
function biases(fields: ConfigFields, arch: Architecture) {
  const attentionBias = fields.boolean("attention_bias", false);
  if (arch === "mistral" && attentionBias) {
    throw new UnsupportedError(
      `${fields.file}: "attention_bias" is true, but Mistral attention has no biases`,
      { file: fields.file, field: "attention_bias", expected: false, actual: true, hint: "remove it" },
    );
  }
  const mlpBias = fields.boolean("mlp_bias", false);
  if (mlpBias && arch !== "llama") {
    throw new UnsupportedError(`${fields.file}: "mlp_bias" is true, but ${arch} MLPs have no biases`, {
      file: fields.file,
      field: "mlp_bias",
      expected: false,
      actual: true,
    });
  }
  return {
    qkvBias: arch === "qwen2" || attentionBias,
    outputBias: arch !== "qwen2" && attentionBias,
    mlpBias,
  };
}

/** The attention window if the config turns one on (Mistral `sliding_window`; Qwen `use_sliding_window`). */
function slidingWindow(fields: ConfigFields, arch: Architecture): number | undefined {
  if (!fields.has("sliding_window")) return undefined;
  if (arch === "llama") return undefined;
  if ((arch === "qwen2" || arch === "qwen3") && !fields.boolean("use_sliding_window", false)) {
    return undefined;
  }
  return fields.positiveInt("sliding_window");
}

/**
 * Normalizes a config.json object (v4 or v5 form) into a {@link ModelConfig}.
 * Throws ConfigError (missing or bad field) or UnsupportedError (architecture, activation, rope type or
 * dtype harpe cannot run), each naming the field.
 *
 * @example
 * ```ts
 * const config = parseConfig(JSON.parse(await Deno.readTextFile("model/config.json")));
 * console.log(config.numHeads, config.rope.theta);
 * ```
 */
export function parseConfig(raw: Record<string, unknown>, options: { file?: string } = {}): ModelConfig {
  const file = options.file ?? "config.json";
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(`${file}: must hold a JSON object`, { file });
  }
  const fields = new ConfigFields(raw, file);
  const arch = architecture(fields);
  const archClass = architectureClass(fields, arch);
  activation(fields);
  const hiddenSize = fields.positiveInt("hidden_size");
  const numHeads = fields.positiveInt("num_attention_heads");
  const numKvHeads = fields.positiveInt("num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw fields.error(
      "num_key_value_heads",
      `(${numKvHeads}) must divide "num_attention_heads" (${numHeads})`,
      { expected: `a divisor of ${numHeads}`, actual: numKvHeads },
    );
  }
  const dim = headDim(fields, arch, hiddenSize, numHeads);
  const rope = parseRope(fields, { headDim: dim, numHeads, numKvHeads });
  const modelType = fields.string("model_type");
  if (modelType.startsWith(REMOTE_CODE_MODEL_TYPE_PREFIX) && !rope.harpe) {
    throw fields.error("model_type", `is "${modelType}" but the rope type is "${rope.type}", not "harpe"`, {
      expected: "harpe",
      actual: rope.type,
      hint: "a harpe_* model_type needs HARPE rope parameters",
    });
  }
  const config: ModelConfig = {
    architecture: arch,
    architectureClass: archClass,
    vocabSize: fields.positiveInt("vocab_size"),
    hiddenSize,
    intermediateSize: fields.positiveInt("intermediate_size"),
    numLayers: fields.positiveInt("num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim: dim,
    rmsNormEps: fields.positiveNumber("rms_norm_eps", DEFAULT_RMS_NORM_EPS),
    maxPositionEmbeddings: fields.positiveInt("max_position_embeddings"),
    tieWordEmbeddings: fields.boolean("tie_word_embeddings", false),
    ...biases(fields, arch),
    qkNorm: arch === "qwen3",
    rope,
    dtype: dtype(fields),
    raw,
  };
  const window = slidingWindow(fields, arch);
  if (window !== undefined) config.slidingWindow = window;
  return config;
}

/**
 * Reads and parses `config.json`; `path` is the file itself or a checkpoint directory holding it.
 * Throws PathError (no such file), FileFormatError (not JSON) or the errors of {@link parseConfig}.
 *
 * @example
 * ```ts
 * const config = await readConfig("./Llama-2-7b-hf");
 * ```
 */
export async function readConfig(path: string): Promise<ModelConfig> {
  let file = path;
  try {
    if ((await Deno.stat(path)).isDirectory) file = `${path.replace(/\/+$/, "")}/config.json`;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new PathError(`"${path}" does not exist`, { file: path, hint: "give a checkpoint directory" });
    }
    throw error;
  }
  const raw = await readJsonObject(file, {
    missing: "a Hugging Face checkpoint directory holds config.json",
  });
  return parseConfig(raw, { file });
}
