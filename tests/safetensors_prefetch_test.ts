// ChunkPrefetcher: byte ranges read on a worker thread come back whole and in order (plain and rounded
// to bf16) through a ring smaller than the data; a read past the file's end and an unfinished job fail.

import { assertEquals, assertThrows } from "./assert.ts";
import { withTempDir } from "./harness.ts";
import { ChunkPrefetcher } from "../lib/safetensors/prefetch.ts";

/** Small chunks and two slots: every job spans several chunks and the ring wraps many times. */
const CHUNK_BYTES = 64;
const SLOTS = 2;

function collect(chunks: Iterable<Uint8Array>): number[] {
  const out: number[] = [];
  for (const chunk of chunks) out.push(...chunk);
  return out;
}

Deno.test("prefetch: plain and f32 -> bf16 ranges come back whole, in order, job after job", async () => {
  await withTempDir(async (dir) => {
    const values = Float32Array.from({ length: 300 }, (_, i) => 1 + i); // exact in bf16 below 256
    const bytes = new Uint8Array(values.buffer);
    const path = `${dir}/data.bin`;
    await Deno.writeFile(path, bytes);
    const prefetch = await ChunkPrefetcher.start([
      { path, offset: 12, byteLength: 1000, toBf16: false },
      { path, offset: 4, byteLength: 4 * 200, toBf16: true },
      { path, offset: 0, byteLength: 0, toBf16: false },
      { path, offset: 0, byteLength: 4 * 9, toBf16: true },
    ], { chunkBytes: CHUNK_BYTES, slots: SLOTS });
    try {
      assertEquals(collect(prefetch.chunks(0)), [...bytes.subarray(12, 1012)]);
      // Values 2..201: bf16 bits are the f32 bits' upper halves (little-endian byte pairs).
      const bf16 = new Uint16Array(Uint8Array.from(collect(prefetch.chunks(1))).buffer);
      assertEquals(
        [...bf16],
        [...values.subarray(1, 201)].map((v) => new Uint32Array(Float32Array.of(v).buffer)[0] >>> 16),
      );
      assertEquals(collect(prefetch.chunks(2)), []);
      assertEquals(collect(prefetch.chunks(3)).length, 18);
    } finally {
      prefetch.close();
    }
  });
});

Deno.test("prefetch: a read past the end of the file fails; an unfinished job stops later ones", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/data.bin`;
    await Deno.writeFile(path, new Uint8Array(500));
    const prefetch = await ChunkPrefetcher.start([
      { path, offset: 400, byteLength: 200, toBf16: false },
      { path, offset: 0, byteLength: 400, toBf16: false },
    ], { chunkBytes: CHUNK_BYTES, slots: SLOTS });
    try {
      assertThrows(() => collect(prefetch.chunks(0)), Error, "ended at byte 500");
      assertThrows(() => collect(prefetch.chunks(1)), Error, "unfinished");
    } finally {
      prefetch.close();
    }
  });
  await withTempDir(async (dir) => {
    const path = `${dir}/data.bin`;
    await Deno.writeFile(path, new Uint8Array(500));
    const prefetch = await ChunkPrefetcher.start([
      { path, offset: 0, byteLength: 400, toBf16: false },
      { path, offset: 0, byteLength: 400, toBf16: false },
    ], { chunkBytes: CHUNK_BYTES, slots: SLOTS });
    try {
      for (const _ of prefetch.chunks(0)) break;
      assertThrows(() => collect(prefetch.chunks(1)), Error, "unfinished");
    } finally {
      prefetch.close();
    }
  });
});
