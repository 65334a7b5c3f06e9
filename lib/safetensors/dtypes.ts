// Safetensors element types: their sizes, and conversions between f32 and the 16-bit and 8-bit float
// formats (round-to-nearest-even, NaN stays NaN), all little-endian.

/** The element types of a safetensors file that harpe reads (and, except F8, writes). */
export type DType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U8"
  | "BOOL"
  | "U16"
  | "U32"
  | "U64"
  | "F8_E4M3"
  | "F8_E5M2";

const DTYPE_SIZES: Readonly<Record<DType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  U16: 2,
  U32: 4,
  U64: 8,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

/** The float dtypes that f32 values can be encoded to (see {@link encodeFromF32}). */
export type FloatDType = "F64" | "F32" | "F16" | "BF16";

/** Every supported dtype name, as written in a safetensors header. */
export const DTYPES: readonly DType[] = Object.keys(DTYPE_SIZES) as DType[];

/**
 * Bytes per element of `dtype`.
 *
 * @example
 * ```ts
 * dtypeSize("BF16"); // 2
 * ```
 */
export function dtypeSize(dtype: DType): number {
  return DTYPE_SIZES[dtype];
}

/** True when `name` is a dtype this module knows (header validation uses it). */
export function isDType(name: unknown): name is DType {
  return typeof name === "string" && Object.hasOwn(DTYPE_SIZES, name);
}

/** A tensor's elements in their native JavaScript typed array (F16/BF16 as raw bits, F8 as bytes). */
export type TypedTensor =
  | Float64Array
  | Float32Array
  | Int32Array
  | BigInt64Array
  | BigUint64Array
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | Int16Array
  | Int8Array;

const F32_EXP_MASK = 0x7f800000;
const F32_ABS_MASK = 0x7fffffff;
const F32_MANT_MASK = 0x007fffff;
const F16_EXP_MASK = 0x7c00;
const F16_MANT_MASK = 0x03ff;
/** Exponent bias difference between f32 (127) and f16 (15). */
const F32_F16_BIAS_DELTA = 112;
const BF16_QUIET_BIT = 0x0040;
const F16_QUIET_BIT = 0x0200;

/**
 * Rounds an f32 bit pattern (as a signed int32) to bf16 bits with round-to-nearest-even; NaN stays a
 * (quiet) NaN, the quiet bit set so that truncating a signalling NaN's payload cannot make it infinity.
 * Signed bits keep every intermediate a small integer, which V8 compiles to integer math.
 */
function bf16FromBits(bits: number): number {
  return (bits & F32_ABS_MASK) > F32_EXP_MASK
    ? (bits >>> 16) | BF16_QUIET_BIT
    : ((bits + 0x7fff + ((bits >>> 16) & 1)) | 0) >>> 16;
}

/** Rounds f32 bit patterns to f16 bits with round-to-nearest-even; NaN stays a (quiet) NaN. */
function f16FromBits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & F32_MANT_MASK;
  if (exp === 0xff) return sign | F16_EXP_MASK | (mant !== 0 ? F16_QUIET_BIT | (mant >>> 13) : 0);
  const e = exp - F32_F16_BIAS_DELTA;
  if (e >= 31) return sign | F16_EXP_MASK;
  if (e <= 0) {
    // f16 subnormal (or zero): value / 2^-24 = (1.mant) * 2^(e - 14) with e in [-10, 0].
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1) !== 0)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) !== 0)) half++;
  return sign | half;
}

/** Widens f16 bits to f32 bits (exact). */
function f32BitsFromF16(half: number): number {
  const sign = (half & 0x8000) << 16;
  const exp = (half & F16_EXP_MASK) >>> 10;
  let mant = half & F16_MANT_MASK;
  if (exp === 0x1f) return (sign | F32_EXP_MASK | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + F32_F16_BIAS_DELTA) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal f16: normalize the mantissa into an f32 normal.
  let e = 1;
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e--;
  }
  return (sign | ((e + F32_F16_BIAS_DELTA) << 23) | ((mant & F16_MANT_MASK) << 13)) >>> 0;
}

let f16Table: Float32Array | undefined;

/** f32 values of all 65536 f16 bit patterns, built on first use. */
function f16ToF32Table(): Float32Array {
  if (!f16Table) {
    const bits = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) bits[h] = f32BitsFromF16(h);
    f16Table = new Float32Array(bits.buffer);
  }
  return f16Table;
}

/** An output array: `out` when given (it must be at least `length` long), else a new one. */
function output<T extends Uint16Array | Float32Array>(
  out: T | undefined,
  length: number,
  make: (n: number) => T,
): T {
  if (out === undefined) return make(length);
  if (out.length < length) {
    throw new RangeError(`Output array holds ${out.length} elements, ${length} needed`);
  }
  return out;
}

/**
 * Rounds f32 values to bf16 (round-to-nearest-even), returning the bf16 bit patterns. Pass `out` to
 * reuse an array (streaming in chunks), else a new one is made.
 *
 * @example
 * ```ts
 * f32ToBf16(new Float32Array([1, -2.5])); // Uint16Array [0x3f80, 0xc020]
 * ```
 */
export function f32ToBf16(values: Float32Array, out?: Uint16Array): Uint16Array {
  const bits = new Int32Array(values.buffer, values.byteOffset, values.length);
  out = output(out, values.length, (n) => new Uint16Array(n));
  let i = 0;
  if (out.byteOffset % 4 === 0) {
    // Two results per 32-bit store (little-endian: the first in the low half), measured 2x faster than
    // one 16-bit store each (V8, 256 KiB chunks).
    const n = bits.length >> 1;
    const pairs = new Int32Array(out.buffer, out.byteOffset, n);
    for (let p = 0; p < n; p++) pairs[p] = bf16FromBits(bits[2 * p]) | (bf16FromBits(bits[2 * p + 1]) << 16);
    i = 2 * n;
  }
  for (; i < bits.length; i++) out[i] = bf16FromBits(bits[i]);
  return out;
}

/**
 * Widens bf16 bit patterns to f32 (exact). Pass `out` to reuse an array.
 *
 * @example
 * ```ts
 * bf16ToF32(new Uint16Array([0x3f80])); // Float32Array [1]
 * ```
 */
export function bf16ToF32(bits: Uint16Array, out?: Float32Array): Float32Array {
  out = output(out, bits.length, (n) => new Float32Array(n));
  const words = new Int32Array(out.buffer, out.byteOffset, bits.length);
  for (let i = 0; i < bits.length; i++) words[i] = bits[i] << 16;
  return out;
}

/**
 * Rounds f32 values to f16 (round-to-nearest-even, overflow to infinity), returning the f16 bits. Pass
 * `out` to reuse an array.
 *
 * @example
 * ```ts
 * f32ToF16(new Float32Array([1, 65520])); // Uint16Array [0x3c00, 0x7c00]
 * ```
 */
export function f32ToF16(values: Float32Array, out?: Uint16Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  out = output(out, values.length, (n) => new Uint16Array(n));
  for (let i = 0; i < bits.length; i++) out[i] = f16FromBits(bits[i]);
  return out;
}

/**
 * Widens f16 bit patterns to f32 (exact). Pass `out` to reuse an array.
 *
 * @example
 * ```ts
 * f16ToF32(new Uint16Array([0x3c00])); // Float32Array [1]
 * ```
 */
export function f16ToF32(bits: Uint16Array, out?: Float32Array): Float32Array {
  // Copied as 32-bit words: a copy through JS numbers may quiet signalling-NaN payloads, and whether it
  // does depends on V8's compilation tier (seen as a rare mismatch between two identical calls).
  const table = new Uint32Array(f16ToF32Table().buffer);
  out = output(out, bits.length, (n) => new Float32Array(n));
  const words = new Uint32Array(out.buffer, out.byteOffset, bits.length);
  for (let i = 0; i < bits.length; i++) words[i] = table[bits[i]];
  return out;
}

/** f32 value of an F8_E4M3 (E4M3FN: bias 7, no infinities, S.1111.111 is NaN) byte. */
function e4m3ToNumber(byte: number): number {
  const sign = byte & 0x80 ? -1 : 1;
  const exp = (byte >>> 3) & 0xf;
  const mant = byte & 0x7;
  if (exp === 0xf && mant === 0x7) return NaN;
  if (exp === 0) return sign * mant * 2 ** -9;
  return sign * (1 + mant / 8) * 2 ** (exp - 7);
}

let e4m3Table: Float32Array | undefined;
let e5m2Table: Float32Array | undefined;

function f8Table(dtype: "F8_E4M3" | "F8_E5M2"): Float32Array {
  if (dtype === "F8_E4M3") {
    e4m3Table ??= Float32Array.from({ length: 256 }, (_, b) => e4m3ToNumber(b));
    return e4m3Table;
  }
  // E5M2 is the upper byte of an f16.
  e5m2Table ??= Float32Array.from({ length: 256 }, (_, b) => f16ToF32Table()[b << 8]);
  return e5m2Table;
}

/**
 * Views little-endian tensor bytes as the dtype's native typed array (F16/BF16 as Uint16Array bits,
 * F8 and BOOL as bytes). Copies only when `bytes` is not aligned for the element size.
 *
 * @example
 * ```ts
 * typedView(new Uint8Array([0, 0, 128, 63]), "F32"); // Float32Array [1]
 * ```
 */
export function typedView(bytes: Uint8Array, dtype: DType): TypedTensor {
  const size = dtypeSize(dtype);
  const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  const { buffer, byteOffset } = aligned;
  const n = aligned.byteLength / size;
  switch (dtype) {
    case "F64":
      return new Float64Array(buffer, byteOffset, n);
    case "F32":
      return new Float32Array(buffer, byteOffset, n);
    case "F16":
    case "BF16":
    case "U16":
      return new Uint16Array(buffer, byteOffset, n);
    case "I64":
      return new BigInt64Array(buffer, byteOffset, n);
    case "U64":
      return new BigUint64Array(buffer, byteOffset, n);
    case "I32":
      return new Int32Array(buffer, byteOffset, n);
    case "U32":
      return new Uint32Array(buffer, byteOffset, n);
    case "I16":
      return new Int16Array(buffer, byteOffset, n);
    case "I8":
      return new Int8Array(buffer, byteOffset, n);
    case "U8":
    case "BOOL":
    case "F8_E4M3":
    case "F8_E5M2":
      return new Uint8Array(buffer, byteOffset, n);
  }
}

/**
 * Decodes little-endian tensor bytes of any dtype to f32 (floats rounded to nearest, integers
 * converted, BOOL as 0/1).
 *
 * @example
 * ```ts
 * decodeToF32(new Uint8Array([0x80, 0x3f]), "BF16"); // Float32Array [1]
 * ```
 */
export function decodeToF32(bytes: Uint8Array, dtype: DType): Float32Array {
  const view = typedView(bytes, dtype);
  switch (dtype) {
    case "F32":
      return (view as Float32Array).slice();
    case "BF16":
      return bf16ToF32(view as Uint16Array);
    case "F16":
      return f16ToF32(view as Uint16Array);
    case "F8_E4M3":
    case "F8_E5M2": {
      const table = f8Table(dtype);
      const out = new Float32Array(view.length);
      for (let i = 0; i < view.length; i++) out[i] = table[(view as Uint8Array)[i]];
      return out;
    }
    case "I64":
    case "U64": {
      const big = view as BigInt64Array | BigUint64Array;
      const out = new Float32Array(big.length);
      for (let i = 0; i < big.length; i++) out[i] = Number(big[i]);
      return out;
    }
    case "BOOL": {
      const out = new Float32Array(view.length);
      for (let i = 0; i < view.length; i++) out[i] = (view as Uint8Array)[i] !== 0 ? 1 : 0;
      return out;
    }
    default:
      return Float32Array.from(view as Exclude<TypedTensor, BigInt64Array | BigUint64Array>);
  }
}

/**
 * Encodes f32 values as little-endian bytes of a float dtype (F16/BF16 rounded to nearest even).
 *
 * @example
 * ```ts
 * encodeFromF32(new Float32Array([1]), "BF16"); // Uint8Array [0x80, 0x3f]
 * ```
 */
export function encodeFromF32(values: Float32Array, dtype: FloatDType): Uint8Array {
  switch (dtype) {
    case "F32":
      return new Uint8Array(values.slice().buffer);
    case "F64":
      return new Uint8Array(Float64Array.from(values).buffer);
    case "F16":
      return new Uint8Array(f32ToF16(values).buffer);
    case "BF16":
      return new Uint8Array(f32ToBf16(values).buffer);
  }
}
