// Greedy generation: the KV-cached loop produces exactly the tokens of a no-cache loop (a full
// forward over the whole sequence for every new token), on the CPU; and `harpe generate` end to end.

import { assert, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { runHarpe } from "./harness.ts";
import { CpuEngine } from "../lib/engine/cpu/mod.ts";
import { loadModel } from "../lib/model/load.ts";
import { argmax, generateGreedy } from "../lib/eval/generate.ts";
import { DecodeSession } from "../lib/model/decode.ts";
import { ShapeError } from "../lib/errors.ts";
import { loadCodec } from "../lib/eval/codec.ts";

const TINY = new URL("../fixtures/tiny", import.meta.url).pathname;
const GOLDEN_MHA = new URL("../fixtures/golden/llama_mha/checkpoint", import.meta.url).pathname;

Deno.test("argmax takes the first maximum", () => {
  assertEquals(argmax(Float32Array.of(0.1, 3, 3, -1)), 1);
  assertEquals(argmax([5]), 0);
});

Deno.test("greedy generation with a KV cache equals a no-cache loop token for token", async () => {
  for (const dir of [TINY, GOLDEN_MHA]) {
    const model = await loadModel(new CpuEngine(), dir);
    const V = model.config.vocabSize;
    const prompt = [3, 17, 42, 99, 5, 61, 7];
    const steps = 24;
    const naive: number[] = [];
    const sequence = [...prompt];
    for (let i = 0; i < steps; i++) {
      const logits = await model.forward(Int32Array.from(sequence));
      const next = argmax(logits.subarray((sequence.length - 1) * V, sequence.length * V));
      naive.push(next);
      sequence.push(next);
    }
    const cached = await generateGreedy(model, prompt, { maxNewTokens: steps });
    assertEquals(cached.tokens, naive, dir);
    assert(!cached.stoppedAtEos);
    const stopped = await generateGreedy(model, prompt, { maxNewTokens: steps, eosId: naive[3] });
    assertEquals(stopped.tokens, naive.slice(0, naive.indexOf(naive[3])), "stops before EOS");
    assert(stopped.stoppedAtEos);
    assertEquals((await generateGreedy(model, prompt, { maxNewTokens: 0 })).tokens, []);
    model.dispose();
  }
});

Deno.test("a reused session gives the same tokens as fresh ones, and refuses prompts it cannot hold", async () => {
  const model = await loadModel(new CpuEngine(), TINY);
  const session = DecodeSession.create(model, { maxTokens: 20 });
  for (const prompt of [[5, 6, 7, 8], [9, 10], [11, 12, 13, 14, 15, 16]]) {
    const fresh = await generateGreedy(model, prompt, { maxNewTokens: 10 });
    const reused = await generateGreedy(model, prompt, { maxNewTokens: 10, session });
    assertEquals(reused.tokens, fresh.tokens);
  }
  await assertRejects(
    () => generateGreedy(model, new Array(15).fill(3), { maxNewTokens: 10, session }),
    ShapeError,
    "holds 20",
  );
  session.dispose();
  model.dispose();
});

Deno.test("harpe generate: text and --json; bad input exits 2", async () => {
  const codec = await loadCodec(`${TINY}/tokenizer.json`);
  const json = await runHarpe([
    "generate",
    TINY,
    "--prompt",
    "The pass key is",
    "--max-new-tokens",
    "5",
    "--json",
  ]);
  assertEquals(json.code, 0, json.stderr);
  const result = JSON.parse(json.stdout);
  assertEquals(result.promptTokens, codec.encode("The pass key is").length);
  assertEquals(result.tokens.length, 5);
  assertEquals(result.text, codec.decode(result.tokens));
  const text = await runHarpe(["generate", TINY, "--prompt", "The pass key is", "--max-new-tokens", "5"]);
  assertEquals(text.code, 0, text.stderr);
  assertEquals(text.stdout, result.text + "\n");
  const bad = await runHarpe(["generate", TINY, "--prompt", "x", "--max-new-tokens", "lots"]);
  assertEquals(bad.code, 2);
  assertStringIncludes(bad.stderr, "--max-new-tokens");
  const noTokenizer = await runHarpe(["generate", GOLDEN_MHA, "--prompt", "x"]);
  assertEquals(noTokenizer.code, 2);
  assertEquals(noTokenizer.stderr.trim().split("\n").length, 1, "one line");
  const bytes = await runHarpe(["generate", GOLDEN_MHA, "--prompt", "abc", "--tokenizer", "bytes", "--json"]);
  assertEquals(bytes.code, 0, bytes.stderr);
});
