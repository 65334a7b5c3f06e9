// Checkpoint.open on the golden checkpoints (single file and sharded) and on every malformed layout:
// missing, unexpected and wrongly shaped tensors, broken indexes, missing weights.

import { assert, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { withTempDir } from "./harness.ts";
import {
  copyDir,
  editJson,
  GOLDEN_GQA,
  GOLDEN_MHA,
  readJson,
  smallConfig,
  writeSmallCheckpoint,
} from "./checkpoint_fixtures.ts";
import { Checkpoint } from "../lib/checkpoint/checkpoint.ts";
import { parameterTable } from "../lib/checkpoint/tensor_table.ts";
import { FileFormatError, PathError, ShapeError, UnsupportedError } from "../lib/errors.ts";

/** The raw bytes of a tensor, found by parsing the safetensors header here (independently of the reader). */
async function rawTensorBytes(path: string, name: string): Promise<{ dtype: string; bytes: Uint8Array }> {
  const file = await Deno.readFile(path);
  const headerLength = Number(new DataView(file.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + headerLength)));
  const [start, end] = header[name].data_offsets;
  return { dtype: header[name].dtype, bytes: file.slice(8 + headerLength + start, 8 + headerLength + end) };
}

Deno.test("golden llama_mha opens as one file with every parameter in table order", async () => {
  const checkpoint = await Checkpoint.open(GOLDEN_MHA);
  try {
    assertEquals(checkpoint.shards, [`${GOLDEN_MHA}/model.safetensors`]);
    const names = [...checkpoint.tensors.keys()];
    // 1 embedding + 2 layers x 9 + final norm + lm head
    assertEquals(names.length, 21);
    assertEquals(names[0], "model.embed_tokens.weight");
    assertEquals(names[1], "model.layers.0.input_layernorm.weight");
    assertEquals(names.at(-1), "lm_head.weight");
    assertEquals(checkpoint.tensors.get("model.layers.1.self_attn.k_proj.weight")?.shape, [64, 64]);
    assertEquals(checkpoint.tensors.get("model.layers.0.mlp.down_proj.weight")?.shape, [64, 176]);
    assert([...checkpoint.tensors.values()].every((t) => t.dtype === "F32"));
    const raw = await rawTensorBytes(`${GOLDEN_MHA}/model.safetensors`, "model.norm.weight");
    const expected = new Float32Array(raw.bytes.buffer);
    assertEquals(await checkpoint.readF32("model.norm.weight"), expected);
  } finally {
    checkpoint.close();
  }
});

Deno.test("golden GQA bf16 checkpoint opens from its 4 shards, each tensor where the index says", async () => {
  const checkpoint = await Checkpoint.open(GOLDEN_GQA);
  try {
    const index = await readJson(`${GOLDEN_GQA}/model.safetensors.index.json`);
    const weightMap = index.weight_map as Record<string, string>;
    assertEquals(checkpoint.shards.length, 4);
    assertEquals(checkpoint.tensors.size, Object.keys(weightMap).length);
    for (const [name, tensor] of checkpoint.tensors) {
      assertEquals(tensor.file, `${GOLDEN_GQA}/${weightMap[name]}`, name);
      assertEquals(tensor.dtype, "BF16");
    }
    assert(!checkpoint.tensors.has("lm_head.weight"), "tied embeddings: no lm_head");
    assertEquals(checkpoint.tensors.get("model.layers.2.self_attn.v_proj.weight")?.shape, [32, 128]);
    // bf16 widened to f32 by hand: the bits go to the top half.
    const name = "model.layers.1.mlp.up_proj.weight";
    const raw = await rawTensorBytes(`${GOLDEN_GQA}/${weightMap[name]}`, name);
    const bits = new Uint16Array(raw.bytes.buffer);
    const widened = new Float32Array(new Uint32Array(Array.from(bits, (b) => b * 65536)).buffer);
    assertEquals(await checkpoint.readF32(name), widened);
    assertEquals(await checkpoint.readBytes(name), raw.bytes);
  } finally {
    checkpoint.close();
  }
});

Deno.test("a config that does not match the weights: ShapeError naming tensor, expected and actual", async () => {
  await withTempDir(async (dir) => {
    await copyDir(GOLDEN_MHA, dir);
    await editJson(`${dir}/config.json`, (c) => c.intermediate_size = 175);
    const error = await assertRejects(() => Checkpoint.open(dir), ShapeError);
    assertStringIncludes(error.message, '"model.layers.0.mlp.gate_proj.weight"');
    assertStringIncludes(error.message, "has shape [176, 64], expected [175, 64]");
    assertEquals(error.detail.expected, [175, 64]);
    assertEquals(error.detail.actual, [176, 64]);
  });
});

Deno.test("missing tensor and unexpected tensor are ShapeErrors", async () => {
  await withTempDir(async (dir) => {
    await writeSmallCheckpoint(`${dir}/missing`, smallConfig(), {
      drop: ["model.layers.1.self_attn.o_proj.weight"],
    });
    const missing = await assertRejects(() => Checkpoint.open(`${dir}/missing`), ShapeError);
    assertStringIncludes(missing.message, 'Missing tensor "model.layers.1.self_attn.o_proj.weight"');
    assertStringIncludes(missing.message, "expected shape [16, 16]");

    const extra = {
      name: "lm_head.weight",
      dtype: "F32" as const,
      shape: [40, 16],
      data: new Uint8Array(40 * 16 * 4),
    };
    await writeSmallCheckpoint(`${dir}/tied`, smallConfig({ tie_word_embeddings: true }), { extra: [extra] });
    const unexpected = await assertRejects(() => Checkpoint.open(`${dir}/tied`), ShapeError);
    assertStringIncludes(unexpected.message, 'Unexpected tensor "lm_head.weight" [40, 16]');
    assertStringIncludes(unexpected.message, "tie_word_embeddings");
  });
});

Deno.test("saved rotary inv_freq buffers are ignored; integer weights are refused", async () => {
  await withTempDir(async (dir) => {
    const invFreq = {
      name: "model.layers.0.self_attn.rotary_emb.inv_freq",
      dtype: "F32" as const,
      shape: [2],
      data: new Uint8Array(8),
    };
    await writeSmallCheckpoint(`${dir}/a`, smallConfig(), { extra: [invFreq] });
    const checkpoint = await Checkpoint.open(`${dir}/a`);
    assert(!checkpoint.tensors.has(invFreq.name));
    checkpoint.close();

    const int8 = { name: "model.norm.weight", dtype: "I8" as const, shape: [16], data: new Uint8Array(16) };
    await writeSmallCheckpoint(`${dir}/b`, smallConfig(), { drop: ["model.norm.weight"], extra: [int8] });
    await assertRejects(() => Checkpoint.open(`${dir}/b`), UnsupportedError, "dtype I8");
  });
});

Deno.test("an index naming a missing shard, or disagreeing with the shards, is a FileFormatError", async () => {
  await withTempDir(async (dir) => {
    const indexPath = (d: string) => `${d}/model.safetensors.index.json`;
    await copyDir(GOLDEN_GQA, `${dir}/gone`);
    await Deno.remove(`${dir}/gone/model-00003-of-00004.safetensors`);
    const gone = await assertRejects(() => Checkpoint.open(`${dir}/gone`), FileFormatError);
    assertStringIncludes(gone.message, 'names shard "model-00003-of-00004.safetensors"');
    assertStringIncludes(gone.message, "does not exist");

    await copyDir(GOLDEN_GQA, `${dir}/moved`);
    await editJson(indexPath(`${dir}/moved`), (index) => {
      (index.weight_map as Record<string, string>)["model.norm.weight"] = "model-00001-of-00004.safetensors";
    });
    const moved = await assertRejects(() => Checkpoint.open(`${dir}/moved`), FileFormatError);
    assertStringIncludes(
      moved.message,
      'maps tensor "model.norm.weight" to "model-00001-of-00004.safetensors"',
    );

    await copyDir(GOLDEN_GQA, `${dir}/unlisted`);
    await editJson(indexPath(`${dir}/unlisted`), (index) => {
      delete (index.weight_map as Record<string, string>)["model.layers.0.self_attn.q_proj.weight"];
    });
    const unlisted = await assertRejects(() => Checkpoint.open(`${dir}/unlisted`), FileFormatError);
    assertStringIncludes(unlisted.message, 'does not map tensor "model.layers.0.self_attn.q_proj.weight"');

    await copyDir(GOLDEN_GQA, `${dir}/escape`);
    await editJson(indexPath(`${dir}/escape`), (index) => {
      (index.weight_map as Record<string, string>)["model.norm.weight"] = "../model.safetensors";
    });
    await assertRejects(() => Checkpoint.open(`${dir}/escape`), FileFormatError, "not a file name");

    await copyDir(GOLDEN_GQA, `${dir}/garbled`);
    await Deno.writeTextFile(indexPath(`${dir}/garbled`), "{ nope");
    await assertRejects(() => Checkpoint.open(`${dir}/garbled`), FileFormatError, "is not valid JSON");
  });
});

Deno.test("no directory, a file instead, or no weights: PathError", async () => {
  await assertRejects(() => Checkpoint.open("/nonexistent/harpe"), PathError, "does not exist");
  await assertRejects(() => Checkpoint.open(`${GOLDEN_MHA}/config.json`), PathError, "is not a directory");
  await withTempDir(async (dir) => {
    await Deno.copyFile(`${GOLDEN_MHA}/config.json`, `${dir}/config.json`);
    await assertRejects(() => Checkpoint.open(dir), PathError, "holds neither model.safetensors");
  });
});

Deno.test("a corrupt shard surfaces the safetensors FileFormatError", async () => {
  await withTempDir(async (dir) => {
    await copyDir(GOLDEN_MHA, dir);
    const file = await Deno.readFile(`${dir}/model.safetensors`);
    await Deno.writeFile(`${dir}/model.safetensors`, file.subarray(0, file.length - 10));
    await assertRejects(() => Checkpoint.open(dir), FileFormatError);
  });
});

Deno.test("readInto fills a reused buffer from any byte offset and refuses ranges past the tensor", async () => {
  const checkpoint = await Checkpoint.open(GOLDEN_GQA);
  try {
    const name = "model.layers.0.mlp.down_proj.weight";
    const whole = await checkpoint.readBytes(name);
    const buffer = new Uint8Array(1000);
    assertEquals(checkpoint.readInto(name, buffer, { start: 4096 }), whole.subarray(4096, 5096));
    assertEquals(checkpoint.readInto(name, buffer.subarray(0, 10)), whole.subarray(0, 10));
    await assertRejects(
      () => checkpoint.readInto(name, buffer, { start: whole.byteLength - 999 }),
      ShapeError,
      "Cannot read bytes",
    );
  } finally {
    checkpoint.close();
  }
});

Deno.test("both golden checkpoints hold exactly parameterTable(config), names and shapes, in order", async () => {
  for (const dir of [GOLDEN_MHA, GOLDEN_GQA]) {
    const checkpoint = await Checkpoint.open(dir);
    const table = parameterTable(checkpoint.config);
    assertEquals([...checkpoint.tensors.keys()], table.map((p) => p.name), dir);
    assertEquals([...checkpoint.tensors.values()].map((t) => t.shape), table.map((p) => p.shape), dir);
    checkpoint.close();
  }
});
