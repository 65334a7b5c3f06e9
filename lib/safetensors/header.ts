// The safetensors header: an 8-byte little-endian length, then a JSON object naming every tensor's
// dtype, shape and byte range. Parsed and validated as strictly as the reference Rust crate.

import { ConfigError, type ErrorDetail, FileFormatError, ShapeError, UnsupportedError } from "../errors.ts";
import { type DType, DTYPES, dtypeSize, isDType } from "./dtypes.ts";
import { scanHeader } from "./header_scan.ts";

/** Bytes of the little-endian u64 header length at the start of every safetensors file. */
export const HEADER_LENGTH_BYTES = 8;
/** Largest header accepted (the Rust crate's limit), so a corrupt length cannot exhaust memory. */
export const MAX_HEADER_BYTES = 100_000_000;
/** Headers are padded with spaces so that the data starts at a multiple of this. */
export const HEADER_ALIGNMENT = 8;
/** The reserved top-level key holding the string-to-string metadata map. */
export const METADATA_KEY = "__metadata__";

/** Where one tensor lives in a safetensors file. */
export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** absolute byte offset of the tensor's data in the file */
  offset: number;
  byteLength: number;
}

/** A tensor as the writer is told about it before its data arrives. */
export interface TensorHeader {
  name: string;
  dtype: DType;
  shape: number[];
}

/** A validated header. */
export interface ParsedHeader {
  metadata: Record<string, string>;
  /** In file (offset) order. */
  tensors: TensorInfo[];
}

const CORRUPT_HINT = "the file is damaged or not safetensors; re-download or re-export it";

function fail(file: string, message: string, detail: Omit<ErrorDetail, "file"> = {}): never {
  throw new FileFormatError(`Invalid safetensors file "${file}": ${message}`, {
    file,
    hint: CORRUPT_HINT,
    ...detail,
  });
}

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/**
 * Checks the 8-byte header length against the file size and MAX_HEADER_BYTES; returns it as a number.
 *
 * @example
 * ```ts
 * checkHeaderLength(16n, { file: "a.safetensors", fileSize: 24 }); // 16
 * ```
 */
export function checkHeaderLength(length: bigint, options: { file: string; fileSize: number }): number {
  const { file, fileSize } = options;
  if (length > BigInt(MAX_HEADER_BYTES)) {
    fail(file, `header length is ${length} bytes, more than the maximum ${MAX_HEADER_BYTES}`, {
      expected: `<= ${MAX_HEADER_BYTES}`,
      actual: length.toString(),
    });
  }
  const n = Number(length);
  if (n < 2) {
    fail(file, `header length is ${n} bytes, too short for a JSON object`, { expected: ">= 2", actual: n });
  }
  if (HEADER_LENGTH_BYTES + n > fileSize) {
    fail(
      file,
      `header length is ${n} bytes but the file has only ${fileSize - HEADER_LENGTH_BYTES} after it`,
      {
        expected: `<= ${fileSize - HEADER_LENGTH_BYTES}`,
        actual: n,
      },
    );
  }
  return n;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseMetadata(value: unknown, file: string): Record<string, string> {
  if (!isPlainObject(value)) {
    fail(file, `"${METADATA_KEY}" must be an object of strings, found ${show(value)}`, {
      tensor: METADATA_KEY,
      expected: "object",
      actual: show(value),
    });
  }
  const metadata: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== "string") {
      fail(file, `"${METADATA_KEY}" entry "${key}" must be a string, found ${show(v)}`, {
        tensor: METADATA_KEY,
        field: key,
        expected: "string",
        actual: show(v),
      });
    }
    metadata[key] = v;
  }
  return metadata;
}

function checkIndexList(
  value: unknown,
  what: { file: string; tensor: string; field: string; length?: number },
): number[] {
  const { file, tensor, field, length } = what;
  const ok = Array.isArray(value) && (length === undefined || value.length === length) &&
    value.every((v) => Number.isSafeInteger(v) && v >= 0);
  if (!ok) {
    const expected = length === undefined
      ? "an array of non-negative integers"
      : `an array of ${length} non-negative integers`;
    fail(file, `tensor "${tensor}" has ${field} ${show(value)}, expected ${expected}`, {
      tensor,
      field,
      expected,
      actual: show(value),
    });
  }
  return value as number[];
}

interface RawEntry {
  name: string;
  dtype: DType;
  shape: number[];
  start: number;
  end: number;
}

function parseEntry(name: string, value: unknown, file: string): RawEntry {
  if (!isPlainObject(value)) {
    fail(
      file,
      `tensor "${name}" must be an object with dtype, shape and data_offsets, found ${show(value)}`,
      {
        tensor: name,
        expected: "object",
        actual: show(value),
      },
    );
  }
  if (!isDType(value.dtype)) {
    fail(
      file,
      `tensor "${name}" has unknown dtype ${show(value.dtype)}, expected one of ${DTYPES.join(", ")}`,
      {
        tensor: name,
        field: "dtype",
        expected: DTYPES.join("|"),
        actual: show(value.dtype),
      },
    );
  }
  const shape = checkIndexList(value.shape, { file, tensor: name, field: "shape" });
  const [start, end] = checkIndexList(value.data_offsets, {
    file,
    tensor: name,
    field: "data_offsets",
    length: 2,
  });
  if (end < start) {
    fail(file, `tensor "${name}" has data_offsets [${start}, ${end}] that end before they start`, {
      tensor: name,
      field: "data_offsets",
      expected: `end >= ${start}`,
      actual: end,
    });
  }
  return { name, dtype: value.dtype, shape: [...shape], start, end };
}

/**
 * Bytes of `shape` x `dtype`, or undefined when that exceeds Number.MAX_SAFE_INTEGER.
 *
 * @example
 * ```ts
 * tensorByteLength([2, 3], "BF16"); // 12
 * ```
 */
export function tensorByteLength(shape: number[], dtype: DType): number | undefined {
  if (shape.includes(0)) return 0;
  let bytes = dtypeSize(dtype);
  for (const dim of shape) {
    bytes *= dim;
    if (bytes > Number.MAX_SAFE_INTEGER) return undefined;
  }
  return bytes;
}

/**
 * Parses and validates a header: UTF-8 JSON object, no duplicate keys, known dtypes, shapes matching
 * byte ranges, ranges contiguous from 0 and ending exactly at the end of the data.
 *
 * @example
 * ```ts
 * const json = '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
 * parseHeader(new TextEncoder().encode(json), { file: "a.safetensors", dataLength: 8 });
 * ```
 */
export function parseHeader(bytes: Uint8Array, options: { file: string; dataLength: number }): ParsedHeader {
  const { file, dataLength } = options;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    fail(file, "header is not valid UTF-8", { expected: "UTF-8 JSON", actual: "invalid UTF-8" });
  }
  if (!text.startsWith("{")) {
    fail(file, `header must start with "{", found ${show(text.slice(0, 16))}`, {
      expected: "{",
      actual: show(text.slice(0, 16)),
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    fail(file, `header is not valid JSON (${(error as Error).message})`, {
      expected: "JSON object",
      actual: "invalid JSON",
    });
  }
  if (!isPlainObject(json)) {
    fail(file, "header must be a JSON object", { expected: "object", actual: show(json) });
  }
  const issue = scanHeader(text);
  if (issue?.kind === "duplicate") {
    const { tensor, key } = issue;
    const message = tensor === key
      ? `tensor "${tensor}" is listed twice`
      : `key "${key}" appears twice in "${tensor}"`;
    fail(file, message, { tensor, field: key, expected: "unique names", actual: `"${key}" twice` });
  }
  if (issue?.kind === "non-integer") {
    const { tensor, field, literal } = issue;
    fail(file, `tensor "${tensor}" has ${field} entry ${literal}, expected a plain non-negative integer`, {
      tensor,
      field,
      expected: "a non-negative integer literal",
      actual: literal,
    });
  }

  let metadata: Record<string, string> = {};
  const entries: RawEntry[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === METADATA_KEY) metadata = parseMetadata(value, file);
    else entries.push(parseEntry(name, value, file));
  }
  entries.sort((a, b) => a.start - b.start || a.end - b.end);

  const dataStart = HEADER_LENGTH_BYTES + bytes.byteLength;
  const tensors: TensorInfo[] = [];
  let expectedStart = 0;
  for (const entry of entries) {
    const { name, dtype, shape, start, end } = entry;
    if (start !== expectedStart) {
      const what = start > expectedStart ? "leaves a gap before it" : "overlaps the previous tensor";
      fail(
        file,
        `tensor "${name}" starts at byte ${start} of the data and ${what}, expected ${expectedStart}`,
        {
          tensor: name,
          field: "data_offsets",
          expected: expectedStart,
          actual: start,
        },
      );
    }
    const byteLength = tensorByteLength(shape, dtype);
    if (byteLength === undefined) {
      fail(file, `tensor "${name}" shape [${shape.join(", ")}] x ${dtype} overflows the addressable size`, {
        tensor: name,
        field: "shape",
        expected: `<= ${Number.MAX_SAFE_INTEGER} bytes`,
        actual: `[${shape.join(", ")}]`,
      });
    }
    if (byteLength !== end - start) {
      fail(
        file,
        `tensor "${name}" byte length is ${end - start}, expected ${byteLength} for shape [${
          shape.join(", ")
        }] x ${dtype}`,
        { tensor: name, field: "data_offsets", expected: byteLength, actual: end - start },
      );
    }
    tensors.push({ name, dtype, shape, offset: dataStart + start, byteLength });
    expectedStart = end;
  }
  if (expectedStart !== dataLength) {
    const last = entries[entries.length - 1]?.name;
    const where = last === undefined ? "tensor data" : `tensor "${last}", the last in the file,`;
    fail(file, `${where} ends at byte ${expectedStart} but the file holds ${dataLength} bytes of data`, {
      ...(last === undefined ? {} : { tensor: last }),
      expected: dataLength,
      actual: expectedStart,
    });
  }
  return { metadata, tensors };
}

/** Checks what a writer is asked to write: known dtypes, valid shapes, unique names, string metadata. */
function validateHeaders(tensors: TensorHeader[], metadata: Record<string, string>): void {
  const names = new Set<string>();
  for (const { name, dtype, shape } of tensors) {
    if (typeof name !== "string" || name === METADATA_KEY || names.has(name)) {
      throw new ConfigError(`Cannot write tensor ${show(name)}: the name is reserved or used twice`, {
        tensor: String(name),
        expected: "unique tensor names other than __metadata__",
        actual: show(name),
      });
    }
    names.add(name);
    if (!isDType(dtype)) {
      throw new UnsupportedError(`Cannot write tensor "${name}": unknown dtype ${show(dtype)}`, {
        tensor: name,
        expected: DTYPES.join("|"),
        actual: show(dtype),
      });
    }
    const shapeOk = Array.isArray(shape) && shape.every((d) => Number.isSafeInteger(d) && d >= 0);
    if (!shapeOk || tensorByteLength(shape, dtype) === undefined) {
      throw new ShapeError(`Cannot write tensor "${name}": invalid shape ${show(shape)}`, {
        tensor: name,
        expected: "non-negative integers with a total size below 2^53 bytes",
        actual: show(shape),
      });
    }
  }
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== "string") {
      throw new ConfigError(`Cannot write metadata "${key}": value ${show(value)} is not a string`, {
        field: key,
        expected: "string",
        actual: show(value),
      });
    }
  }
}

/**
 * Encodes a header for `tensors` laid out in the given order, padded with spaces so that the data
 * starts at a multiple of HEADER_ALIGNMENT. Returns the 8-byte length + JSON, and each tensor's info.
 *
 * @example
 * ```ts
 * const { bytes } = encodeHeader([{ name: "w", dtype: "F32", shape: [2] }], { metadata: { format: "pt" } });
 * ```
 */
export function encodeHeader(
  tensors: TensorHeader[],
  options: { metadata?: Record<string, string> } = {},
): { bytes: Uint8Array; tensors: TensorInfo[] } {
  validateHeaders(tensors, options.metadata ?? {});
  const json: Record<string, unknown> = {};
  if (options.metadata && Object.keys(options.metadata).length > 0) json[METADATA_KEY] = options.metadata;
  const ranges: [number, number][] = [];
  let offset = 0;
  for (const t of tensors) {
    const length = tensorByteLength(t.shape, t.dtype) as number;
    ranges.push([offset, offset + length]);
    json[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + length] };
    offset += length;
  }
  const body = new TextEncoder().encode(JSON.stringify(json));
  const padded = Math.ceil((HEADER_LENGTH_BYTES + body.byteLength) / HEADER_ALIGNMENT) * HEADER_ALIGNMENT -
    HEADER_LENGTH_BYTES;
  const bytes = new Uint8Array(HEADER_LENGTH_BYTES + padded).fill(0x20);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(padded), true);
  bytes.set(body, HEADER_LENGTH_BYTES);
  const dataStart = HEADER_LENGTH_BYTES + padded;
  return {
    bytes,
    tensors: tensors.map((t, i) => ({
      name: t.name,
      dtype: t.dtype,
      shape: [...t.shape],
      offset: dataStart + ranges[i][0],
      byteLength: ranges[i][1] - ranges[i][0],
    })),
  };
}
