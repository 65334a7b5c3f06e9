// Writes one safetensors shard by streaming: the header (encoded by the safetensors module) first, then
// each tensor's bytes in chunks as they are produced, into a temporary file renamed when complete.
// Chunks let export run in small reused buffers instead of one allocation per tensor.

import { ShapeError } from "../errors.ts";
import { encodeHeader } from "../safetensors/header.ts";
import type { TensorHeader } from "../safetensors/mod.ts";
import { writeFileAtomically } from "../util/atomic.ts";

/** Receives the next bytes of the tensor being written; the caller may reuse `chunk` once it resolves. */
export type ChunkSink = (chunk: Uint8Array) => Promise<void>;

/** A tensor whose bytes are pushed, in order, into the sink by `produce`. */
export interface StreamedTensor extends TensorHeader {
  produce: (sink: ChunkSink) => Promise<void>;
}

/** Writes with the synchronous call: it hands the buffer to the kernel as it is, where the asynchronous
 * one first copies it into a fresh allocation (measured 7x slower for 8 MiB chunks on 2 GB). */
function writeAll(file: Deno.FsFile, data: Uint8Array): void {
  for (let written = 0; written < data.byteLength;) written += file.writeSync(data.subarray(written));
}

/**
 * Writes `tensors` into the safetensors file `path`, atomically. Throws ShapeError (naming the tensor)
 * when a tensor's produced bytes do not add up to its dtype and shape; nothing is left behind then.
 *
 * @example
 * ```ts
 * await writeShard("a.safetensors", [{ name: "w", dtype: "U8", shape: [2],
 *   produce: (sink) => sink(new Uint8Array([1, 2])) }], { metadata: { format: "pt" } });
 * ```
 */
export function writeShard(
  path: string,
  tensors: StreamedTensor[],
  options: { metadata?: Record<string, string>; onBytes?: (bytes: number) => void } = {},
): Promise<void> {
  const headers = tensors.map(({ name, dtype, shape }) => ({ name, dtype, shape }));
  const header = encodeHeader(headers, { metadata: options.metadata });
  return writeFileAtomically(path, async (temporary) => {
    const file = await Deno.open(temporary, { write: true, createNew: true });
    try {
      writeAll(file, header.bytes);
      for (const [i, tensor] of tensors.entries()) {
        const expected = header.tensors[i].byteLength;
        let written = 0;
        const mismatch = (actual: number) =>
          new ShapeError(
            `Cannot write tensor "${tensor.name}" to "${path}": expected ${expected} bytes, got ${actual}`,
            { file: path, tensor: tensor.name, expected, actual },
          );
        await tensor.produce((chunk) => {
          if (written + chunk.byteLength > expected) {
            return Promise.reject(mismatch(written + chunk.byteLength));
          }
          writeAll(file, chunk);
          written += chunk.byteLength;
          options.onBytes?.(chunk.byteLength);
          return Promise.resolve();
        });
        if (written !== expected) throw mismatch(written);
      }
    } finally {
      file.close();
    }
  });
}
