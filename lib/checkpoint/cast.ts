// Casting a tensor's raw little-endian bytes from its stored float dtype to an export dtype (F16/BF16
// rounded to nearest even). F32 <-> BF16, the common case, runs as a tight loop into a reused buffer.

import { decodeToF32, type DType, dtypeSize, encodeFromF32 } from "../safetensors/mod.ts";

/** The dtypes a checkpoint can be written in. */
export type WeightDType = "F32" | "BF16" | "F16";

/** Weight dtypes by their config.json names (v5 `dtype`, v4 `torch_dtype`). */
export const CONFIG_DTYPE_NAMES: Readonly<Record<WeightDType, string>> = {
  F32: "float32",
  BF16: "bfloat16",
  F16: "float16",
};

const F32_EXP_MASK = 0x7f800000;
const F32_ABS_MASK = 0x7fffffff;
/** The upper bf16 of two packed in 32 bits, left in place as f32 bits. */
const BF16_HIGH_MASK = 0xffff0000 | 0;
/** Set in a bf16 NaN so that truncating a signalling NaN's payload cannot turn it into infinity. */
const BF16_QUIET_BIT = 0x0040;

/** A view of `bytes` aligned for `size`-byte elements (copied only when misaligned). */
function aligned(bytes: Uint8Array, size: number): Uint8Array {
  return bytes.byteOffset % size === 0 ? bytes : bytes.slice();
}

/** f32 bits (as int32) -> bf16 bits, round to nearest even; NaN stays a quiet NaN. */
function bf16Bits(bits: number): number {
  return (bits & F32_ABS_MASK) > F32_EXP_MASK
    ? (bits >>> 16) | BF16_QUIET_BIT
    : ((bits + 0x7fff + ((bits >>> 16) & 1)) | 0) >>> 16;
}

/** f32 -> bf16 over whole arrays, two elements per 32-bit store (little-endian: the first in the low half). */
function f32ToBf16Into(source: Int32Array, target: Uint8Array): void {
  const pairs = source.length >> 1;
  const packed = new Int32Array(target.buffer, target.byteOffset, pairs);
  for (let i = 0; i < pairs; i++) packed[i] = bf16Bits(source[2 * i]) | (bf16Bits(source[2 * i + 1]) << 16);
  if (source.length % 2 === 1) {
    new Uint16Array(target.buffer, target.byteOffset, source.length)[source.length - 1] = bf16Bits(
      source.at(-1)!,
    );
  }
}

/** bf16 -> f32 (exact): each 16-bit pattern becomes the top half of a 32-bit one. */
function bf16ToF32Into(source: Uint16Array, target: Int32Array): void {
  const pairs = source.length >> 1;
  const packed = new Int32Array(source.buffer, source.byteOffset, pairs);
  for (let i = 0; i < pairs; i++) {
    const two = packed[i];
    target[2 * i] = two << 16;
    target[2 * i + 1] = two & BF16_HIGH_MASK;
  }
  if (source.length % 2 === 1) target[source.length - 1] = source[source.length - 1] << 16;
}

/** Bytes `n` bytes of `from` become in `to`. */
export function castByteLength(n: number, from: DType, to: DType): number {
  return (n / dtypeSize(from)) * dtypeSize(to);
}

/**
 * Converts tensor bytes (or a whole-element chunk of them) stored as `from` into `to`. Same dtype: returns
 * `bytes` itself. F32 <-> BF16 are written into `target` when given (it must hold the result) and a view
 * of it is returned; other pairs go through f32 into a new array.
 *
 * @example
 * ```ts
 * castBytes(new Uint8Array(new Float32Array([1]).buffer), "F32", "BF16"); // Uint8Array [0x80, 0x3f]
 * ```
 */
export function castBytes(bytes: Uint8Array, from: DType, to: WeightDType, target?: Uint8Array): Uint8Array {
  if (from === to) return bytes;
  const length = castByteLength(bytes.byteLength, from, to);
  const fits = target !== undefined && target.byteLength >= length && target.byteOffset % 4 === 0;
  const out = fits ? target.subarray(0, length) : new Uint8Array(length);
  if (from === "F32" && to === "BF16") {
    const source = aligned(bytes, 4);
    f32ToBf16Into(new Int32Array(source.buffer, source.byteOffset, source.byteLength / 4), out);
    return out;
  }
  if (from === "BF16" && to === "F32") {
    const source = aligned(bytes, 4);
    bf16ToF32Into(
      new Uint16Array(source.buffer, source.byteOffset, source.byteLength / 2),
      new Int32Array(out.buffer, out.byteOffset, length / 4),
    );
    return out;
  }
  return encodeFromF32(decodeToF32(bytes, from), to);
}
