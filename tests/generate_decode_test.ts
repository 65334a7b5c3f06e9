// The KV-cached decoder (lib/model/decode.ts) against the full forward of lib/model: logits after a
// prefill and after each cached step equal the logits of one forward over the whole sequence, for
// MHA, GQA with tied bf16 weights, HARPE bases at `kv` and `query` granularity, and q/k norm.

import { assert, assertEquals } from "./assert.ts";
import { CpuEngine } from "../lib/engine/cpu/mod.ts";
import { loadModel } from "../lib/model/load.ts";
import { Model } from "../lib/model/model.ts";
import { DecodeSession, tokenLosses } from "../lib/model/decode.ts";
import { parseConfig } from "../lib/checkpoint/config.ts";
import { Rng } from "../lib/data/rng.ts";
import { IGNORE_INDEX } from "../lib/engine/engine.ts";

const GOLDEN = new URL("../fixtures/golden/", import.meta.url).pathname;

function maxRelError(a: Float32Array, b: Float32Array): number {
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

async function checkCachedMatchesFull(model: Model, tokens: number[], promptLength: number): Promise<void> {
  const V = model.config.vocabSize;
  const full = await model.forward(Int32Array.from(tokens));
  const session = DecodeSession.create(model, { maxTokens: tokens.length });
  try {
    const rowsToCheck: [number, Float32Array][] = [];
    rowsToCheck.push([
      promptLength - 1,
      await session.prefill(Int32Array.from(tokens.slice(0, promptLength))),
    ]);
    for (let i = promptLength; i < tokens.length; i++) rowsToCheck.push([i, await session.step(tokens[i])]);
    assertEquals(session.length, tokens.length);
    for (const [row, logits] of rowsToCheck) {
      const error = maxRelError(logits, full.subarray(row * V, (row + 1) * V));
      assert(error < 1e-5, `row ${row}: relative error ${error}`);
    }
  } finally {
    session.dispose();
  }
}

function randomTokens(rng: Rng, n: number, vocab: number): number[] {
  return Array.from({ length: n }, () => rng.nextBelow(vocab));
}

function randomModel(raw: Record<string, unknown>, seed: number): Model {
  const config = parseConfig(raw);
  const model = Model.create(new CpuEngine(), config);
  const rng = new Rng(seed);
  for (const slot of model.layout.slots) {
    const norm = slot.role.endsWith("norm");
    model.setParameter(
      slot.name,
      Float32Array.from(
        { length: slot.size },
        () => norm ? 1 + 0.1 * rng.nextNormal() : 0.3 * rng.nextNormal(),
      ),
    );
  }
  return model;
}

const SMALL = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  vocab_size: 61,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 8,
  rms_norm_eps: 1e-5,
  max_position_embeddings: 64,
  rope_theta: 10000,
  hidden_act: "silu",
  tie_word_embeddings: false,
};

Deno.test("DecodeSession equals the full forward: golden MHA and GQA tied bf16", async () => {
  for (const name of ["llama_mha", "llama_gqa_tied_bf16_sharded"]) {
    const model = await loadModel(new CpuEngine(), `${GOLDEN}${name}/checkpoint`);
    await checkCachedMatchesFull(model, randomTokens(new Rng(1), 30, model.config.vocabSize), 17);
    await checkCachedMatchesFull(model, randomTokens(new Rng(2), 6, model.config.vocabSize), 1);
    model.dispose();
  }
});

Deno.test("DecodeSession equals the full forward: HARPE kv and query granularity, q/k norm", async () => {
  const harpe = (granularity: string, bases: number[]) => ({
    ...SMALL,
    rope_scaling: { rope_type: "harpe", type: "harpe", head_bases: bases, granularity },
  });
  const cases = [
    harpe("kv", [10, 1e6]),
    harpe("query", [10, 300, 1e4, 1e6]),
    { ...SMALL, architectures: ["Qwen3ForCausalLM"], model_type: "qwen3", attention_bias: false },
    { ...SMALL, architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", num_key_value_heads: 1 },
  ];
  for (const [i, raw] of cases.entries()) {
    const model = randomModel(raw, 10 + i);
    await checkCachedMatchesFull(model, randomTokens(new Rng(i), 24, SMALL.vocab_size), 9);
    model.dispose();
  }
});

Deno.test("tokenLosses equals -log softmax of the full forward's logits", async () => {
  const model = await loadModel(new CpuEngine(), `${GOLDEN}llama_mha/checkpoint`);
  const V = model.config.vocabSize;
  const tokens = randomTokens(new Rng(5), 20, V);
  const targets = Int32Array.from(tokens.slice(1).concat([IGNORE_INDEX]));
  targets[3] = IGNORE_INDEX;
  const losses = await tokenLosses(model, Int32Array.from(tokens), targets);
  const logits = await model.forward(Int32Array.from(tokens));
  for (let i = 0; i < tokens.length; i++) {
    if (targets[i] === IGNORE_INDEX) {
      assertEquals(losses[i], 0);
      continue;
    }
    const row = logits.subarray(i * V, (i + 1) * V);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, z) => s + Math.exp(z - max), 0));
    const expected = lse - row[targets[i]];
    assert(
      Math.abs(losses[i] - expected) < 1e-4 * Math.max(1, expected),
      `token ${i}: ${losses[i]} vs ${expected}`,
    );
  }
  model.dispose();
});

Deno.test("DecodeSession with a bf16 cache stays within bf16 rounding of the full forward", async () => {
  // The tiny demo model (normal attention; the golden models' deliberately sharp attention magnifies
  // bf16 rounding of keys and queries to several per cent).
  const model = await loadModel(new CpuEngine(), new URL("../fixtures/tiny", import.meta.url).pathname);
  const V = model.config.vocabSize;
  const tokens = randomTokens(new Rng(8), 20, V);
  const full = await model.forward(Int32Array.from(tokens));
  const session = DecodeSession.create(model, { maxTokens: 20, cacheDtype: "bf16" });
  const first = await session.prefill(Int32Array.from(tokens.slice(0, 10)));
  let worst = maxRelError(first, full.subarray(9 * V, 10 * V));
  for (let i = 10; i < 20; i++) {
    worst = Math.max(worst, maxRelError(await session.step(tokens[i]), full.subarray(i * V, (i + 1) * V)));
  }
  session.dispose();
  model.dispose();
  assert(worst < 0.02 && worst > 0, `bf16 cache: relative error ${worst}`);
});
