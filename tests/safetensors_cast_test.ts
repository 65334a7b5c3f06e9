// castBytes: export's casts of raw tensor bytes (F32 <-> BF16 first) bit-exact against the dtype conversions
// and an independent float64 rounding reference, over rounding ties, specials, odd lengths and unaligned input.

import { assertEquals } from "./assert.ts";
import { bf16Reference } from "./checkpoint_fixtures.ts";
import {
  bf16ToF32,
  castByteLength,
  castBytes,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
} from "../lib/safetensors/mod.ts";

/** f32 bit patterns: a stride over all 2^32, every rounding boundary around them, and the specials. */
function bitPatterns(): Uint32Array {
  const out: number[] = [];
  const STRIDE = 0x10000 * 13 + 4321;
  for (let upper = 0; upper < 2 ** 32; upper += STRIDE) {
    const base = upper & 0xffff0000;
    for (const low of [0, 1, 0x7fff, 0x8000, 0x8001, 0xffff, upper & 0xffff]) out.push((base | low) >>> 0);
  }
  out.push(0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffffffff, 0x00000001, 0x80000000, 0x7f7fffff);
  return Uint32Array.from(out);
}

Deno.test("F32 -> BF16 equals the safetensors conversion bit for bit", () => {
  const bits = bitPatterns();
  const values = new Float32Array(bits.buffer);
  const expected = new Uint8Array(f32ToBf16(values).buffer);
  assertEquals(castBytes(new Uint8Array(bits.buffer), { from: "F32", to: "BF16" }), expected);
  // Into a reused target buffer, with an odd element count.
  const target = new Uint8Array(bits.byteLength);
  const odd = new Uint8Array(bits.buffer, 0, (bits.length - 1) * 4);
  assertEquals(
    castBytes(odd, { from: "F32", to: "BF16" }, { out: target }),
    expected.subarray(0, (bits.length - 1) * 2),
  );
});

Deno.test("F32 -> BF16 equals the float64 nearest-even reference on finite values", () => {
  const bits = bitPatterns();
  const values = new Float32Array(bits.buffer).filter((v) => Number.isFinite(v) && Math.abs(v) < 3e38);
  const got = new Uint16Array(
    castBytes(new Uint8Array(values.buffer), { from: "F32", to: "BF16" }).slice().buffer,
  );
  const widened = new Float32Array(Uint32Array.from(got, (b) => b * 65536).buffer);
  assertEquals(widened, Float32Array.from(values, bf16Reference));
});

Deno.test("NaN stays NaN through the cast", () => {
  const nan = new Uint8Array(new Uint32Array([0x7f800001, 0xff800001, 0x7fc00000]).buffer);
  const back = new Float32Array(
    castBytes(castBytes(nan, { from: "F32", to: "BF16" }), { from: "BF16", to: "F32" }).slice().buffer,
  );
  assertEquals([...back].map(Number.isNaN), [true, true, true]);
});

Deno.test("BF16 -> F32 widens exactly, odd lengths and unaligned input included", () => {
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const expected = new Uint8Array(bf16ToF32(all).buffer);
  assertEquals(castBytes(new Uint8Array(all.buffer), { from: "BF16", to: "F32" }), expected);
  const shifted = new Uint8Array(2 + 7 * 2);
  shifted.set(new Uint8Array(all.buffer, 1000 * 2, 7 * 2), 2);
  const unaligned = shifted.subarray(2);
  assertEquals(castBytes(unaligned, { from: "BF16", to: "F32" }), expected.slice(1000 * 4, 1007 * 4));
});

Deno.test("other pairs go through f32; same dtype returns the input; byte lengths scale", () => {
  const values = new Float32Array([1, -2.5, 65520, 1e-8, 3.14159]);
  const bytes = new Uint8Array(values.buffer);
  assertEquals(castBytes(bytes, { from: "F32", to: "F16" }), new Uint8Array(f32ToF16(values).buffer));
  const f16 = castBytes(bytes, { from: "F32", to: "F16" });
  assertEquals(
    castBytes(f16, { from: "F16", to: "F32" }),
    new Uint8Array(f16ToF32(new Uint16Array(f16.slice().buffer)).buffer),
  );
  assertEquals(castBytes(bytes, { from: "F32", to: "F32" }) === bytes, true);
  assertEquals(castByteLength(12, { from: "F32", to: "BF16" }), 6);
  assertEquals(castByteLength(6, { from: "BF16", to: "F32" }), 12);
});
