// config.json parsing: v4 and v5 forms, every supported architecture, HARPE rope, and each refusal.

import { assert, assertEquals, assertRejects, assertStringIncludes, assertThrows } from "./assert.ts";
import { PROJECT_ROOT, withTempDir } from "./harness.ts";
import { parseConfig, readConfig } from "../lib/checkpoint/config.ts";
import { headBases } from "../lib/checkpoint/model_config.ts";
import { parameterTable } from "../lib/checkpoint/tensor_table.ts";
import { ConfigError, FileFormatError, PathError, UnsupportedError } from "../lib/errors.ts";

const GOLDEN = `${PROJECT_ROOT}fixtures/golden`;

/** A small Llama config in the v4 form; tests override fields. */
function llamaV4(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_act: "silu",
    vocab_size: 100,
    hidden_size: 64,
    intermediate_size: 160,
    num_hidden_layers: 2,
    num_attention_heads: 8,
    num_key_value_heads: 2,
    max_position_embeddings: 4096,
    rms_norm_eps: 1e-5,
    rope_theta: 500000.0,
    rope_scaling: null,
    torch_dtype: "bfloat16",
    tie_word_embeddings: false,
    ...overrides,
  };
}

/** The same model in the v5 form. */
function llamaV5(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const raw = llamaV4();
  delete raw.rope_theta;
  delete raw.rope_scaling;
  delete raw.torch_dtype;
  return {
    ...raw,
    rope_parameters: { rope_type: "default", rope_theta: 500000.0 },
    dtype: "bfloat16",
    ...overrides,
  };
}

const HARPE_V5 = { rope_type: "harpe", rope_theta: 10000, head_bases: [1e6, 3e6], granularity: "kv" };
const HARPE_V4 = { rope_type: "harpe", type: "harpe", head_bases: [1e6, 3e6], granularity: "kv" };

Deno.test("golden llama_mha config parses to the values in its config.json", async () => {
  const config = await readConfig(`${GOLDEN}/llama_mha/checkpoint`);
  assertEquals(config.architecture, "llama");
  assertEquals(config.architectureClass, "LlamaForCausalLM");
  assertEquals(
    [config.vocabSize, config.hiddenSize, config.intermediateSize, config.numLayers],
    [384, 64, 176, 2],
  );
  assertEquals([config.numHeads, config.numKvHeads, config.headDim], [4, 4, 16]);
  assertEquals(config.rmsNormEps, 1e-5);
  assertEquals(config.maxPositionEmbeddings, 128);
  assertEquals(config.tieWordEmbeddings, false);
  assertEquals(config.dtype, "float32");
  assertEquals(config.rope, { type: "default", theta: 10000, rotaryDim: 16 });
  assertEquals([config.qkvBias, config.outputBias, config.mlpBias, config.qkNorm], [
    false,
    false,
    false,
    false,
  ]);
});

Deno.test("golden GQA config (given as the config.json path) has tied embeddings and bf16", async () => {
  const config = await readConfig(`${GOLDEN}/llama_gqa_tied_bf16_sharded/checkpoint/config.json`);
  assertEquals([config.numHeads, config.numKvHeads, config.headDim, config.hiddenSize], [8, 2, 16, 128]);
  assertEquals(config.tieWordEmbeddings, true);
  assertEquals(config.dtype, "bfloat16");
  assertEquals(config.rmsNormEps, 1e-6);
});

Deno.test("v4 and v5 forms of the same model give the same config", () => {
  const a = parseConfig(llamaV4());
  const b = parseConfig(llamaV5());
  assertEquals(a.rope, { type: "default", theta: 500000, rotaryDim: 8 });
  assertEquals(b.rope, a.rope);
  assertEquals([a.dtype, b.dtype], ["bfloat16", "bfloat16"]);
  assertEquals([a.headDim, a.numKvHeads], [8, 2]);
});

Deno.test("both forms present and agreeing are accepted", () => {
  const config = parseConfig(llamaV5({ rope_theta: 500000, torch_dtype: "bfloat16" }));
  assertEquals(config.rope.theta, 500000);
});

Deno.test("missing rope fields default to theta 10000; missing dtype to float32", () => {
  const raw = llamaV4();
  delete raw.rope_theta;
  delete raw.torch_dtype;
  const config = parseConfig(raw);
  assertEquals(config.rope, { type: "default", theta: 10000, rotaryDim: 8 });
  assertEquals(config.dtype, "float32");
  assertEquals(parseConfig(llamaV4({ torch_dtype: "auto" })).dtype, "float32");
  assertEquals(parseConfig(llamaV4({ torch_dtype: "torch.float16" })).dtype, "float16");
});

Deno.test("num_key_value_heads defaults to num_attention_heads (MHA)", () => {
  const raw = llamaV4();
  delete raw.num_key_value_heads;
  assertEquals(parseConfig(raw).numKvHeads, 8);
});

Deno.test("HARPE rope in the v5 form, the v4 form, and both", () => {
  for (
    const raw of [
      llamaV5({ rope_parameters: HARPE_V5 }),
      llamaV4({ rope_theta: 10000, rope_scaling: HARPE_V4 }),
      llamaV5({ rope_parameters: HARPE_V5, rope_theta: 10000, rope_scaling: HARPE_V4 }),
    ]
  ) {
    const config = parseConfig(raw);
    assertEquals(config.rope.type, "harpe");
    assertEquals(config.rope.theta, 10000);
    assertEquals(config.rope.harpe, { headBases: [1e6, 3e6], granularity: "kv" });
    // 8 query heads share 2 key heads: heads 0-3 use key head 0's base, 4-7 key head 1's.
    assertEquals(headBases(config).query, [1e6, 1e6, 1e6, 1e6, 3e6, 3e6, 3e6, 3e6]);
  }
});

Deno.test("HARPE at query granularity takes one base per query head", () => {
  const bases = [1, 2, 3, 4, 5, 6, 7, 8].map((i) => i * 1e5);
  const config = parseConfig(
    llamaV5({ rope_parameters: { ...HARPE_V5, head_bases: bases, granularity: "query" } }),
  );
  assertEquals(config.rope.harpe?.granularity, "query");
  assertEquals(headBases(config), { query: bases, key: null });
});

Deno.test("forms that disagree are refused, naming what differs", () => {
  const cases: [Record<string, unknown>, string][] = [
    [llamaV5({ rope_parameters: HARPE_V5, rope_theta: 10000 }), "the rope type"],
    [llamaV5({ rope_theta: 10000 }), "rope_theta: 500000 vs 10000"],
    [
      llamaV5({ rope_parameters: HARPE_V5, rope_scaling: { ...HARPE_V4, head_bases: [1e6, 4e6] } }),
      "head_bases",
    ],
    [
      llamaV5({
        rope_parameters: {
          ...HARPE_V5,
          head_bases: [1e6, 3e6, 1e6, 3e6, 1e6, 3e6, 1e6, 3e6],
          granularity: "query",
        },
        rope_scaling: HARPE_V4,
      }),
      "granularity",
    ],
    [llamaV4({ rope_scaling: { type: "harpe", rope_type: "default" } }), '"rope_scaling.type"'],
  ];
  for (const [raw, part] of cases) {
    const error = assertThrows(() => parseConfig(raw), ConfigError);
    assertStringIncludes(error.message, part);
  }
  const dtypeError = assertThrows(() => parseConfig(llamaV5({ torch_dtype: "float16" })), ConfigError);
  assertStringIncludes(
    dtypeError.message,
    '"dtype" is "bfloat16" but the v4 field "torch_dtype" is "float16"',
  );
});

Deno.test("K not dividing H gives the exact message", () => {
  const error = assertThrows(() => parseConfig(llamaV4({ num_key_value_heads: 3 })), ConfigError);
  assertEquals(error.message, 'config.json: "num_key_value_heads" (3) must divide "num_attention_heads" (8)');
  assertEquals(error.detail.field, "num_key_value_heads");
});

Deno.test("missing and mistyped fields are named", () => {
  const missing = llamaV4();
  delete missing.hidden_size;
  assertStringIncludes(
    assertThrows(() => parseConfig(missing), ConfigError).message,
    '"hidden_size" is missing',
  );
  const cases: [Record<string, unknown>, string][] = [
    [{ hidden_size: "64" }, '"hidden_size" must be an integer'],
    [{ vocab_size: 0 }, '"vocab_size" must be an integer'],
    [{ num_hidden_layers: 2.5 }, '"num_hidden_layers" must be an integer'],
    [{ rms_norm_eps: -1 }, '"rms_norm_eps" must be a number greater than 0'],
    [{ tie_word_embeddings: "yes" }, '"tie_word_embeddings" must be true or false'],
    [{ rope_theta: "big" }, '"rope_theta" must be a number'],
    [{ rope_scaling: [1] }, '"rope_scaling" must be a JSON object'],
    [{ hidden_size: 60 }, '"hidden_size" (60) must be divisible by "num_attention_heads" (8)'],
    [{ architectures: "LlamaForCausalLM" }, '"architectures" must be a list'],
    [
      { rope_scaling: { ...HARPE_V4, head_bases: [1e6] } },
      '"rope_scaling.head_bases" has 1 entries, expected 2',
    ],
    [
      { rope_scaling: { ...HARPE_V4, granularity: "layer" } },
      '"rope_scaling.granularity" must be "kv" or "query"',
    ],
    [
      { rope_scaling: { ...HARPE_V4, head_bases: [1e6, -5] } },
      '"rope_scaling.head_bases[1]" must be a number',
    ],
    [{ rope_scaling: { ...HARPE_V4, head_bases: undefined } }, '"rope_scaling.head_bases" must be a list'],
  ];
  for (const [overrides, part] of cases) {
    assertStringIncludes(assertThrows(() => parseConfig(llamaV4(overrides)), ConfigError).message, part);
  }
  assertThrows(() => parseConfig([] as unknown as Record<string, unknown>), ConfigError);
});

Deno.test("unsupported settings are refused with the supported list", () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ model_type: "gpt2" }, "supported: llama, mistral, qwen2, qwen3"],
    [{ hidden_act: "gelu" }, "supported: silu, swish"],
    [{ torch_dtype: "float64" }, "supported: float32, bfloat16, float16"],
    [{ architectures: ["LlamaForSequenceClassification"] }, "harpe supports LlamaForCausalLM"],
    [{ model_type: "mistral", architectures: ["MistralForCausalLM"], attention_bias: true }, "no biases"],
    [{ model_type: "qwen2", architectures: ["Qwen2ForCausalLM"], mlp_bias: true }, "no biases"],
  ];
  for (const [overrides, part] of cases) {
    assertStringIncludes(assertThrows(() => parseConfig(llamaV4(overrides)), UnsupportedError).message, part);
  }
  for (
    const raw of [
      llamaV4({ rope_scaling: { rope_type: "yarn", factor: 4 } }),
      llamaV4({ rope_scaling: { type: "dynamic", factor: 2 } }),
      llamaV5({ rope_parameters: { rope_type: "longrope", rope_theta: 500000, factor: 8 } }),
    ]
  ) {
    const error = assertThrows(() => parseConfig(raw), ConfigError);
    assertStringIncludes(error.message, "supported rope types: default, linear, llama3, harpe");
  }
});

Deno.test("Qwen2 has q/k/v biases and no output bias", () => {
  const config = parseConfig(llamaV4({ model_type: "qwen2", architectures: ["Qwen2ForCausalLM"] }));
  assertEquals([config.qkvBias, config.outputBias, config.qkNorm], [true, false, false]);
  const names = parameterTable(config).map((p) => p.name);
  assert(names.includes("model.layers.0.self_attn.k_proj.bias"));
  assert(!names.includes("model.layers.0.self_attn.o_proj.bias"));
});

Deno.test("Qwen3 has q/k norm, an explicit head_dim, and biases from attention_bias", () => {
  const qwen3 = { model_type: "qwen3", architectures: ["Qwen3ForCausalLM"], head_dim: 32 };
  const config = parseConfig(llamaV4(qwen3));
  assertEquals([config.headDim, config.qkNorm, config.qkvBias, config.outputBias], [32, true, false, false]);
  assertEquals(config.rope.rotaryDim, 32);
  const q = parameterTable(config).find((p) => p.name === "model.layers.0.self_attn.q_proj.weight");
  assertEquals(q?.shape, [8 * 32, 64]);
  const biased = parseConfig(llamaV4({ ...qwen3, attention_bias: true }));
  assertEquals([biased.qkvBias, biased.outputBias], [true, true]);
  const raw = llamaV4(qwen3);
  delete raw.head_dim;
  assertStringIncludes(assertThrows(() => parseConfig(raw), ConfigError).message, '"head_dim" is missing');
});

Deno.test("Llama attention_bias and mlp_bias add biases", () => {
  const config = parseConfig(llamaV4({ attention_bias: true, mlp_bias: true }));
  assertEquals([config.qkvBias, config.outputBias, config.mlpBias], [true, true, true]);
});

Deno.test("Mistral sliding_window is recorded; null or Qwen without use_sliding_window is not", () => {
  const mistral = { model_type: "mistral", architectures: ["MistralForCausalLM"] };
  assertEquals(parseConfig(llamaV4({ ...mistral, sliding_window: 4096 })).slidingWindow, 4096);
  assertEquals(parseConfig(llamaV4({ ...mistral, sliding_window: null })).slidingWindow, undefined);
  const qwen2 = { model_type: "qwen2", architectures: ["Qwen2ForCausalLM"], sliding_window: 4096 };
  assertEquals(parseConfig(llamaV4({ ...qwen2, use_sliding_window: false })).slidingWindow, undefined);
  assertEquals(parseConfig(llamaV4({ ...qwen2, use_sliding_window: true })).slidingWindow, 4096);
});

Deno.test("partial rotary factor, top level or inside rope_parameters", () => {
  assertEquals(parseConfig(llamaV4({ head_dim: 16, partial_rotary_factor: 0.5 })).rope.rotaryDim, 8);
  const inner = llamaV5({
    head_dim: 16,
    rope_parameters: { rope_type: "default", rope_theta: 10000, partial_rotary_factor: 0.25 },
  });
  assertEquals(parseConfig(inner).rope.rotaryDim, 4);
  for (const factor of [0.1, 1.5, 0.3125]) {
    const error = assertThrows(
      () => parseConfig(llamaV4({ head_dim: 16, partial_rotary_factor: factor })),
      ConfigError,
    );
    assertStringIncludes(error.message, "even number of rotary dims");
  }
});

Deno.test("readConfig: missing path, missing config.json, malformed JSON", async () => {
  await assertRejects(() => readConfig("/nonexistent/harpe/model"), PathError, "does not exist");
  await withTempDir(async (dir) => {
    await assertRejects(() => readConfig(dir), PathError, "config.json");
    await Deno.writeTextFile(`${dir}/config.json`, '{"model_type": "llama",');
    await assertRejects(() => readConfig(dir), FileFormatError, "is not valid JSON");
    await Deno.writeTextFile(`${dir}/config.json`, "[1, 2]");
    await assertRejects(() => readConfig(dir), FileFormatError, "must hold a JSON object");
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(llamaV4({ num_key_value_heads: 3 })));
    const error = await assertRejects(() => readConfig(dir), ConfigError);
    assertStringIncludes(error.message, `${dir}/config.json: "num_key_value_heads" (3)`);
  });
});

Deno.test("remote-code HARPE configs (model_type harpe_llama) parse; without HARPE rope they are refused", () => {
  const remote = { model_type: "harpe_llama", rope_theta: 10000, rope_scaling: HARPE_V4 };
  const config = parseConfig(llamaV4(remote));
  assertEquals([config.architecture, config.architectureClass], ["llama", "LlamaForCausalLM"]);
  assertEquals(
    parseConfig(llamaV4({ ...remote, architectures: ["HarpeForCausalLM"] })).architecture,
    "llama",
  );
  const error = assertThrows(() => parseConfig(llamaV4({ model_type: "harpe_llama" })), ConfigError);
  assertStringIncludes(error.message, '"model_type" is "harpe_llama" but the rope type is "default"');
  assertStringIncludes(
    assertThrows(() => parseConfig(llamaV4({ model_type: "harpe_gpt2" })), UnsupportedError).message,
    '"model_type" is "harpe_gpt2"',
  );
});
