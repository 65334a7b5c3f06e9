// The WebAssembly SIMD f32 -> bf16 kernel: hand-computed values, an independent float64 rounding
// reference over rounding boundaries, NaN quieting, lengths that are not a multiple of 8, bad lengths.

import { assertEquals, assertThrows } from "./assert.ts";
import { bf16Reference } from "./checkpoint_fixtures.ts";
import { bf16Kernel } from "../lib/safetensors/bf16_simd.ts";

const CAPACITY = 1 << 16;
/** f32 bits of the midpoint between the largest finite bf16 (0x7f7f) and 2^128. */
const BF16_OVERFLOW_BITS = 0x7f7f8000;

function castBits(kernel: ReturnType<typeof bf16Kernel>, bits: Uint32Array): Uint16Array {
  kernel.input.set(new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength));
  return new Uint16Array(kernel.cast(bits.byteLength).slice().buffer);
}

Deno.test("bf16 kernel: hand-computed values, ties to even, overflow to infinity, NaN kept quiet", () => {
  const kernel = bf16Kernel(CAPACITY);
  const cases: [number, number][] = [
    [0x3f800000, 0x3f80], // 1
    [0xc0200000, 0xc020], // -2.5
    [0x3f808000, 0x3f80], // tie, even below: down
    [0x3f818000, 0x3f82], // tie, odd below: up
    [0x3f808001, 0x3f81], // just above the tie: up
    [0x3f807fff, 0x3f80], // just below the tie: down
    [0x7f7fffff, 0x7f80], // largest f32 rounds to infinity
    [0xff800000, 0xff80], // -infinity
    [0x00000001, 0x0000], // smallest subnormal rounds to 0
    [0x80000000, 0x8000], // -0
    [0x7f800001, 0x7fc0], // signalling NaN with a low payload: quiet NaN, not infinity
    [0xffc12345, 0xffc1], // quiet NaN keeps sign and top payload
    [0x7fffffff, 0x7fff],
  ];
  const bits = Uint32Array.from(cases.map(([f32]) => f32));
  assertEquals([...castBits(kernel, bits)], cases.map(([, bf16]) => bf16));
});

Deno.test("bf16 kernel: every rounding boundary over a stride of all f32 matches the float64 reference", () => {
  const kernel = bf16Kernel(CAPACITY);
  const patterns: number[] = [];
  for (let upper = 0; upper < 2 ** 32; upper += 0x10000 * 97 + 12345) {
    const base = upper & 0xffff0000;
    for (const low of [0, 1, 0x7fff, 0x8000, 0x8001, 0xffff]) patterns.push((base | low) >>> 0);
  }
  const view = new DataView(new ArrayBuffer(4));
  const expected = patterns.map((b) => {
    view.setUint32(0, b, true);
    const x = view.getFloat32(0, true);
    if (Number.isNaN(x)) return (b >>> 16) | 0x40;
    // From halfway between the largest bf16 (odd mantissa) and 2^128 up, ties to even give infinity.
    if ((b & 0x7fffffff) >= BF16_OVERFLOW_BITS) return ((b >>> 16) & 0x8000) | 0x7f80;
    view.setFloat32(0, bf16Reference(x), true);
    return view.getUint32(0, true) >>> 16;
  });
  for (let at = 0; at < patterns.length; at += CAPACITY / 4) {
    const part = Uint32Array.from(patterns.slice(at, at + CAPACITY / 4));
    assertEquals([...castBits(kernel, part)], expected.slice(at, at + part.length));
  }
});

Deno.test("bf16 kernel: lengths that are not a multiple of 8 values, and bad lengths", () => {
  const kernel = bf16Kernel(64);
  for (const n of [0, 1, 7, 9, 15]) {
    const bits = Uint32Array.from({ length: n }, (_, i) => 0x3f800000 + i * 0x10000);
    assertEquals([...castBits(kernel, bits)], Array.from({ length: n }, (_, i) => 0x3f80 + i));
  }
  assertThrows(() => kernel.cast(6), RangeError);
  assertThrows(() => kernel.cast(68), RangeError);
  assertThrows(() => bf16Kernel(48), RangeError);
});
