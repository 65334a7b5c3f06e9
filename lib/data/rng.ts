// A small seeded PRNG (xoshiro128**, seeded through splitmix32) whose whole state is four u32 words,
// so data order and any other randomness can be saved in a checkpoint and restored exactly.

/** The complete state of an {@link Rng}: four unsigned 32-bit words, not all zero. */
export type RngState = [number, number, number, number];

const SPLITMIX_INCREMENT = 0x9e3779b9;

function splitmix32(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (x + SPLITMIX_INCREMENT) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * xoshiro128**: fast, good-quality 32-bit generator. Same seed -> same sequence on every platform.
 *
 * @example
 * ```ts
 * const rng = new Rng(42);
 * const saved = rng.state();
 * const a = rng.nextU32();
 * const b = Rng.fromState(saved).nextU32(); // a === b
 * ```
 */
export class Rng {
  #s: Uint32Array;

  constructor(seed: number) {
    const next = splitmix32(seed);
    this.#s = new Uint32Array([next(), next(), next(), next()]);
    if (this.#s.every((w) => w === 0)) this.#s[0] = 1;
  }

  /** Restores a generator from {@link Rng.state}. */
  static fromState(state: RngState): Rng {
    if (state.length !== 4 || state.every((w) => w === 0)) {
      throw new RangeError(`RNG state must be 4 words, not all zero; got ${JSON.stringify(state)}`);
    }
    const rng = new Rng(0);
    rng.#s = new Uint32Array(state);
    return rng;
  }

  /** A copy of the current state (plain numbers, JSON-safe). */
  state(): RngState {
    return [this.#s[0], this.#s[1], this.#s[2], this.#s[3]];
  }

  /** The next unsigned 32-bit value. */
  nextU32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** A float in [0, 1) with 32 random bits. */
  nextFloat(): number {
    return this.nextU32() / 0x100000000;
  }

  /** An integer in [0, n), unbiased (rejection sampling); n <= 2^32. */
  nextBelow(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 0x100000000) {
      throw new RangeError(`nextBelow needs an integer 1..2^32, got ${n}`);
    }
    const limit = 0x100000000 - (0x100000000 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }

  /** Shuffles `items` (an array or typed array) in place (Fisher-Yates) and returns it. */
  shuffle<A extends { length: number; [index: number]: unknown }>(items: A): A {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.nextBelow(i + 1);
      const tmp = items[i];
      items[i] = items[j];
      items[j] = tmp;
    }
    return items;
  }

  /** A standard normal sample (Box-Muller over two uniforms). */
  nextNormal(): number {
    const u1 = 1 - this.nextFloat();
    const u2 = this.nextFloat();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
}
