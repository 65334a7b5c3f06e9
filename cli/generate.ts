// `harpe generate CHECKPOINT --prompt TEXT`: greedy continuation of a prompt with a KV cache.

import { Command } from "commander";
import { ConfigError } from "../lib/errors.ts";
import { openEngine } from "../lib/engine/open.ts";
import { loadModel } from "../lib/model/load.ts";
import { checkCodecFits, loadCodec } from "../lib/eval/codec.ts";
import { DEFAULT_MAX_NEW_TOKENS, generateGreedy } from "../lib/eval/generate.ts";
import { printJson, runAction } from "./run_action.ts";
import { cudaLibDirOption, deviceOption } from "./engine_options.ts";

interface GenerateFlags {
  prompt: string;
  maxNewTokens: string;
  tokenizer?: string;
  kvCache: string;
  device: string;
  cudaLibDir?: string;
  json?: boolean;
}

function parseCount(text: string, flag: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value)) {
    throw new ConfigError(`${flag} must be a non-negative integer, got "${text}"`, {
      field: flag,
      actual: text,
    });
  }
  return value;
}

/** Checks a `--kv-cache` value. */
export function parseCacheDtype(text: string): "f32" | "bf16" {
  if (text !== "f32" && text !== "bf16") {
    throw new ConfigError(`--kv-cache must be f32 or bf16, got "${text}"`, {
      field: "kv-cache",
      actual: text,
    });
  }
  return text;
}

/** The `generate` command. */
export function generateCommand(): Command {
  return new Command("generate")
    .description("Continue a prompt greedily (KV-cached decoding)")
    .argument("<checkpoint>", "checkpoint folder (config.json + safetensors)")
    .requiredOption("--prompt <text>", "the prompt")
    .option("--max-new-tokens <n>", "tokens to generate at most", String(DEFAULT_MAX_NEW_TOKENS))
    .option(
      "--tokenizer <path>",
      'tokenizer.json (default: the checkpoint\'s), or "bytes" for byte-level ids',
    )
    .option("--kv-cache <dtype>", "KV cache storage: f32, or bf16 for half the memory", "f32")
    .addOption(deviceOption())
    .addOption(cudaLibDirOption())
    .option("--json", "print the result as JSON")
    .action(runAction("generate", async (checkpoint: string, flags: GenerateFlags) => {
      const maxNewTokens = parseCount(flags.maxNewTokens, "--max-new-tokens");
      const cacheDtype = parseCacheDtype(flags.kvCache);
      const codec = await loadCodec(flags.tokenizer ?? `${checkpoint}/tokenizer.json`);
      const prompt = codec.encode(flags.prompt);
      const engine = await openEngine(flags.device, { cudaLibDir: flags.cudaLibDir });
      try {
        const model = await loadModel(engine, checkpoint);
        checkCodecFits(codec, model.config.vocabSize, flags.prompt);
        const started = performance.now();
        const result = await generateGreedy(model, prompt, { maxNewTokens, eosId: codec.eosId, cacheDtype });
        const seconds = (performance.now() - started) / 1000;
        model.dispose();
        const text = codec.decode(result.tokens);
        if (flags.json) {
          printJson({
            checkpoint,
            device: engine.name,
            promptTokens: prompt.length,
            tokens: result.tokens,
            text,
            stoppedAtEos: result.stoppedAtEos,
            seconds,
          });
        } else {
          console.log(text);
        }
      } finally {
        engine.dispose();
      }
    }));
}
