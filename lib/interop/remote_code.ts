// Hugging Face remote code for HARPE checkpoints: fills the modeling_harpe.py template for a checkpoint's
// architecture and adds `auto_map` + a HARPE `model_type` to its config.json, so that
// AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True) runs it with its per-head bases.

import { ConfigError } from "../errors.ts";
import { readConfig } from "../checkpoint/config.ts";
import type { ModelConfig } from "../checkpoint/model_config.ts";
import { writeTextFileAtomically } from "../util/atomic.ts";
import { VERSION } from "../version.ts";

/** The module written beside the weights; `auto_map` names its classes. */
export const REMOTE_CODE_FILE = "modeling_harpe.py";

/** The template the module is filled from (placeholders `{{architecture}}` and `{{version}}`). */
export const TEMPLATE_URL = new URL("./modeling_harpe.py", import.meta.url);

/** `auto_map` of an exported config.json: both classes live in {@link REMOTE_CODE_FILE}. */
export const AUTO_MAP: Readonly<Record<string, string>> = {
  AutoConfig: "modeling_harpe.HarpeConfig",
  AutoModelForCausalLM: "modeling_harpe.HarpeForCausalLM",
};

/** What a HARPE checkpoint directory needs for transformers' remote code. */
export interface RemoteCode {
  /** The checkpoint's config.json object with `model_type` = "harpe_<architecture>" and `auto_map`. */
  config: Record<string, unknown>;
  /** Files to write beside config.json (name relative to the checkpoint directory). */
  files: { name: string; text: string }[];
}

/** The model_type of an exported HARPE checkpoint: its own name, so plain transformers refuses it. */
export function harpeModelType(config: ModelConfig): string {
  return `harpe_${config.architecture}`;
}

/**
 * Builds the remote-code config and module for a HARPE checkpoint. Every other config field is kept
 * (the HARPE `rope_parameters` and their v4 mirror included).
 *
 * @example
 * ```ts
 * const { config, files } = await remoteCode(await readConfig("./llama2-harpe"));
 * config.auto_map; // { AutoConfig: "modeling_harpe.HarpeConfig", AutoModelForCausalLM: ... }
 * ```
 */
export async function remoteCode(config: ModelConfig): Promise<RemoteCode> {
  if (!config.rope.harpe) {
    throw new ConfigError(
      `Cannot add HARPE remote code: the checkpoint's rope type is "${config.rope.type}", not "harpe"`,
      {
        field: "rope_parameters.rope_type",
        expected: "harpe",
        actual: config.rope.type,
        hint: "run harpe convert first",
      },
    );
  }
  const template = await Deno.readTextFile(TEMPLATE_URL);
  const text = fillTemplate(template, { architecture: config.architecture, version: VERSION });
  const raw = { ...config.raw, model_type: harpeModelType(config), auto_map: { ...AUTO_MAP } };
  return { config: raw, files: [{ name: REMOTE_CODE_FILE, text }] };
}

/**
 * Adds the remote code to a written HARPE checkpoint directory, from the config.json found there: the
 * module first, then config.json, each atomically, so an interruption leaves either the plain HARPE
 * checkpoint or the complete export.
 *
 * @example
 * ```ts
 * await addRemoteCode("./llama2-harpe-128k");
 * ```
 */
export async function addRemoteCode(dir: string): Promise<RemoteCode> {
  const code = await remoteCode(await readConfig(dir));
  for (const file of code.files) await writeTextFileAtomically(`${dir}/${file.name}`, file.text);
  await writeTextFileAtomically(`${dir}/config.json`, JSON.stringify(code.config, null, 2) + "\n");
  return code;
}

/** Replaces every `{{name}}` in `template`; a placeholder without a value is a programming error. */
function fillTemplate(template: string, values: Record<string, string>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    if (!(name in values)) throw new Error(`modeling_harpe.py template: no value for {{${name}}}`);
    return values[name];
  });
}
