// Casting a tensor's raw little-endian bytes from its stored float dtype to an export dtype (F16/BF16
// rounded to nearest even). Same dtype: the bytes are returned untouched.

import { bf16ToF32, decodeToF32, type DType, encodeFromF32, f32ToBf16 } from "../safetensors/mod.ts";

/** The dtypes a checkpoint can be written in. */
export type WeightDType = "F32" | "BF16" | "F16";

/** Weight dtypes by their config.json names (v5 `dtype`, v4 `torch_dtype`). */
export const CONFIG_DTYPE_NAMES: Readonly<Record<WeightDType, string>> = {
  F32: "float32",
  BF16: "bfloat16",
  F16: "float16",
};

/** A 4-byte-aligned view of `bytes` (copied only when misaligned). */
function aligned(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
}

/**
 * Converts tensor bytes stored as `from` into bytes of `to`. F32 <-> BF16 go straight through the bit
 * patterns; other pairs through f32.
 *
 * @example
 * ```ts
 * castBytes(new Uint8Array(new Float32Array([1]).buffer), "F32", "BF16"); // Uint8Array [0x80, 0x3f]
 * ```
 */
export function castBytes(bytes: Uint8Array, from: DType, to: WeightDType): Uint8Array {
  if (from === to) return bytes;
  const source = aligned(bytes);
  if (from === "F32" && to === "BF16") {
    const values = new Float32Array(source.buffer, source.byteOffset, source.byteLength / 4);
    return new Uint8Array(f32ToBf16(values).buffer);
  }
  if (from === "BF16" && to === "F32") {
    const bits = new Uint16Array(source.buffer, source.byteOffset, source.byteLength / 2);
    return new Uint8Array(bf16ToF32(bits).buffer);
  }
  return encodeFromF32(decodeToF32(source, from), to);
}
