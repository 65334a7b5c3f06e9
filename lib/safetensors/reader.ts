// Lazy safetensors reader: opening parses only the header; tensors (or byte ranges of them) are read
// on demand with seek + read, so a 20 GB file costs only what is asked for.

import { FileFormatError, PathError, ShapeError } from "../errors.ts";
import { decodeToF32, type TypedTensor, typedView } from "./dtypes.ts";
import { checkHeaderLength, HEADER_LENGTH_BYTES, parseHeader, type TensorInfo } from "./header.ts";

/** Chunk size of {@link SafetensorsFile.readChunks} when no buffer is given. */
export const DEFAULT_CHUNK_BYTES = 8 * 2 ** 20;

/** Reads exactly `into.byteLength` bytes at `position`, or fails naming the file if it is shorter. */
async function readExactly(
  file: Deno.FsFile,
  position: number,
  into: Uint8Array,
  path: string,
): Promise<void> {
  await file.seek(position, Deno.SeekMode.Start);
  let filled = 0;
  while (filled < into.byteLength) {
    const n = await file.read(into.subarray(filled));
    if (n === null) {
      throw new FileFormatError(
        `Invalid safetensors file "${path}": ended at byte ${position + filled}, expected ${
          position + into.byteLength
        }`,
        {
          file: path,
          expected: position + into.byteLength,
          actual: position + filled,
          hint: "the file was truncated",
        },
      );
    }
    filled += n;
  }
}

async function openFile(path: string): Promise<Deno.FsFile> {
  try {
    return await Deno.open(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new PathError(`Cannot open safetensors file "${path}": it does not exist`, {
        file: path,
        hint: "check the path",
      });
    }
    throw error;
  }
}

/**
 * One safetensors file, opened lazily: the header is parsed and validated on open; tensor data is read
 * only when asked for. Reads on one file are serialized (they share a file position).
 *
 * @example
 * ```ts
 * const file = await SafetensorsFile.open("model.safetensors");
 * const w = await file.readF32("model.embed_tokens.weight");
 * file.close();
 * ```
 */
export class SafetensorsFile {
  /** Pending reads, chained so that seek + read pairs never interleave. */
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly path: string,
    readonly metadata: Record<string, string>,
    readonly tensors: Map<string, TensorInfo>,
    private readonly file: Deno.FsFile,
  ) {}

  /** Opens `path` and validates its header; throws FileFormatError naming the file and tensor. */
  static async open(path: string): Promise<SafetensorsFile> {
    const file = await openFile(path);
    try {
      const { size, isFile } = await file.stat();
      if (!isFile) {
        throw new PathError(`Cannot open safetensors file "${path}": it is not a regular file`, {
          file: path,
          hint: "give the path of a .safetensors file",
        });
      }
      if (size < HEADER_LENGTH_BYTES) {
        throw new FileFormatError(
          `Invalid safetensors file "${path}": it has ${size} bytes, fewer than the ${HEADER_LENGTH_BYTES}-byte header length`,
          {
            file: path,
            expected: `>= ${HEADER_LENGTH_BYTES} bytes`,
            actual: size,
            hint: "the file is truncated",
          },
        );
      }
      const prefix = new Uint8Array(HEADER_LENGTH_BYTES);
      await readExactly(file, 0, prefix, path);
      const length = new DataView(prefix.buffer).getBigUint64(0, true);
      const headerLength = checkHeaderLength(length, { file: path, fileSize: size });
      const headerBytes = new Uint8Array(headerLength);
      await readExactly(file, HEADER_LENGTH_BYTES, headerBytes, path);
      const dataLength = size - HEADER_LENGTH_BYTES - headerLength;
      const header = parseHeader(headerBytes, { file: path, dataLength });
      const tensors = new Map(header.tensors.map((t) => [t.name, t]));
      return new SafetensorsFile(path, header.metadata, tensors, file);
    } catch (error) {
      file.close();
      throw error;
    }
  }

  /** The tensor's dtype, shape and byte range; throws FileFormatError when the file lacks it. */
  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) {
      const some = [...this.tensors.keys()].slice(0, 3).map((n) => `"${n}"`).join(", ");
      throw new FileFormatError(`Tensor "${name}" is not in safetensors file "${this.path}"`, {
        file: this.path,
        tensor: name,
        expected: "a tensor of that name",
        actual: "missing",
        hint: `the file holds ${this.tensors.size} tensors${some ? `, e.g. ${some}` : ""}`,
      });
    }
    return info;
  }

  /**
   * Raw little-endian bytes of a tensor, or of the byte range [start, end) within it.
   *
   * @example
   * ```ts
   * const firstRow = await file.readBytes("lm_head.weight", { start: 0, end: 4096 * 2 });
   * ```
   */
  async readBytes(name: string, range?: { start: number; end: number }): Promise<Uint8Array> {
    const info = this.info(name);
    const { start, end } = this.#checkRange(name, info, range);
    const into = new Uint8Array(end - start);
    await this.#read(info.offset + start, into);
    return into;
  }

  #checkRange(
    name: string,
    info: TensorInfo,
    range?: { start: number; end: number },
  ): { start: number; end: number } {
    const start = range?.start ?? 0;
    const end = range?.end ?? info.byteLength;
    if (
      !Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start ||
      end > info.byteLength
    ) {
      throw new ShapeError(`Cannot read bytes [${start}, ${end}) of tensor "${name}" in "${this.path}"`, {
        file: this.path,
        tensor: name,
        expected: `0 <= start <= end <= ${info.byteLength}`,
        actual: `[${start}, ${end})`,
      });
    }
    return { start, end };
  }

  /** Reads `into.byteLength` bytes at absolute `position`, after every read queued before it. */
  #read(position: number, into: Uint8Array): Promise<void> {
    const read = this.#queue.then(() => readExactly(this.file, position, into, this.path));
    this.#queue = read.catch(() => {});
    return read;
  }

  /**
   * Reads a tensor's bytes (or the byte range `range` of it) in order, in chunks of `buffer`'s size
   * (default: a new buffer of DEFAULT_CHUNK_BYTES). The buffer is reused for every chunk, so each
   * yielded view is valid only until the next one is requested; memory stays at one chunk.
   *
   * @example
   * ```ts
   * const buffer = new Uint8Array(8 << 20);
   * for await (const chunk of file.readChunks("lm_head.weight", { buffer })) hash.update(chunk);
   * ```
   */
  async *readChunks(
    name: string,
    options: { range?: { start: number; end: number }; buffer?: Uint8Array } = {},
  ): AsyncGenerator<Uint8Array> {
    const info = this.info(name);
    const { start, end } = this.#checkRange(name, info, options.range);
    const buffer = options.buffer ?? new Uint8Array(Math.min(DEFAULT_CHUNK_BYTES, end - start));
    if (buffer.byteLength === 0 && end > start) {
      throw new RangeError(`Cannot read "${name}" in chunks of 0 bytes`);
    }
    for (let at = start; at < end; at += buffer.byteLength) {
      const chunk = buffer.subarray(0, Math.min(buffer.byteLength, end - at));
      await this.#read(info.offset + at, chunk);
      yield chunk;
    }
  }

  /** The tensor decoded to f32 (any float or integer dtype). */
  async readF32(name: string): Promise<Float32Array> {
    const { dtype } = this.info(name);
    const bytes = await this.readBytes(name);
    return dtype === "F32"
      ? new Float32Array(bytes.buffer, 0, bytes.byteLength / 4)
      : decodeToF32(bytes, dtype);
  }

  /** The tensor in its native element type (F16/BF16 as Uint16Array bits, F8 as Uint8Array). */
  async readTyped(name: string): Promise<TypedTensor> {
    const { dtype } = this.info(name);
    return typedView(await this.readBytes(name), dtype);
  }

  /** Closes the file; later reads fail. */
  close(): void {
    this.file.close();
  }
}
