// writeCheckpoint: shard planning and naming, index contents, shard metadata, atomicity on failure,
// refused overwrite, auxiliary files, and a byte-exact round trip through Checkpoint.open.

import { assert, assertEquals, assertRejects, assertStringIncludes, assertThrows } from "./assert.ts";
import { listDir, withTempDir } from "./harness.ts";
import { GOLDEN_GQA, readJson, seededValues, smallConfig } from "./checkpoint_fixtures.ts";
import { Checkpoint } from "../lib/checkpoint/checkpoint.ts";
import { parseConfig } from "../lib/checkpoint/config.ts";
import { parameterTable } from "../lib/checkpoint/tensor_table.ts";
import { planShards, shardFileName, type SourceTensor, writeCheckpoint } from "../lib/checkpoint/writer.ts";
import { ConfigError, PathError, ShapeError } from "../lib/errors.ts";
import { SafetensorsFile } from "../lib/safetensors/mod.ts";

/** Every parameter of smallConfig() as f32 source tensors with seeded values. */
function smallSource(config: Record<string, unknown> = smallConfig()) {
  const data = new Map<string, Uint8Array>();
  const tensors: SourceTensor[] = parameterTable(parseConfig(config)).map((spec, i) => {
    const bytes = new Uint8Array(seededValues(spec.shape.reduce((a, b) => a * b, 1), 100 + i).buffer);
    data.set(spec.name, bytes);
    return { name: spec.name, dtype: "F32", shape: spec.shape, read: () => Promise.resolve(bytes) };
  });
  return { config, tensors, data };
}

Deno.test("planShards: greedy in order, never splitting a tensor; oversized tensors alone", () => {
  const t = (name: string, n: number) => ({ name, dtype: "F32" as const, shape: [n] });
  // bytes: a 40, b 40, c 120, d 8, e 8
  const tensors = [t("a", 10), t("b", 10), t("c", 30), t("d", 2), t("e", 2)];
  const names = (shards: { name: string }[][]) => shards.map((s) => s.map((x) => x.name));
  assertEquals(names(planShards(tensors, 80)), [["a", "b"], ["c"], ["d", "e"]]);
  assertEquals(names(planShards(tensors, 79)), [["a"], ["b"], ["c"], ["d", "e"]]);
  assertEquals(names(planShards(tensors, 1000)), [["a", "b", "c", "d", "e"]]);
  assertEquals(names(planShards([], 10)), [[]]);
  assertThrows(() => planShards(tensors, 0), ConfigError);
});

Deno.test("shard names follow Hugging Face", () => {
  assertEquals(shardFileName(0, 1), "model.safetensors");
  assertEquals(shardFileName(0, 3), "model-00001-of-00003.safetensors");
  assertEquals(shardFileName(11, 12), "model-00012-of-00012.safetensors");
});

Deno.test("sharded write: index, metadata, shard sizes, and a byte-exact read back", async () => {
  await withTempDir(async (dir) => {
    const { config, tensors, data } = smallSource();
    const bytes = tensors.map((t) => data.get(t.name)!.byteLength);
    const totalSize = bytes.reduce((a, b) => a + b, 0);
    // Embedding 40x16 f32 = 2560 bytes, the largest tensor; 3000 forces several shards.
    const shardSize = 3000;
    const summary = await writeCheckpoint(`${dir}/out`, { config, tensors }, { shardSize, progress: false });
    const n = summary.shards.length;
    assert(n > 2, `expected several shards, got ${n}`);
    const files = await listDir(`${dir}/out`);
    const pad = (k: number) => String(k).padStart(5, "0");
    const shardNames = Array.from({ length: n }, (_, i) => `model-${pad(i + 1)}-of-${pad(n)}.safetensors`);
    assertEquals(files, ["config.json", "model.safetensors.index.json", ...shardNames].sort());
    assertEquals(await readJson(`${dir}/out/config.json`), config);

    const index = await readJson(`${dir}/out/model.safetensors.index.json`);
    const metadata = index.metadata as Record<string, number>;
    assertEquals(metadata.total_size, totalSize);
    assertEquals(metadata.total_parameters, totalSize / 4);
    const weightMap = index.weight_map as Record<string, string>;
    assertEquals(Object.keys(weightMap), tensors.map((t) => t.name).sort(), "weight_map sorted by name");

    for (const name of shardNames) {
      const file = await SafetensorsFile.open(`${dir}/out/${name}`);
      assertEquals(file.metadata, { format: "pt" });
      const held = [...file.tensors.values()];
      const size = held.reduce((sum, t) => sum + t.byteLength, 0);
      assert(size <= shardSize || held.length === 1, `${name} holds ${size} bytes`);
      for (const t of held) assertEquals(weightMap[t.name], name);
      file.close();
    }
    const checkpoint = await Checkpoint.open(`${dir}/out`);
    for (const t of tensors) assertEquals(await checkpoint.readBytes(t.name), data.get(t.name)!, t.name);
    checkpoint.close();
  });
});

Deno.test("one shard is model.safetensors without an index", async () => {
  await withTempDir(async (dir) => {
    const { config, tensors } = smallSource();
    const summary = await writeCheckpoint(`${dir}/out`, { config, tensors }, { progress: false });
    assertEquals(summary.shards.map((s) => s.file), ["model.safetensors"]);
    assertEquals(await listDir(`${dir}/out`), ["config.json", "model.safetensors"]);
  });
});

Deno.test("a failing read leaves no output and no temporary files; tensors are pulled one at a time", async () => {
  await withTempDir(async (dir) => {
    const { config, tensors } = smallSource();
    let inFlight = 0;
    let reads = 0;
    const failing = tensors.map((t, i) => ({
      ...t,
      read: async () => {
        inFlight++;
        assertEquals(inFlight, 1, "one tensor at a time");
        if (i === 7) throw new Error("disk on fire");
        reads++;
        const data = await t.read();
        inFlight--;
        return data;
      },
    }));
    await assertRejects(
      () => writeCheckpoint(`${dir}/out`, { config, tensors: failing }, { shardSize: 3000, progress: false }),
      Error,
      "disk on fire",
    );
    assertEquals(reads, 7);
    assertEquals(await listDir(dir), []);
  });
});

Deno.test("a read returning the wrong byte count is a ShapeError and leaves nothing", async () => {
  await withTempDir(async (dir) => {
    const { config, tensors } = smallSource();
    tensors[3] = { ...tensors[3], read: () => Promise.resolve(new Uint8Array(4)) };
    await assertRejects(
      () => writeCheckpoint(`${dir}/out`, { config, tensors }, { progress: false }),
      ShapeError,
      tensors[3].name,
    );
    assertEquals(await listDir(dir), []);
  });
});

Deno.test("streamed tensors (chunks through one reused buffer) write the same bytes; a short stream is refused", async () => {
  await withTempDir(async (dir) => {
    const { config, tensors, data } = smallSource();
    const CHUNK = 100;
    const reused = new Uint8Array(CHUNK);
    const streamed = tensors.map((t) => ({
      ...t,
      read: () => Promise.reject(new Error("read must not be called when chunks are given")),
      chunks: function* () {
        const bytes = data.get(t.name)!;
        for (let at = 0; at < bytes.byteLength; at += CHUNK) {
          const part = bytes.subarray(at, at + CHUNK);
          reused.set(part);
          yield reused.subarray(0, part.byteLength);
        }
      },
    }));
    await writeCheckpoint(`${dir}/out`, { config, tensors: streamed }, { shardSize: 3000, progress: false });
    const checkpoint = await Checkpoint.open(`${dir}/out`);
    for (const t of tensors) assertEquals(await checkpoint.readBytes(t.name), data.get(t.name)!, t.name);
    checkpoint.close();

    streamed[5] = {
      ...streamed[5],
      chunks: function* () {
        yield new Uint8Array(4);
      },
    };
    await assertRejects(
      () => writeCheckpoint(`${dir}/short`, { config, tensors: streamed }, { progress: false }),
      ShapeError,
      streamed[5].name,
    );
    assertEquals(await listDir(dir), ["out"]);
  });
});

Deno.test("an existing output is refused unless overwrite; overwrite replaces it whole", async () => {
  await withTempDir(async (dir) => {
    const { config, tensors } = smallSource();
    await Deno.mkdir(`${dir}/out`);
    await Deno.writeTextFile(`${dir}/out/old.txt`, "keep me");
    const error = await assertRejects(
      () => writeCheckpoint(`${dir}/out`, { config, tensors }, { progress: false }),
      PathError,
    );
    assertStringIncludes(error.message, "already exists");
    assertEquals(await Deno.readTextFile(`${dir}/out/old.txt`), "keep me");
    await writeCheckpoint(`${dir}/out`, { config, tensors }, { overwrite: true, progress: false });
    assertEquals(await listDir(`${dir}/out`), ["config.json", "model.safetensors"]);
  });
});

Deno.test("auxiliary files are copied from copyFilesFrom when present", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    await Deno.copyFile(`${GOLDEN_GQA}/generation_config.json`, `${dir}/src/generation_config.json`);
    await Deno.writeTextFile(`${dir}/src/tokenizer.json`, '{"model": {}}');
    await Deno.writeTextFile(`${dir}/src/chat_template.jinja`, "{{ messages }}");
    await Deno.writeTextFile(`${dir}/src/notes.txt`, "not copied");
    const { config, tensors } = smallSource();
    const summary = await writeCheckpoint(`${dir}/out`, { config, tensors }, {
      copyFilesFrom: `${dir}/src`,
      progress: false,
    });
    assertEquals(summary.copied.sort(), ["chat_template.jinja", "generation_config.json", "tokenizer.json"]);
    assertEquals(await Deno.readTextFile(`${dir}/out/chat_template.jinja`), "{{ messages }}");
    assert(!(await listDir(`${dir}/out`)).includes("notes.txt"));
  });
});

Deno.test("duplicate tensor names are refused before anything is written", async () => {
  await withTempDir(async (dir) => {
    const { config, tensors } = smallSource();
    await assertRejects(
      () => writeCheckpoint(`${dir}/out`, { config, tensors: [...tensors, tensors[0]] }, { progress: false }),
      ShapeError,
      "given twice",
    );
    assertEquals(await listDir(dir), []);
  });
});
