// Chunked reading and writing (readChunks / readInto / writeChunks) and conversions into reused output
// arrays: the same bytes and values as the whole-tensor paths, in bounded memory.

import { assertEquals, assertRejects, assertStringIncludes, assertThrows } from "./assert.ts";
import { listDir, withTempDir } from "./harness.ts";
import { randomBytes, seededRandom } from "./safetensors_files.ts";
import { FileFormatError, ShapeError } from "../lib/errors.ts";
import {
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  SafetensorsFile,
  SafetensorsWriter,
  writeSafetensors,
} from "../lib/safetensors/mod.ts";

Deno.test("readChunks yields a tensor (or a range of it) in order through one reused buffer", async () => {
  await withTempDir(async (dir) => {
    const data = randomBytes(seededRandom(3), 1000);
    await writeSafetensors(`${dir}/c.safetensors`, [
      { name: "head", dtype: "U8", shape: [3], data: new Uint8Array([7, 7, 7]) },
      { name: "x", dtype: "U8", shape: [1000], data },
    ]);
    const file = await SafetensorsFile.open(`${dir}/c.safetensors`);
    const buffer = new Uint8Array(64);
    const parts: number[][] = [];
    for await (const chunk of file.readChunks("x", { buffer })) {
      assertEquals(chunk.buffer, buffer.buffer, "chunks are views of the given buffer");
      parts.push(Array.from(chunk));
    }
    assertEquals(parts.length, Math.ceil(1000 / 64));
    assertEquals(parts.flat(), Array.from(data));
    const ranged: number[] = [];
    for await (const chunk of file.readChunks("x", { buffer, range: { start: 100, end: 250 } })) {
      ranged.push(...chunk);
    }
    assertEquals(ranged, Array.from(data.subarray(100, 250)));
    const whole: number[] = [];
    for await (const chunk of file.readChunks("head")) whole.push(...chunk);
    assertEquals(whole, [7, 7, 7]);
    await assertRejects(async () => {
      for await (const _ of file.readChunks("x", { range: { start: 0, end: 1001 } })) break;
    }, ShapeError);
    file.close();
  });
});

Deno.test("readInto fills a reused buffer at any offset; bad ranges and a file cut after open are refused", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/r.safetensors`;
    const data = randomBytes(seededRandom(4), 1000);
    await writeSafetensors(path, [
      { name: "head", dtype: "U8", shape: [3], data: new Uint8Array([7, 7, 7]) },
      { name: "x", dtype: "U8", shape: [1000], data },
    ]);
    const file = await SafetensorsFile.open(path);
    const buffer = new Uint8Array(100);
    assertEquals(file.readInto("x", buffer, { start: 900 }), data.subarray(900, 1000));
    assertEquals(file.readInto("x", buffer.subarray(0, 10)), data.subarray(0, 10));
    assertEquals(Array.from(file.readInto("head", new Uint8Array(3))), [7, 7, 7]);
    assertThrows(
      () => file.readInto("x", buffer, { start: 901 }),
      ShapeError,
      "Cannot read bytes [901, 1001)",
    );
    assertThrows(() => file.readInto("x", buffer, { start: -1 }), ShapeError);
    await Deno.truncate(path, (await Deno.stat(path)).size - 50);
    const error = assertThrows(
      () => file.readInto("x", buffer, { start: 900 }),
      FileFormatError,
      "truncated",
    );
    assertEquals(error.detail.tensor, "x");
    assertStringIncludes(error.message, 'inside tensor "x"');
    file.close();
  });
});

Deno.test("writeChunks writes a tensor from chunks; wrong totals abort and leave nothing", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/w.safetensors`;
    const headers = [{ name: "a", dtype: "U16" as const, shape: [4] }, {
      name: "b",
      dtype: "U8" as const,
      shape: [2],
    }];
    const writer = await SafetensorsWriter.create(path, headers);
    const reused = new Uint8Array(4);
    async function* chunks() {
      for (const part of [[1, 0, 2, 0], [3, 0, 4, 0]]) {
        reused.set(part);
        yield reused;
      }
    }
    await writer.writeChunks("a", chunks());
    await writer.writeChunks("b", [new Uint8Array([9]), new Uint8Array([8])]);
    await writer.finish();
    const file = await SafetensorsFile.open(path);
    assertEquals(Array.from(await file.readTyped("a") as Uint16Array), [1, 2, 3, 4]);
    assertEquals(Array.from(await file.readBytes("b")), [9, 8]);
    file.close();
    await Deno.remove(path);

    const short = await SafetensorsWriter.create(path, headers);
    await assertRejects(
      () => short.writeChunks("a", [new Uint8Array(6)]),
      ShapeError,
      "only 6 bytes, expected 8",
    );
    const long = await SafetensorsWriter.create(path, headers);
    await assertRejects(
      () => long.writeChunks("a", [new Uint8Array(6), new Uint8Array(6)]),
      ShapeError,
      "more than",
    );
    const wrong = await SafetensorsWriter.create(path, headers);
    await assertRejects(() => wrong.writeChunks("b", []), ShapeError, '"a"');
    const failing = await SafetensorsWriter.create(path, headers);
    async function* broken(): AsyncGenerator<Uint8Array> {
      yield new Uint8Array(2);
      throw new Error("source failed");
    }
    await assertRejects(() => failing.writeChunks("a", broken()), Error, "source failed");
    assertEquals(await listDir(dir), [], "every failure removed its temporary file");
  });
});

Deno.test("conversions into a reused output array equal the allocating ones", () => {
  const random = seededRandom(5);
  const bits = Uint32Array.from({ length: 5000 }, () => Math.floor(random() * 2 ** 32));
  const values = new Float32Array(bits.buffer);
  const out16 = new Uint16Array(6000).fill(0xabcd);
  const bf16 = f32ToBf16(values, out16);
  assertEquals(bf16, out16, "returns the given array");
  assertEquals(bf16.subarray(0, 5000), f32ToBf16(values));
  assertEquals(out16[5000], 0xabcd, "elements past the input are untouched");
  assertEquals(f32ToF16(values, new Uint16Array(5000)), f32ToF16(values));
  const h = Uint16Array.from({ length: 5000 }, () => Math.floor(random() * 65536));
  const back = new Float32Array(5000);
  assertEquals(bf16ToF32(h, back), back);
  assertEquals(new Uint32Array(back.buffer), new Uint32Array(bf16ToF32(h).buffer));
  assertEquals(
    new Uint32Array(f16ToF32(h, new Float32Array(5000)).buffer),
    new Uint32Array(f16ToF32(h).buffer),
  );
  assertThrows(() => f32ToBf16(values, new Uint16Array(10)), RangeError, "5000");
  // An output not 4-byte aligned and an odd count take the one-element-at-a-time path: same bits.
  const odd = values.subarray(0, 4999);
  const shifted = new Uint16Array(new ArrayBuffer(2 * 5001), 2, 4999);
  assertEquals(f32ToBf16(odd, shifted), f32ToBf16(values).subarray(0, 4999));
});
