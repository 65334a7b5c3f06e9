// exportCheckpoint: f32 -> bf16 -> f32 equals bf16 rounding, re-sharding into N shards and back, config
// dtype updates in both forms, copied files, verify, sizes; and `harpe export` on bad input (exit 2, one
// line, no output).

import { assert, assertEquals, assertRejects, assertStringIncludes, assertThrows } from "./assert.ts";
import { listDir, runHarpe, withTempDir } from "./harness.ts";
import {
  bf16Reference,
  copyDir,
  editJson,
  GOLDEN_GQA,
  GOLDEN_MHA,
  readJson,
  smallConfig,
  writeSmallCheckpoint,
} from "./checkpoint_fixtures.ts";
import { Checkpoint } from "../lib/checkpoint/checkpoint.ts";
import { configWithDType, exportCheckpoint } from "../lib/checkpoint/export.ts";
import { parseSize } from "../lib/checkpoint/size.ts";
import { ConfigError, PathError, UnsupportedError } from "../lib/errors.ts";
import { DEFAULT_CHUNK_BYTES } from "../lib/safetensors/mod.ts";

async function allF32(dir: string): Promise<Map<string, Float32Array>> {
  const checkpoint = await Checkpoint.open(dir);
  const out = new Map<string, Float32Array>();
  for (const name of checkpoint.tensors.keys()) out.set(name, await checkpoint.readF32(name));
  checkpoint.close();
  return out;
}

Deno.test("f32 -> bf16 -> f32 gives the bf16 rounding of every value", async () => {
  await withTempDir(async (dir) => {
    const bf16 = await exportCheckpoint(GOLDEN_MHA, `${dir}/bf16`, {
      dtype: "BF16",
      verify: true,
      progress: false,
    });
    assertEquals(bf16.dtypes, ["BF16"]);
    assertEquals(bf16.verified, true);
    await exportCheckpoint(`${dir}/bf16`, `${dir}/f32`, { dtype: "F32", progress: false });
    const source = await allF32(GOLDEN_MHA);
    const back = await allF32(`${dir}/f32`);
    let changed = 0;
    for (const [name, values] of source) {
      const expected = Float32Array.from(values, bf16Reference);
      assertEquals(back.get(name), expected, name);
      changed += values.filter((v, i) => v !== expected[i]).length;
    }
    assert(changed > 1000, "the cast rounded something");
    const checkpoint = await Checkpoint.open(`${dir}/bf16`);
    assert([...checkpoint.tensors.values()].every((t) => t.dtype === "BF16"));
    checkpoint.close();
  });
});

Deno.test("f32 -> f16 rounds to the nearest f16 (Math.f16round as reference)", async () => {
  await withTempDir(async (dir) => {
    await exportCheckpoint(GOLDEN_MHA, `${dir}/f16`, { dtype: "F16", verify: true, progress: false });
    const source = await allF32(GOLDEN_MHA);
    const f16 = await allF32(`${dir}/f16`);
    for (const [name, values] of source) {
      assertEquals(f16.get(name), Float32Array.from(values, (v) => Math.f16round(v)), name);
    }
  });
});

Deno.test("re-shard into N shards and back to one file: bytes unchanged, index right", async () => {
  await withTempDir(async (dir) => {
    // The golden GQA checkpoint: 919296 bytes of bf16 in 4 shards; the largest tensor is 81920 bytes.
    const many = await exportCheckpoint(GOLDEN_GQA, `${dir}/many`, { shardSize: 100_000, progress: false });
    assert(many.shards.length >= 10, `${many.shards.length} shards`);
    const index = await readJson(`${dir}/many/model.safetensors.index.json`);
    assertEquals((index.metadata as Record<string, number>).total_size, 919296);
    assertEquals((index.metadata as Record<string, number>).total_parameters, 459648);
    const names = await listDir(`${dir}/many`);
    assertEquals(names.filter((n) => n.endsWith(".safetensors")).length, many.shards.length);
    assert(many.shards.every((s) => s.bytes <= 100_000), "no shard over the limit");

    const one = await exportCheckpoint(`${dir}/many`, `${dir}/one`, { progress: false });
    assertEquals(one.shards.map((s) => s.file), ["model.safetensors"]);
    assertEquals(await listDir(`${dir}/one`), ["config.json", "generation_config.json", "model.safetensors"]);
    const golden = await Checkpoint.open(GOLDEN_GQA);
    const result = await Checkpoint.open(`${dir}/one`);
    for (const name of golden.tensors.keys()) {
      assertEquals(await result.readBytes(name), await golden.readBytes(name), name);
    }
    golden.close();
    result.close();
    assertEquals(await readJson(`${dir}/one/config.json`), await readJson(`${GOLDEN_GQA}/config.json`));
  });
});

Deno.test("the config's dtype is updated in whichever form it has", () => {
  assertEquals(configWithDType({ dtype: "float32", a: 1 }, "BF16"), { dtype: "bfloat16", a: 1 });
  assertEquals(configWithDType({ torch_dtype: "float32" }, "F16"), { torch_dtype: "float16" });
  assertEquals(configWithDType({ dtype: "float32", torch_dtype: "float32" }, "BF16"), {
    dtype: "bfloat16",
    torch_dtype: "bfloat16",
  });
  assertEquals(configWithDType({}, "F32"), { torch_dtype: "float32" });
});

Deno.test("export keeps every config field, updates dtype, copies tokenizer and chat files", async () => {
  await withTempDir(async (dir) => {
    await copyDir(GOLDEN_MHA, `${dir}/src`);
    await Deno.writeTextFile(`${dir}/src/tokenizer.json`, '{"version": "1.0"}');
    await Deno.writeTextFile(`${dir}/src/tokenizer_config.json`, "{}");
    await Deno.writeTextFile(`${dir}/src/chat_template.jinja`, "{{ bos_token }}");
    const summary = await exportCheckpoint(`${dir}/src`, `${dir}/out`, { dtype: "BF16", progress: false });
    assertEquals(summary.copied.sort(), [
      "chat_template.jinja",
      "generation_config.json",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    const config = await readJson(`${dir}/out/config.json`);
    const original = await readJson(`${GOLDEN_MHA}/config.json`);
    assertEquals(config, { ...original, dtype: "bfloat16" });
    assertEquals(await Deno.readTextFile(`${dir}/out/tokenizer.json`), '{"version": "1.0"}');
  });
});

Deno.test("export refuses an existing output without overwrite, and exporting onto the source", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/out`);
    await assertRejects(() => exportCheckpoint(GOLDEN_MHA, `${dir}/out`, { progress: false }), PathError);
    assertEquals(await listDir(`${dir}/out`), []);
    await copyDir(GOLDEN_MHA, `${dir}/src`);
    await assertRejects(
      () => exportCheckpoint(`${dir}/src`, `${dir}/src`, { overwrite: true, progress: false }),
      UnsupportedError,
      "onto itself",
    );
  });
});

Deno.test("parseSize: decimal and binary units", () => {
  assertEquals(parseSize("5GB"), 5_000_000_000);
  assertEquals(parseSize("500MB"), 500_000_000);
  assertEquals(parseSize("2GiB"), 2 * 1024 ** 3);
  assertEquals(parseSize("1.5 kib"), 1536);
  assertEquals(parseSize("4096"), 4096);
  for (const bad of ["", "GB", "-5GB", "5XB", "0", "5 G B", "0.1B"]) {
    assertThrows(() => parseSize(bad, { field: "--shard-size" }), ConfigError, "--shard-size");
  }
});

/** Runs `harpe export` and checks the bad-input contract: exit 2, one line on stderr, no output dir. */
async function expectBadInput(args: string[], dir: string, part: string): Promise<void> {
  const before = await listDir(dir);
  const result = await runHarpe(["export", ...args]);
  assertEquals(result.code, 2, result.stderr);
  assertEquals(result.stdout, "");
  const lines = result.stderr.trimEnd().split("\n");
  assertEquals(lines.length, 1, result.stderr);
  assertStringIncludes(lines[0], "harpe export: ");
  assertStringIncludes(lines[0], part);
  assertEquals(await listDir(dir), before, "no output written");
}

Deno.test("harpe export: bad input exits 2 with one line and writes nothing", async () => {
  await withTempDir(async (dir) => {
    const out = `${dir}/out`;
    await expectBadInput(["/nonexistent/model", "-o", out], dir, "does not exist");

    await copyDir(GOLDEN_MHA, `${dir}/malformed`);
    await Deno.writeTextFile(`${dir}/malformed/config.json`, '{"model_type": ');
    await expectBadInput([`${dir}/malformed`, "-o", out], dir, "is not valid JSON");

    await copyDir(GOLDEN_MHA, `${dir}/shape`);
    await editJson(`${dir}/shape/config.json`, (c) => c.hidden_size = 48);
    await expectBadInput([`${dir}/shape`, "-o", out], dir, "expected [384, 48]");

    await expectBadInput([GOLDEN_MHA, "-o", out, "--dtype", "f8"], dir, '--dtype "f8"');
    await expectBadInput([GOLDEN_MHA, "-o", out, "--shard-size", "lots"], dir, '--shard-size "lots"');

    const usage = await runHarpe(["export", GOLDEN_MHA]);
    assertEquals(usage.code, 2, "a missing -o is a usage error: exit 2");
    assertStringIncludes(usage.stderr, "--output");

    await Deno.mkdir(`${dir}/exists`);
    await expectBadInput([GOLDEN_MHA, "-o", `${dir}/exists`], dir, "already exists");
    assertEquals(await listDir(`${dir}/exists`), []);
  });
});

Deno.test("harpe export: --json summary; --force replaces the output", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/out`);
    const args = ["export", GOLDEN_GQA, "-o", `${dir}/out`, "--dtype", "f32", "--shard-size", "1MB"];
    const result = await runHarpe([...args, "--verify", "--force", "--json"]);
    assertEquals(result.code, 0, result.stderr);
    const summary = JSON.parse(result.stdout);
    assertEquals(summary.tensors, 29);
    assertEquals(summary.dtypes, ["F32"]);
    assertEquals(summary.total_size, 459648 * 4);
    assertEquals(summary.verified, true);
    assertEquals(summary.shards.length, 2);
    assertEquals((await readJson(`${dir}/out/config.json`)).dtype, "float32");
    const text = await runHarpe([...args, "--force"]);
    assertEquals(text.code, 0, text.stderr);
    assertStringIncludes(text.stdout, "29 tensors (F32) in 2 shards");
  });
});

Deno.test("tensors larger than one export chunk stream correctly (bf16 cast, verify, copy)", async () => {
  await withTempDir(async (dir) => {
    // Embedding (tied): 20000 x 32 f32 = 2560000 bytes: two export chunks and a partial one (in bf16:
    // one and a partial one).
    const config = smallConfig({
      vocab_size: 20000,
      hidden_size: 32,
      num_attention_heads: 2,
      num_key_value_heads: 1,
    });
    await writeSmallCheckpoint(`${dir}/src`, config);
    const big = "model.embed_tokens.weight";
    const source = await Checkpoint.open(`${dir}/src`);
    assert(source.info(big).byteLength > 2 * DEFAULT_CHUNK_BYTES);
    const values = await source.readF32(big);
    source.close();
    await exportCheckpoint(`${dir}/src`, `${dir}/bf16`, { dtype: "BF16", verify: true, progress: false });
    await exportCheckpoint(`${dir}/bf16`, `${dir}/copy`, {
      verify: true,
      shardSize: 5_000_000,
      progress: false,
    });
    const copy = await Checkpoint.open(`${dir}/copy`);
    assertEquals(copy.info(big).dtype, "BF16");
    assertEquals(await copy.readF32(big), Float32Array.from(values, bf16Reference));
    copy.close();
  });
});
