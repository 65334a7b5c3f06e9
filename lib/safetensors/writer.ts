// Streaming safetensors writer: the header (all tensors known up front) goes first, then each tensor's
// bytes one at a time, into a temporary file that is renamed into place only when complete.

import { PathError, ShapeError } from "../errors.ts";
import { writeFileAtomically } from "../util/atomic.ts";
import { encodeHeader, type TensorHeader, type TensorInfo } from "./header.ts";

/**
 * Writes all of `data` with the synchronous call: it hands the buffer to the kernel as it is, where the
 * asynchronous one first copies it into a fresh allocation (measured 7x slower for 8 MiB chunks on 2 GB).
 */
function writeAll(file: Deno.FsFile, data: Uint8Array): void {
  for (let written = 0; written < data.byteLength;) written += file.writeSync(data.subarray(written));
}

/** A promise with its resolve/reject exposed. */
function deferred(): { promise: Promise<void>; resolve: () => void; reject: (error: unknown) => void } {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * Writes one safetensors file tensor by tensor (memory bounded by the largest tensor). The file
 * appears at its path only after finish(); abort() (or any failed write) leaves nothing behind.
 *
 * @example
 * ```ts
 * const writer = await SafetensorsWriter.create("out.safetensors", [{ name: "w", dtype: "F32", shape: [2] }],
 *   { metadata: { format: "pt" } });
 * await writer.write("w", new Uint8Array(new Float32Array([1, 2]).buffer));
 * await writer.finish();
 * ```
 */
export class SafetensorsWriter {
  #next = 0;
  #closed = false;

  private constructor(
    readonly path: string,
    private readonly infos: TensorInfo[],
    private readonly file: Deno.FsFile,
    private readonly done: { resolve: () => void; reject: (error: unknown) => void },
    private readonly completion: Promise<void>,
  ) {}

  /**
   * Starts writing `path`: validates the tensor headers, writes the header to a temporary file.
   * Data must then come in the same order as `tensors`.
   */
  static async create(
    path: string,
    tensors: TensorHeader[],
    options: { metadata?: Record<string, string> } = {},
  ): Promise<SafetensorsWriter> {
    const header = encodeHeader(tensors, options);
    const done = deferred();
    let completion!: Promise<void>;
    const file = await new Promise<Deno.FsFile>((resolve, reject) => {
      completion = writeFileAtomically(path, async (temporary) => {
        const file = await Deno.open(temporary, { write: true, createNew: true });
        try {
          writeAll(file, header.bytes);
          resolve(file);
          await done.promise;
        } finally {
          file.close();
        }
      });
      completion.catch(reject);
    }).catch((error) => {
      if (error instanceof Deno.errors.NotFound) {
        throw new PathError(`Cannot write "${path}": its directory does not exist`, {
          file: path,
          hint: "create the directory first",
        });
      }
      throw error;
    });
    return new SafetensorsWriter(path, header.tensors, file, done, completion);
  }

  /** Aborts and throws unless `name` is the next tensor (and `byteLength`, if given, its size). */
  async #expect(name: string, byteLength?: number): Promise<TensorInfo> {
    const expected = this.infos[this.#next];
    const sizeOk = byteLength === undefined || byteLength === expected?.byteLength;
    if (!this.#closed && expected && expected.name === name && sizeOk) return expected;
    const got = byteLength === undefined ? "" : `, got ${byteLength} bytes`;
    const error = new ShapeError(
      `Cannot write tensor "${name}" to "${this.path}": expected ${
        expected ? `"${expected.name}" with ${expected.byteLength} bytes` : "no more tensors"
      }${got}`,
      {
        file: this.path,
        tensor: name,
        expected: expected ? { name: expected.name, byteLength: expected.byteLength } : "finish()",
        actual: { name, byteLength },
      },
    );
    await this.abort();
    throw error;
  }

  async #writeOrAbort(data: Uint8Array): Promise<void> {
    try {
      writeAll(this.file, data);
    } catch (error) {
      await this.abort();
      throw error;
    }
  }

  /** Writes the whole data of the next tensor in header order. */
  async write(name: string, data: Uint8Array): Promise<void> {
    await this.#expect(name, data.byteLength);
    await this.#writeOrAbort(data);
    this.#next++;
  }

  /**
   * Writes the next tensor's data from chunks, in order (memory bounded by a chunk, not the tensor);
   * their sizes must add up to the tensor's byte length. Each chunk may be reused once written.
   *
   * @example
   * ```ts
   * await writer.writeChunks("w", source.readChunks("w"));
   * ```
   */
  async writeChunks(name: string, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
    const expected = await this.#expect(name);
    let total = 0;
    try {
      for await (const chunk of chunks) {
        total += chunk.byteLength;
        if (total > expected.byteLength) break;
        writeAll(this.file, chunk);
      }
    } catch (error) {
      await this.abort();
      throw error;
    }
    if (total !== expected.byteLength) {
      await this.abort();
      throw new ShapeError(
        `Cannot write tensor "${name}" to "${this.path}": its chunks hold ${
          total > expected.byteLength ? "more than" : "only"
        } ${total} bytes, expected ${expected.byteLength}`,
        { file: this.path, tensor: name, expected: expected.byteLength, actual: total },
      );
    }
    this.#next++;
  }

  /** Checks that every tensor was written, then renames the file into place. */
  async finish(): Promise<void> {
    if (this.#next !== this.infos.length) {
      const missing = this.infos[this.#next].name;
      await this.abort();
      throw new ShapeError(
        `Cannot finish "${this.path}": tensor "${missing}" and later ones were not written`,
        {
          file: this.path,
          tensor: missing,
          expected: this.infos.length,
          actual: this.#next,
        },
      );
    }
    this.#closed = true;
    this.done.resolve();
    await this.completion;
  }

  /** Stops writing and removes the temporary file. */
  async abort(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.done.reject(new Error(`aborted writing "${this.path}"`));
    await this.completion.catch(() => {});
  }
}

/**
 * Writes a whole safetensors file atomically from in-memory tensors.
 *
 * @example
 * ```ts
 * await writeSafetensors("a.safetensors", [{ name: "w", dtype: "U8", shape: [2], data: new Uint8Array([1, 2]) }]);
 * ```
 */
export async function writeSafetensors(
  path: string,
  tensors: (TensorHeader & { data: Uint8Array })[],
  options: { metadata?: Record<string, string> } = {},
): Promise<void> {
  const writer = await SafetensorsWriter.create(path, tensors, options);
  for (const t of tensors) await writer.write(t.name, t.data);
  await writer.finish();
}
