// bf16/f16 <-> f32 conversions checked bit-exactly over all 65536 patterns against independent
// references (float64 math, DataView.getFloat16/setFloat16), halfway cases, and F8 decoding.

import { assert, assertEquals } from "./assert.ts";
import { seededRandom } from "./safetensors_files.ts";
import {
  bf16ToF32,
  decodeToF32,
  DTYPES,
  dtypeSize,
  encodeFromF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
} from "../lib/safetensors/mod.ts";

const ALL_16_BIT = Uint16Array.from({ length: 65536 }, (_, i) => i);

/** Value of a bf16 bit pattern computed in float64 (sign, 8-bit exponent bias 127, 7-bit mantissa). */
function bf16Reference(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 7) & 0xff;
  const mant = h & 0x7f;
  if (exp === 0xff) return mant === 0 ? sign * Infinity : NaN;
  if (exp === 0) return sign * mant * 2 ** -133;
  return sign * (1 + mant / 128) * 2 ** (exp - 127);
}

/** f16 bits of `x` (a double) rounded by the platform (Math.f16round semantics). */
function f16Reference(x: number): number {
  const view = new DataView(new ArrayBuffer(2));
  view.setFloat16(0, x, true);
  return view.getUint16(0, true);
}

function f32FromBits(bits: number): number {
  return new Float32Array(new Uint32Array([bits]).buffer)[0];
}

function bitsOfF32(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

/** Nearest bf16 to f32 value `x` by definition: compare distances to the two neighbours, ties to even. */
function nearestBf16(x: number): number {
  const bits = new Uint32Array(new Float32Array([x]).buffer)[0];
  const lo = bits >>> 16;
  const hi = lo + 1;
  const loValue = Math.abs(bf16Reference(lo));
  const hiValue = (hi & 0x7fff) === 0x7f80 ? 2 ** 128 : Math.abs(bf16Reference(hi));
  const dLo = Math.abs(Math.abs(x) - loValue);
  const dHi = Math.abs(hiValue - Math.abs(x));
  if (dLo < dHi) return lo;
  if (dHi < dLo) return hi;
  return (lo & 1) === 0 ? lo : hi;
}

Deno.test("dtype sizes", () => {
  const expected: Record<string, number> = {
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
  assertEquals(DTYPES.length, Object.keys(expected).length);
  for (const d of DTYPES) assertEquals(dtypeSize(d), expected[d], d);
});

Deno.test("bf16 -> f32 is exact for all 65536 patterns", () => {
  const out = bf16ToF32(ALL_16_BIT);
  const bits = bitsOfF32(out);
  for (let h = 0; h < 65536; h++) {
    const ref = bf16Reference(h);
    if (Number.isNaN(ref)) assertEquals(bits[h], h << 16 >>> 0, `NaN payload of ${h.toString(16)}`);
    else assert(Object.is(out[h], ref), `bf16 ${h.toString(16)}: got ${out[h]}, expected ${ref}`);
  }
});

Deno.test("f16 -> f32 is exact for all 65536 patterns (against DataView.getFloat16)", () => {
  const out = f16ToF32(ALL_16_BIT);
  const view = new DataView(ALL_16_BIT.buffer);
  for (let h = 0; h < 65536; h++) {
    const ref = view.getFloat16(2 * h, true);
    if (Number.isNaN(ref)) assert(Number.isNaN(out[h]), `f16 ${h.toString(16)} should be NaN`);
    else assert(Object.is(out[h], ref), `f16 ${h.toString(16)}: got ${out[h]}, expected ${ref}`);
  }
});

Deno.test("f32 -> bf16 -> f32 returns every bf16 pattern (NaN stays NaN)", () => {
  const back = f32ToBf16(bf16ToF32(ALL_16_BIT));
  for (let h = 0; h < 65536; h++) {
    if (Number.isNaN(bf16Reference(h))) {
      assert(Number.isNaN(bf16Reference(back[h])), `NaN ${h.toString(16)} became ${back[h].toString(16)}`);
      assertEquals(back[h] & 0x8000, h & 0x8000, "NaN sign kept");
    } else assertEquals(back[h], h, `bf16 ${h.toString(16)}`);
  }
});

Deno.test("f32 -> f16 -> f32 returns every f16 pattern (NaN stays NaN)", () => {
  const back = f32ToF16(f16ToF32(ALL_16_BIT));
  for (let h = 0; h < 65536; h++) {
    const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (isNaN) assert((back[h] & 0x7c00) === 0x7c00 && (back[h] & 0x3ff) !== 0, `NaN ${h.toString(16)}`);
    else assertEquals(back[h], h, `f16 ${h.toString(16)}`);
  }
});

Deno.test("f32 -> bf16 rounds to nearest, ties to even, at every halfway point and its neighbours", () => {
  const xs: number[] = [];
  for (let h = 0; h < 65536; h++) {
    if ((h & 0x7f80) === 0x7f80) continue; // inf/NaN have no upper neighbour
    const mid = (h << 16 | 0x8000) >>> 0;
    xs.push(mid, mid - 1, mid + 1);
  }
  const values = new Float32Array(new Uint32Array(xs).buffer);
  const got = f32ToBf16(values);
  for (let i = 0; i < xs.length; i++) {
    const expected = nearestBf16(values[i]);
    assertEquals(got[i], expected, `f32 bits ${xs[i].toString(16)}`);
    if (i % 3 === 0) assertEquals(got[i] & 1, 0, `tie at ${xs[i].toString(16)} goes to even`);
  }
});

Deno.test("f32 -> bf16 matches the nearest-even definition on random bit patterns", () => {
  const random = seededRandom(7);
  const bits = Uint32Array.from({ length: 200_000 }, () => Math.floor(random() * 2 ** 32));
  const values = new Float32Array(bits.buffer);
  const got = f32ToBf16(values);
  for (let i = 0; i < bits.length; i++) {
    if (Number.isNaN(values[i])) assert(Number.isNaN(bf16Reference(got[i])), "NaN stays NaN");
    else assertEquals(got[i], nearestBf16(values[i]), `f32 bits ${bits[i].toString(16)}`);
  }
});

Deno.test("f32 -> f16 matches DataView.setFloat16 at halfway points, neighbours, and random patterns", () => {
  const xs: number[] = [];
  const view = new DataView(new ArrayBuffer(4));
  for (let h = 0; h < 0x7c00; h++) {
    for (const sign of [0, 0x8000]) {
      const mid = (f16ToF32Ref(h | sign) + f16ToF32Ref((h + 1) | sign)) / 2;
      view.setFloat32(0, mid, true);
      const midBits = view.getUint32(0, true);
      assertEquals(f32FromBits(midBits), mid, "halfway point is an f32");
      xs.push(midBits, midBits - 1, midBits + 1);
    }
  }
  const random = seededRandom(11);
  for (let i = 0; i < 200_000; i++) xs.push(Math.floor(random() * 2 ** 32));
  const values = new Float32Array(new Uint32Array(xs).buffer);
  const got = f32ToF16(values);
  let ties = 0;
  for (let i = 0; i < xs.length; i++) {
    const ref = f16Reference(values[i]);
    if (Number.isNaN(values[i])) assert((got[i] & 0x7c00) === 0x7c00 && (got[i] & 0x3ff) !== 0, "NaN");
    else assertEquals(got[i], ref, `f32 bits ${xs[i].toString(16)} (${values[i]})`);
    if (i < 6 * 0x7c00 && i % 3 === 0) {
      assertEquals(got[i] & 1, 0, `tie at ${values[i]} goes to even`);
      ties++;
    }
  }
  assertEquals(ties, 2 * 0x7c00);
});

function f16ToF32Ref(h: number): number {
  const view = new DataView(new ArrayBuffer(2));
  view.setUint16(0, h, true);
  return view.getFloat16(0, true);
}

Deno.test("f32 -> f16 overflow, underflow and special values (hand-computed)", () => {
  const cases: [number, number][] = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff], // max f16
    [65519.99, 0x7bff], // below the halfway point to 65536
    [65520, 0x7c00], // halfway: ties to even = infinity
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // half of it: ties to even = 0
    [1.5 * 2 ** -25, 0x0001],
    [3 * 2 ** -25, 0x0002], // 1.5 subnormal ulps: ties to even = 2
    [2 ** -14, 0x0400], // smallest normal
  ];
  const got = f32ToF16(Float32Array.from(cases.map(([x]) => x)));
  cases.forEach(([x, bits], i) => assertEquals(got[i], bits, `f16(${x})`));
});

Deno.test("f32 -> bf16 special values (hand-computed)", () => {
  const cases: [number, number][] = [
    [1, 0x3f80],
    [-2.5, 0xc020],
    [Infinity, 0x7f80],
    [-0, 0x8000],
    [3.4028234663852886e38, 0x7f80], // max f32 rounds up to infinity in bf16
    [1 + 2 ** -8, 0x3f80], // halfway between 1 and 1+2^-7: ties to even (1)
    [1 + 3 * 2 ** -8, 0x3f82], // halfway between 1+2^-7 and 1+2^-6: ties to even (0x3f82)
  ];
  const got = f32ToBf16(Float32Array.from(cases.map(([x]) => x)));
  cases.forEach(([x, bits], i) => assertEquals(got[i], bits, `bf16(${x})`));
  const nan = f32ToBf16(new Float32Array(new Uint32Array([0x7f800001, 0xffc00000]).buffer));
  assert(
    Number.isNaN(bf16Reference(nan[0])) && Number.isNaN(bf16Reference(nan[1])),
    "signalling NaN stays NaN",
  );
});

Deno.test("F8_E4M3 and F8_E5M2 decode (hand-computed values)", () => {
  const e4m3: [number, number][] = [
    [0x00, 0],
    [0x80, -0],
    [0x01, 2 ** -9],
    [0x07, 7 * 2 ** -9],
    [0x08, 2 ** -6],
    [0x38, 1],
    [0xb8, -1],
    [0x3c, 1.5],
    [0x7e, 448],
    [0xfe, -448],
  ];
  const got = decodeToF32(Uint8Array.from(e4m3.map(([b]) => b)), "F8_E4M3");
  e4m3.forEach(([b, v], i) =>
    assert(Object.is(got[i], v), `E4M3 ${b.toString(16)}: got ${got[i]}, expected ${v}`)
  );
  const nan = decodeToF32(new Uint8Array([0x7f, 0xff]), "F8_E4M3");
  assert(Number.isNaN(nan[0]) && Number.isNaN(nan[1]), "E4M3 S.1111.111 is NaN");

  const e5m2: [number, number][] = [
    [0x00, 0],
    [0x01, 2 ** -16],
    [0x04, 2 ** -14],
    [0x3c, 1],
    [0xbe, -1.5],
    [0x7b, 57344],
    [0x7c, Infinity],
    [0xfc, -Infinity],
  ];
  const got5 = decodeToF32(Uint8Array.from(e5m2.map(([b]) => b)), "F8_E5M2");
  e5m2.forEach(([b, v], i) =>
    assert(Object.is(got5[i], v), `E5M2 ${b.toString(16)}: got ${got5[i]}, expected ${v}`)
  );
  assert(Number.isNaN(decodeToF32(new Uint8Array([0x7d]), "F8_E5M2")[0]), "E5M2 0x7d is NaN");
});

Deno.test("decodeToF32 converts integers and booleans; encodeFromF32 writes little-endian floats", () => {
  const i8 = decodeToF32(new Uint8Array([0x80, 0xff, 0x7f]), "I8");
  assertEquals(Array.from(i8), [-128, -1, 127]);
  const i64 = decodeToF32(new Uint8Array([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), "I64");
  assertEquals(Array.from(i64), [-2]);
  const u16 = decodeToF32(new Uint8Array([0xff, 0xff]), "U16");
  assertEquals(Array.from(u16), [65535]);
  const bool = decodeToF32(new Uint8Array([0, 1, 7]), "BOOL");
  assertEquals(Array.from(bool), [0, 1, 1]);
  // 1.0 as F64 is 0x3ff0000000000000, little-endian.
  assertEquals(Array.from(encodeFromF32(new Float32Array([1]), "F64")), [0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
  assertEquals(Array.from(encodeFromF32(new Float32Array([1]), "F32")), [0, 0, 0x80, 0x3f]);
  assertEquals(Array.from(encodeFromF32(new Float32Array([1]), "F16")), [0, 0x3c]);
  assertEquals(Array.from(encodeFromF32(new Float32Array([-2.5]), "BF16")), [0x20, 0xc0]);
  // An unaligned view still decodes.
  const unaligned = new Uint8Array([9, 0, 0, 0x80, 0x3f]).subarray(1);
  assertEquals(Array.from(decodeToF32(unaligned, "F32")), [1]);
});
