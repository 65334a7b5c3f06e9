// Test helpers for safetensors: builds file bytes by hand (independent of the writer under test) and a
// small seeded random generator.

/** Bytes of a safetensors file: u64 LE length, header text (JSON value or raw string), then data. */
export function rawSafetensors(
  header: unknown,
  data: Uint8Array = new Uint8Array(0),
  options: { length?: bigint } = {},
): Uint8Array {
  const text = typeof header === "string" ? header : JSON.stringify(header);
  const body = new TextEncoder().encode(text);
  return rawWithHeaderBytes(body, data, options);
}

/** Like {@link rawSafetensors} with the header given as bytes (for invalid UTF-8). */
export function rawWithHeaderBytes(
  body: Uint8Array,
  data: Uint8Array = new Uint8Array(0),
  options: { length?: bigint } = {},
): Uint8Array {
  const out = new Uint8Array(8 + body.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, options.length ?? BigInt(body.byteLength), true);
  out.set(body, 8);
  out.set(data, 8 + body.byteLength);
  return out;
}

/** Mulberry32: a tiny seeded PRNG returning floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random bytes from a seeded generator. */
export function randomBytes(random: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(random() * 256);
  return out;
}
