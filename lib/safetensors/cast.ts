// Casting raw little-endian tensor bytes from one dtype to a float dtype, a whole tensor or one chunk
// of it at a time, through the dtype conversions of dtypes.ts into a reused output buffer.

import { type Bf16Kernel, bf16Kernel } from "./bf16_simd.ts";
import {
  bf16ToF32,
  decodeToF32,
  type DType,
  dtypeSize,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  type FloatDType,
} from "./dtypes.ts";

/** The dtypes of a cast: stored as `from`, wanted as `to`. */
export interface CastDTypes {
  from: DType;
  to: FloatDType;
}

/** `bytes` when its offset suits `size`-byte elements, else an aligned copy. */
function aligned(bytes: Uint8Array, size: number): Uint8Array {
  return bytes.byteOffset % size === 0 ? bytes : bytes.slice();
}

function u16(bytes: Uint8Array): Uint16Array {
  return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
}

function f32(bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/** The bytes decoded to f32 values, into `out` when given (F16/BF16 only; others decode anew). */
function toF32(bytes: Uint8Array, from: DType, out?: Float32Array): Float32Array {
  if (from === "F32") return f32(aligned(bytes, 4));
  if (from === "BF16") return bf16ToF32(u16(aligned(bytes, 2)), out);
  if (from === "F16") return f16ToF32(u16(aligned(bytes, 2)), out);
  return decodeToF32(bytes, from);
}

/** F32 -> BF16 inputs from this size up go through the SIMD kernel; smaller ones through the JS loop. */
const SIMD_MIN_BYTES = 4096;
/** Bytes of f32 the kernel takes at a time (copied in, cast, copied out). */
const SIMD_PIECE_BYTES = 256 * 1024;
let kernel: Bf16Kernel | undefined;

/** f32 bytes (any alignment) rounded to bf16 into `out` with the SIMD kernel, piece by piece. */
function f32BytesToBf16(bytes: Uint8Array, out: Uint8Array): void {
  kernel ??= bf16Kernel(SIMD_PIECE_BYTES);
  for (let at = 0; at < bytes.byteLength; at += SIMD_PIECE_BYTES) {
    const piece = bytes.subarray(at, Math.min(at + SIMD_PIECE_BYTES, bytes.byteLength));
    kernel.input.set(piece);
    out.set(kernel.cast(piece.byteLength), at / 2);
  }
}

/**
 * Bytes that `n` bytes of `from` become as `to`.
 *
 * @example
 * ```ts
 * castByteLength(12, { from: "F32", to: "BF16" }); // 6
 * ```
 */
export function castByteLength(n: number, dtypes: { from: DType; to: DType }): number {
  return (n / dtypeSize(dtypes.from)) * dtypeSize(dtypes.to);
}

/**
 * Converts tensor bytes (or a whole-element chunk of them) stored as `from` into `to` (F16/BF16 rounded
 * to nearest even, NaN kept). The same dtype returns `bytes` itself. The result is written into
 * `options.out` (and a view of it returned) when that holds it and is aligned for `to`, else into a new
 * array: streaming a tensor in chunks then reuses one buffer.
 *
 * @example
 * ```ts
 * castBytes(new Uint8Array(new Float32Array([1]).buffer), { from: "F32", to: "BF16" }); // Uint8Array [0x80, 0x3f]
 * ```
 */
export function castBytes(
  bytes: Uint8Array,
  dtypes: CastDTypes,
  options: { out?: Uint8Array } = {},
): Uint8Array {
  const { from, to } = dtypes;
  if (from === to) return bytes;
  const length = castByteLength(bytes.byteLength, dtypes);
  const given = options.out;
  const fits = given !== undefined && given.byteLength >= length && given.byteOffset % dtypeSize(to) === 0;
  const out = fits ? given.subarray(0, length) : new Uint8Array(length);
  if (to === "F32") {
    const target = f32(out);
    const values = toF32(bytes, from, target);
    if (values !== target) target.set(values);
    return out;
  }
  if (from === "F32" && to === "BF16" && bytes.byteLength >= SIMD_MIN_BYTES) {
    f32BytesToBf16(bytes, out);
    return out;
  }
  const values = toF32(bytes, from);
  if (to === "BF16") f32ToBf16(values, u16(out));
  else if (to === "F16") f32ToF16(values, u16(out));
  else new Float64Array(out.buffer, out.byteOffset, values.length).set(values);
  return out;
}
