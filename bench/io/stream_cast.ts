// Reference pipeline for the I/O bench: casts every f32 shard of a checkpoint to bf16 through
// lib/safetensors' chunked reads and writes, with buffers reused across all tensors, to show what a
// streaming export costs. Usage: deno run -R -W bench/io/stream_cast.ts SRC_DIR DST_DIR

import { f32ToBf16, SafetensorsFile, SafetensorsWriter } from "../../lib/safetensors/mod.ts";

/** f32 bytes read per chunk (the bf16 output chunk is half of it). */
const CHUNK_BYTES = 8 * 2 ** 20;

/** Yields each f32 chunk of `name` cast to bf16, in one reused output buffer. */
async function* castChunks(file: SafetensorsFile, name: string, input: Uint8Array, output: Uint16Array) {
  for await (const chunk of file.readChunks(name, { buffer: input })) {
    const values = new Float32Array(chunk.buffer, chunk.byteOffset, chunk.byteLength / 4);
    yield new Uint8Array(f32ToBf16(values, output).buffer, 0, chunk.byteLength / 2);
  }
}

/**
 * Casts every `.safetensors` file in `src` to a bf16 file of the same name in `dst`.
 *
 * @example
 * ```ts
 * await streamCast("ckpt", "ckpt-bf16");
 * ```
 */
export async function streamCast(src: string, dst: string): Promise<void> {
  await Deno.mkdir(dst);
  const input = new Uint8Array(CHUNK_BYTES);
  const output = new Uint16Array(CHUNK_BYTES / 4);
  for await (const entry of Deno.readDir(src)) {
    if (!entry.name.endsWith(".safetensors")) continue;
    const file = await SafetensorsFile.open(`${src}/${entry.name}`);
    const headers = [...file.tensors.values()].map(({ name, shape }) => ({
      name,
      dtype: "BF16" as const,
      shape,
    }));
    const writer = await SafetensorsWriter.create(`${dst}/${entry.name}`, headers, {
      metadata: file.metadata,
    });
    for (const { name } of headers) await writer.writeChunks(name, castChunks(file, name, input, output));
    await writer.finish();
    file.close();
  }
}

if (import.meta.main) await streamCast(Deno.args[0], Deno.args[1]);
