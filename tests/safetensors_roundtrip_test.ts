// Writer -> reader round trips for every dtype, the byte layout the writer produces, atomic output,
// ranged reads, and a sparse 20 GB file opened and read in well under a second.

import { assert, assertEquals, assertRejects } from "./assert.ts";
import { listDir, withTempDir } from "./harness.ts";
import { randomBytes, rawSafetensors, seededRandom } from "./safetensors_files.ts";
import { FileFormatError, PathError, ShapeError } from "../lib/errors.ts";
import {
  type DType,
  DTYPES,
  dtypeSize,
  SafetensorsFile,
  SafetensorsWriter,
  writeSafetensors,
} from "../lib/safetensors/mod.ts";

const NATIVE: Record<DType, string> = {
  F64: "Float64Array",
  F32: "Float32Array",
  F16: "Uint16Array",
  BF16: "Uint16Array",
  I64: "BigInt64Array",
  I32: "Int32Array",
  I16: "Int16Array",
  I8: "Int8Array",
  U8: "Uint8Array",
  BOOL: "Uint8Array",
  U16: "Uint16Array",
  U32: "Uint32Array",
  U64: "BigUint64Array",
  F8_E4M3: "Uint8Array",
  F8_E5M2: "Uint8Array",
};

Deno.test("round trip of every dtype: bytes, native arrays, shapes and metadata come back", async () => {
  await withTempDir(async (dir) => {
    const random = seededRandom(1);
    const tensors = DTYPES.map((dtype, i) => {
      const shape = [i % 3 + 1, 5];
      return {
        name: `t.${dtype}`,
        dtype,
        shape,
        data: randomBytes(random, 5 * (i % 3 + 1) * dtypeSize(dtype)),
      };
    });
    tensors.push({ name: "empty", dtype: "F32", shape: [0, 4], data: new Uint8Array(0) });
    tensors.push({ name: "scalar", dtype: "I32", shape: [], data: new Uint8Array([1, 0, 0, 0]) });
    const path = `${dir}/all.safetensors`;
    await writeSafetensors(path, tensors, { metadata: { format: "pt", note: "ünïcode" } });
    const file = await SafetensorsFile.open(path);
    try {
      assertEquals(file.metadata, { format: "pt", note: "ünïcode" });
      assertEquals([...file.tensors.keys()], tensors.map((t) => t.name), "file order = write order");
      for (const t of tensors) {
        assertEquals(file.info(t.name).shape, t.shape, t.name);
        assertEquals(file.info(t.name).dtype, t.dtype, t.name);
        assertEquals(await file.readBytes(t.name), t.data, t.name);
        const typed = await file.readTyped(t.name);
        assertEquals(typed.constructor.name, NATIVE[t.dtype], t.name);
        assertEquals(typed.byteLength, t.data.byteLength, t.name);
      }
      const i32 = await file.readTyped("scalar");
      assertEquals(Array.from(i32 as Int32Array), [1]);
    } finally {
      file.close();
    }
  });
});

Deno.test("readF32 decodes each float dtype to the values that were encoded", async () => {
  await withTempDir(async (dir) => {
    // Values exactly representable in every float dtype (including F8_E4M3 and F8_E5M2).
    const values = [0, 1, -1.5, 0.25, 2, -0.5];
    const f32 = new Float32Array(values);
    const f16 = new Uint16Array([0x0000, 0x3c00, 0xbe00, 0x3400, 0x4000, 0xb800]);
    const bf16 = new Uint16Array([0x0000, 0x3f80, 0xbfc0, 0x3e80, 0x4000, 0xbf00]);
    const e4m3 = new Uint8Array([0x00, 0x38, 0xbc, 0x28, 0x40, 0xb0]);
    const e5m2 = new Uint8Array([0x00, 0x3c, 0xbe, 0x34, 0x40, 0xb8]);
    const tensors = [
      { name: "f64", dtype: "F64" as const, data: new Uint8Array(new Float64Array(values).buffer) },
      { name: "f32", dtype: "F32" as const, data: new Uint8Array(f32.buffer) },
      { name: "f16", dtype: "F16" as const, data: new Uint8Array(f16.buffer) },
      { name: "bf16", dtype: "BF16" as const, data: new Uint8Array(bf16.buffer) },
      { name: "e4m3", dtype: "F8_E4M3" as const, data: e4m3 },
      { name: "e5m2", dtype: "F8_E5M2" as const, data: e5m2 },
    ].map((t) => ({ ...t, shape: [2, 3] }));
    await writeSafetensors(`${dir}/f.safetensors`, tensors);
    const file = await SafetensorsFile.open(`${dir}/f.safetensors`);
    for (const t of tensors) assertEquals(Array.from(await file.readF32(t.name)), values, t.name);
    file.close();
  });
});

Deno.test("writer layout: header padded with spaces to 8 bytes, offsets contiguous in given order", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/x.safetensors`;
    await writeSafetensors(path, [
      { name: "b", dtype: "U8", shape: [3], data: new Uint8Array([1, 2, 3]) },
      { name: "a", dtype: "F32", shape: [1], data: new Uint8Array([0, 0, 0x80, 0x3f]) },
    ], { metadata: { format: "pt" } });
    const raw = await Deno.readFile(path);
    const n = Number(new DataView(raw.buffer).getBigUint64(0, true));
    assertEquals((8 + n) % 8, 0, "data starts at a multiple of 8");
    const text = new TextDecoder().decode(raw.subarray(8, 8 + n));
    assert(/^\{.*\} *$/s.test(text), `only spaces pad the JSON: ${JSON.stringify(text.slice(-12))}`);
    assert(n - text.trimEnd().length < 8, "at most 7 spaces of padding");
    assertEquals(JSON.parse(text), {
      __metadata__: { format: "pt" },
      b: { dtype: "U8", shape: [3], data_offsets: [0, 3] },
      a: { dtype: "F32", shape: [1], data_offsets: [3, 7] },
    });
    assertEquals(Array.from(raw.subarray(8 + n)), [1, 2, 3, 0, 0, 0x80, 0x3f]);
  });
});

Deno.test("writer is atomic: nothing at the path before finish, nothing left after abort or a wrong write", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/w.safetensors`;
    const headers = [{ name: "a", dtype: "U8" as const, shape: [2] }, {
      name: "b",
      dtype: "U8" as const,
      shape: [1],
    }];
    const writer = await SafetensorsWriter.create(path, headers);
    await writer.write("a", new Uint8Array([1, 2]));
    assertEquals(
      await listDir(dir).then((names) => names.includes("w.safetensors")),
      false,
      "not before finish",
    );
    await writer.abort();
    assertEquals(await listDir(dir), [], "abort removes the temporary file");

    const wrongOrder = await SafetensorsWriter.create(path, headers);
    await assertRejects(() => wrongOrder.write("b", new Uint8Array([1])), ShapeError, '"a"');
    assertEquals(await listDir(dir), [], "a write out of order aborts");

    const wrongSize = await SafetensorsWriter.create(path, headers);
    await assertRejects(() => wrongSize.write("a", new Uint8Array([1, 2, 3])), ShapeError, "3 bytes");
    assertEquals(await listDir(dir), []);

    const incomplete = await SafetensorsWriter.create(path, headers);
    await incomplete.write("a", new Uint8Array([1, 2]));
    await assertRejects(() => incomplete.finish(), ShapeError, '"b"');
    assertEquals(await listDir(dir), [], "finish before the last tensor aborts");

    await assertRejects(
      () => SafetensorsWriter.create(`${dir}/missing/w.safetensors`, headers),
      PathError,
      "does not exist",
    );
    await assertRejects(
      () => SafetensorsWriter.create(path, [{ name: "a", dtype: "U8", shape: [-1] }]),
      ShapeError,
      '"a"',
    );
    await assertRejects(
      () => SafetensorsWriter.create(path, [{ name: "a", dtype: "F4" as DType, shape: [1] }]),
      RangeError,
      "F4",
    );
    assertEquals(await listDir(dir), []);
  });
});

Deno.test("readBytes returns byte ranges within a tensor and refuses ranges outside it", async () => {
  await withTempDir(async (dir) => {
    const data = Uint8Array.from({ length: 64 }, (_, i) => i);
    await writeSafetensors(`${dir}/r.safetensors`, [
      { name: "pad", dtype: "U8", shape: [5], data: new Uint8Array(5).fill(255) },
      { name: "x", dtype: "U8", shape: [8, 8], data },
    ]);
    const file = await SafetensorsFile.open(`${dir}/r.safetensors`);
    assertEquals(Array.from(await file.readBytes("x", { start: 8, end: 12 })), [8, 9, 10, 11]);
    assertEquals((await file.readBytes("x", { start: 64, end: 64 })).byteLength, 0);
    // Concurrent reads share one file position; each must still get its own range.
    const parts = await Promise.all(
      [0, 1, 2, 3, 4, 5, 6, 7].map((r) => file.readBytes("x", { start: 8 * r, end: 8 * r + 8 })),
    );
    assertEquals(parts.map((p) => p[0]), [0, 8, 16, 24, 32, 40, 48, 56]);
    await assertRejects(() => file.readBytes("x", { start: 60, end: 65 }), ShapeError, "65");
    await assertRejects(() => file.readBytes("x", { start: -1, end: 2 }), ShapeError);
    const missing = await assertRejects(() => file.info("nope"), FileFormatError, '"nope"');
    assertEquals(missing.detail.file, `${dir}/r.safetensors`);
    file.close();
  });
});

Deno.test("a sparse 20 GB file opens and one small tensor reads in well under a second with little memory", async () => {
  await withTempDir(async (dir) => {
    const big = 20_000_000_000;
    const header = {
      __metadata__: { format: "pt" },
      small: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
      big: { dtype: "BF16", shape: [big / 2], data_offsets: [16, 16 + big] },
    };
    const small = new Float32Array([1, 2, 3, 4]);
    const bytes = rawSafetensors(header, new Uint8Array(small.buffer));
    const path = `${dir}/sparse.safetensors`;
    await Deno.writeFile(path, bytes);
    await Deno.truncate(path, bytes.byteLength + big);
    const rssBefore = Deno.memoryUsage().rss;
    const t0 = performance.now();
    const file = await SafetensorsFile.open(path);
    const values = await file.readF32("small");
    const tail = await file.readBytes("big", { start: big - 8, end: big });
    const ms = performance.now() - t0;
    file.close();
    assertEquals(Array.from(values), [1, 2, 3, 4]);
    assertEquals(Array.from(tail), [0, 0, 0, 0, 0, 0, 0, 0]);
    assertEquals(file.tensors.get("big")?.byteLength, big);
    assert(ms < 250, `open + read took ${ms.toFixed(1)} ms`);
    const grown = Deno.memoryUsage().rss - rssBefore;
    assert(grown < 64 * 2 ** 20, `RSS grew by ${(grown / 2 ** 20).toFixed(1)} MiB`);
  });
});
