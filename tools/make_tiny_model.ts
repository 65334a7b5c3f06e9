// Writes the demo's tiny Llama checkpoint, fixtures/tiny/{config.json, model.safetensors}: a seeded
// random initialization (normal, std 0.02; norm weights 1), f32, in Hugging Face layout, sized to the
// tokenizer fixture's vocabulary.
//
//   deno run --allow-read --allow-write tools/make_tiny_model.ts [--out fixtures/tiny] [--seed 0]

import { Command } from "commander";
import { parseConfig } from "../lib/checkpoint/config.ts";
import { parameterTable } from "../lib/checkpoint/tensor_table.ts";
import { Rng } from "../lib/data/rng.ts";
import { writeSafetensors } from "../lib/safetensors/mod.ts";

const INIT_STD = 0.02;

/** The tiny model's config.json (transformers v4 form): C 64, 2 layers, 4 heads sharing 2 key heads. */
export function tinyConfig(vocabSize: number): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: vocabSize,
    hidden_size: 64,
    intermediate_size: 176,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 16,
    hidden_act: "silu",
    max_position_embeddings: 64,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    rope_scaling: null,
    attention_bias: false,
    attention_dropout: 0.0,
    mlp_bias: false,
    tie_word_embeddings: false,
    initializer_range: INIT_STD,
    bos_token_id: 0,
    eos_token_id: 1,
    torch_dtype: "float32",
    use_cache: true,
  };
}

if (import.meta.main) {
  const options = new Command("make_tiny_model")
    .option("--out <dir>", "output folder (must hold tokenizer.json)", "fixtures/tiny")
    .option("--seed <n>", "initialization seed", "0")
    .parse(Deno.args, { from: "user" })
    .opts();
  const tokenizer = JSON.parse(Deno.readTextFileSync(`${options.out}/tokenizer.json`));
  const ids = Object.values(tokenizer.model.vocab) as number[];
  const vocabSize = Math.max(...ids, ...tokenizer.added_tokens.map((t: { id: number }) => t.id)) + 1;
  const raw = tinyConfig(vocabSize);
  const config = parseConfig(raw);
  const rng = new Rng(Number(options.seed));
  const tensors = parameterTable(config).map((spec) => {
    const size = spec.shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    const isNorm = spec.role.endsWith("norm");
    for (let i = 0; i < size; i++) values[i] = isNorm ? 1 : INIT_STD * rng.nextNormal();
    return { name: spec.name, dtype: "F32" as const, shape: spec.shape, data: new Uint8Array(values.buffer) };
  });
  await writeSafetensors(`${options.out}/model.safetensors`, tensors, { metadata: { format: "pt" } });
  Deno.writeTextFileSync(`${options.out}/config.json`, JSON.stringify(raw, null, 2) + "\n");
  const count = tensors.reduce((n, t) => n + t.data.length / 4, 0);
  console.log(`${tensors.length} tensors, ${count} parameters -> ${options.out}`);
}
