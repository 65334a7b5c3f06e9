// Lazy safetensors reader: opening parses only the header; tensors (or byte ranges of them) are read
// on demand with seek + read, so a 20 GB file costs only what is asked for.

import { FileFormatError, PathError, ShapeError } from "../errors.ts";
import { decodeToF32, type TypedTensor, typedView } from "./dtypes.ts";
import { checkHeaderLength, HEADER_LENGTH_BYTES, parseHeader, type TensorInfo } from "./header.ts";

/**
 * Chunk size of {@link SafetensorsFile.readChunks} when no buffer is given, and of export's streaming:
 * few enough system calls, small enough that a chunk's read, cast and write stay in the CPU cache.
 * `harpe export --dtype bf16` of 2 GB f32 on the 2-core VM, median of 6 alternating runs: 1.21 s with
 * 1 MiB and with 2 MiB chunks, 1.30 s with 4 MiB, 1.37 s with 256 KiB (8 MiB: 1.9 s). With the read and
 * cast on a worker (prefetch.ts), 256 KiB, 1 MiB and 4 MiB measured alike (0.47-0.66 s in-process).
 */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;

/**
 * Fills `into` from absolute byte `source.position` of `file`, or fails naming the file (and tensor) if
 * it ends first. Synchronous: the call fills `into` itself, where the asynchronous read goes through a
 * fresh buffer and a copy (measured 2x slower for large chunks).
 *
 * @example
 * ```ts
 * readExactly(file, new Uint8Array(8), { position: 0, path: "model.safetensors" });
 * ```
 */
export function readExactly(
  file: Deno.FsFile,
  into: Uint8Array,
  source: { position: number; path: string; tensor?: string },
): void {
  const { position } = source;
  file.seekSync(position, Deno.SeekMode.Start);
  for (let filled = 0; filled < into.byteLength;) {
    const n = file.readSync(into.subarray(filled));
    if (n === null) {
      const end = position + into.byteLength;
      const inside = source.tensor === undefined ? "" : ` inside tensor "${source.tensor}"`;
      throw new FileFormatError(
        `Invalid safetensors file "${source.path}": ended at byte ${
          position + filled
        }${inside}, expected ${end}`,
        {
          file: source.path,
          ...(source.tensor === undefined ? {} : { tensor: source.tensor }),
          expected: end,
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
 * only when asked for, with synchronous seek + read pairs (so reads never interleave).
 *
 * @example
 * ```ts
 * const file = await SafetensorsFile.open("model.safetensors");
 * const w = await file.readF32("model.embed_tokens.weight");
 * file.close();
 * ```
 */
export class SafetensorsFile {
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
      readExactly(file, prefix, { position: 0, path });
      const length = new DataView(prefix.buffer).getBigUint64(0, true);
      const headerLength = checkHeaderLength(length, { file: path, fileSize: size });
      const headerBytes = new Uint8Array(headerLength);
      readExactly(file, headerBytes, { position: HEADER_LENGTH_BYTES, path });
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
  readBytes(name: string, range?: { start: number; end: number }): Promise<Uint8Array> {
    return new Promise((resolve) => {
      const info = this.info(name);
      const { start, end } = this.#checkRange(name, info, range);
      resolve(this.readInto(name, new Uint8Array(end - start), { start }));
    });
  }

  /**
   * Fills `target` with the tensor's bytes from byte `options.start` (default 0) of its data and returns
   * it: a synchronous read into a buffer the caller reuses (streaming a tensor chunk by chunk).
   *
   * @example
   * ```ts
   * const chunk = file.readInto("lm_head.weight", new Uint8Array(1 << 20), { start: 4096 });
   * ```
   */
  readInto(name: string, target: Uint8Array, options: { start?: number } = {}): Uint8Array {
    const info = this.info(name);
    const start = options.start ?? 0;
    this.#checkRange(name, info, { start, end: start + target.byteLength });
    readExactly(this.file, target, { position: info.offset + start, path: this.path, tensor: name });
    return target;
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

  /**
   * Reads a tensor's bytes (or the byte range `range` of it) in order, in chunks of `buffer`'s size
   * (default: a new buffer of DEFAULT_CHUNK_BYTES). The buffer is reused for every chunk, so each
   * yielded view is valid only until the next one is requested; memory stays at one chunk.
   *
   * @example
   * ```ts
   * const buffer = new Uint8Array(8 << 20);
   * for (const chunk of file.readChunks("lm_head.weight", { buffer })) hash.update(chunk);
   * ```
   */
  *readChunks(
    name: string,
    options: { range?: { start: number; end: number }; buffer?: Uint8Array } = {},
  ): Generator<Uint8Array> {
    const info = this.info(name);
    const { start, end } = this.#checkRange(name, info, options.range);
    const buffer = options.buffer ?? new Uint8Array(Math.min(DEFAULT_CHUNK_BYTES, end - start));
    if (buffer.byteLength === 0 && end > start) {
      throw new RangeError(`Cannot read "${name}" in chunks of 0 bytes`);
    }
    for (let at = start; at < end; at += buffer.byteLength) {
      const chunk = buffer.subarray(0, Math.min(buffer.byteLength, end - at));
      readExactly(this.file, chunk, { position: info.offset + at, path: this.path, tensor: name });
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
