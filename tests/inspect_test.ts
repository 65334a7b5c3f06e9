// `harpe inspect` on both golden checkpoints (text and --json), on a config.json alone, on a HARPE
// config (per-head bases), on a sliding-window config (warning), and on bad input (exit 2, one line).

import { assertEquals, assertStringIncludes } from "./assert.ts";
import { runHarpe, withTempDir } from "./harness.ts";
import { copyDir, editJson, GOLDEN_GQA, GOLDEN_MHA, smallConfig } from "./checkpoint_fixtures.ts";

async function inspectJson(path: string) {
  const result = await runHarpe(["inspect", path, "--json"]);
  assertEquals(result.code, 0, result.stderr);
  return JSON.parse(result.stdout);
}

Deno.test("inspect --json on llama_mha: counts computed by hand from its config", async () => {
  const s = await inspectJson(GOLDEN_MHA);
  // V*C twice (untied) + 2 layers x (2C norms + 4 C*C attention + 3 C*F MLP) + C final norm
  const [V, C, F] = [384, 64, 176];
  assertEquals(s.parameters, 2 * V * C + 2 * (2 * C + 4 * C * C + 3 * C * F) + C);
  assertEquals(s.architecture_class, "LlamaForCausalLM");
  assertEquals([s.layers, s.heads, s.kv_heads, s.head_dim], [2, 4, 4, 16]);
  assertEquals(s.rope, { type: "default", theta: 10000, rotary_dim: 16, head_dim: 16 });
  assertEquals(s.max_position_embeddings, 128);
  assertEquals(s.tied_embeddings, false);
  assertEquals(s.dtypes, [{ dtype: "F32", tensors: 21, bytes: 149824 * 4 }]);
  assertEquals(s.shards, [{ file: "model.safetensors", tensors: 21, bytes: 601440 }]);
  assertEquals(s.warnings, []);
});

Deno.test("inspect --json on the sharded GQA bf16 checkpoint", async () => {
  const s = await inspectJson(GOLDEN_GQA);
  assertEquals(s.parameters, 459648); // the index's total_parameters, written by transformers
  assertEquals([s.layers, s.heads, s.kv_heads, s.head_dim], [3, 8, 2, 16]);
  assertEquals(s.tied_embeddings, true);
  assertEquals(s.config_dtype, "bfloat16");
  assertEquals(s.dtypes, [{ dtype: "BF16", tensors: 29, bytes: 919296 }]);
  assertEquals(
    s.shards.map((x: { file: string; bytes: number }) => [x.file, x.bytes]),
    [
      ["model-00001-of-00004.safetensors", 295672],
      ["model-00002-of-00004.safetensors", 280016],
      ["model-00003-of-00004.safetensors", 280016],
      ["model-00004-of-00004.safetensors", 66728],
    ],
  );
});

Deno.test("inspect text report on llama_mha: one file, MHA, untied", async () => {
  const result = await runHarpe(["inspect", GOLDEN_MHA]);
  assertEquals(result.code, 0, result.stderr);
  for (
    const part of [
      "149,824",
      "4 query, 4 key/value (MHA), head dim 16",
      "vocabulary      384\n",
      "F32 (21 tensors",
      "model.safetensors       21  601440",
    ]
  ) {
    assertStringIncludes(result.stdout, part);
  }
});

Deno.test("inspect text report names architecture, heads, rope, positions and shards", async () => {
  const result = await runHarpe(["inspect", GOLDEN_GQA]);
  assertEquals(result.code, 0, result.stderr);
  for (
    const part of [
      "LlamaForCausalLM (llama)",
      "459,648",
      "8 query, 2 key/value (GQA, 4 per group), head dim 16",
      "default, base 10000, rotary dim 16 of 16",
      "max positions   128",
      "tied embeddings",
      "BF16 (29 tensors",
      "model-00004-of-00004.safetensors",
      "total",
    ]
  ) {
    assertStringIncludes(result.stdout, part);
  }
});

Deno.test("inspect on a HARPE checkpoint shows the per-head bases and granularity", async () => {
  await withTempDir(async (dir) => {
    await copyDir(GOLDEN_GQA, dir);
    await editJson(`${dir}/config.json`, (c) => {
      c.rope_parameters = {
        rope_type: "harpe",
        rope_theta: 10000,
        head_bases: [20000, 500000],
        granularity: "kv",
      };
      c.max_position_embeddings = 1024;
    });
    const s = await inspectJson(dir);
    assertEquals(s.rope.type, "harpe");
    assertEquals(s.rope.harpe, {
      granularity: "kv",
      head_bases: [20000, 500000],
      query_head_bases: [20000, 20000, 20000, 20000, 500000, 500000, 500000, 500000],
    });
    assertEquals(s.max_position_embeddings, 1024);
    const text = await runHarpe(["inspect", dir]);
    assertStringIncludes(text.stdout, "harpe, base 10000");
    assertStringIncludes(text.stdout, "granularity kv, 2 bases");
    assertStringIncludes(text.stdout, "head bases      20000 500000");
  });
});

Deno.test("inspect on a config.json alone; sliding window warns", async () => {
  await withTempDir(async (dir) => {
    const config = smallConfig({
      model_type: "mistral",
      architectures: ["MistralForCausalLM"],
      sliding_window: 4096,
    });
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
    const s = await inspectJson(`${dir}/config.json`);
    assertEquals(s.architecture, "mistral");
    assertEquals(s.sliding_window, 4096);
    assertEquals(s.shards, null);
    assertStringIncludes(s.warnings[0], "4096-token sliding window");
    const text = await runHarpe(["inspect", `${dir}/config.json`]);
    assertStringIncludes(text.stdout, "warning: the checkpoint was trained with a 4096-token sliding window");
  });
});

Deno.test("inspect: bad input exits 2 with one line", async () => {
  await withTempDir(async (dir) => {
    const cases: [string, string][] = [];
    cases.push(["/nonexistent/model", "does not exist"]);
    await copyDir(GOLDEN_MHA, `${dir}/shape`);
    await editJson(`${dir}/shape/config.json`, (c) => c.num_key_value_heads = 3);
    cases.push([`${dir}/shape`, '"num_key_value_heads" (3) must divide "num_attention_heads" (4)']);
    await Deno.mkdir(`${dir}/bad`);
    await Deno.writeTextFile(`${dir}/bad/config.json`, "not json");
    cases.push([`${dir}/bad`, "is not valid JSON"]);
    for (const [path, part] of cases) {
      const result = await runHarpe(["inspect", path]);
      assertEquals(result.code, 2, result.stderr);
      assertEquals(result.stdout, "");
      assertEquals(result.stderr.trimEnd().split("\n").length, 1, result.stderr);
      assertStringIncludes(result.stderr, part);
    }
  });
});
