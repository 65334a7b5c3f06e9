// Float64 reference versions of the engine ops, written naively and independently of lib/engine, plus
// finite differences and error measures: the oracles of the engine tests (CPU here, CUDA later).

import { maxRelativeError } from "../lib/model/verify_reference.ts";

/** Deterministic-per-call random numbers (a fresh seed each run unless given). */
export function makeRandom(seed = (Math.random() * 2 ** 31) >>> 0): { seed: number; next: () => number } {
  let state = seed || 1;
  return {
    seed,
    next: () => {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return ((state >>> 0) / 2 ** 32) * 2 - 1;
    },
  };
}

/** An array of `n` uniform values in [-scale, scale). */
export function randomArray(rand: () => number, n: number, scale = 1): Float64Array {
  return Float64Array.from({ length: n }, () => rand() * scale);
}

/** max |a - b| / max |b| (maxRelativeError of lib/model), after checking the lengths agree. */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs ${expected.length}`);
  return maxRelativeError(actual, expected);
}

/** Central finite differences of sum(dout * f(inputs)) with respect to inputs[which]. */
export function finiteDifference(
  f: (inputs: Float64Array[]) => Float64Array,
  inputs: Float64Array[],
  dout: Float64Array,
  which: number,
  step = 1e-6,
): Float64Array {
  const x = inputs[which];
  const grad = new Float64Array(x.length);
  const loss = () => {
    const y = f(inputs);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i] * dout[i];
    return s;
  };
  for (let i = 0; i < x.length; i++) {
    const saved = x[i];
    x[i] = saved + step;
    const plus = loss();
    x[i] = saved - step;
    const minus = loss();
    x[i] = saved;
    grad[i] = (plus - minus) / (2 * step);
  }
  return grad;
}

/** out[M, N] = op(a) @ op(b) with a [M, P] or [P, M] (transA), b [P, N] or [N, P] (transB). */
export function refMatmul(
  a: Float64Array,
  b: Float64Array,
  m: number,
  n: number,
  p: number,
  transA = false,
  transB = false,
): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < p; k++) {
        s += (transA ? a[k * m + i] : a[i * p + k]) * (transB ? b[j * p + k] : b[k * n + j]);
      }
      out[i * n + j] = s;
    }
  }
  return out;
}

/** RMSNorm over rows of width w.length. */
export function refRmsnorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  const width = w.length;
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / width; r++) {
    let ss = 0;
    for (let j = 0; j < width; j++) ss += x[r * width + j] ** 2;
    const s = 1 / Math.sqrt(ss / width + eps);
    for (let j = 0; j < width; j++) out[r * width + j] = x[r * width + j] * s * w[j];
  }
  return out;
}

/** RoPE of x [rows, hx, d] into [rows, ho, d] with per-head bases and rotary dims `rotary`. */
export function refRope(
  x: Float64Array,
  positions: ArrayLike<number>,
  bases: number[],
  dims: { hx: number; d: number; rotary: number },
): Float64Array {
  const ho = bases.length, { hx, d, rotary } = dims;
  const rows = positions.length;
  const half = rotary / 2;
  const out = new Float64Array(rows * ho * d);
  for (let n = 0; n < rows; n++) {
    for (let h = 0; h < ho; h++) {
      const src = (n * hx + Math.floor(h / (ho / hx))) * d, dst = (n * ho + h) * d;
      for (let i = 0; i < d; i++) out[dst + i] = x[src + i];
      for (let i = 0; i < half; i++) {
        const angle = positions[n] * Math.pow(bases[h], (-2 * i) / rotary);
        const a = x[src + i], b = x[src + i + half];
        out[dst + i] = a * Math.cos(angle) - b * Math.sin(angle);
        out[dst + i + half] = b * Math.cos(angle) + a * Math.sin(angle);
      }
    }
  }
  return out;
}

/** Causal GQA attention: q [B,T,H,D], k [B,T,Hk,D], v [B,T,Hv,D] -> out [B,T,H,D] (and lse [B,H,T]). */
export function refAttention(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  dims: { b: number; t: number; h: number; hk: number; hv: number; d: number },
): { out: Float64Array; lse: Float64Array } {
  const { b: B, t: T, h: H, hk: Hk, hv: Hv, d: D } = dims;
  const out = new Float64Array(B * T * H * D);
  const lse = new Float64Array(B * H * T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kh = Math.floor((h * Hk) / H), vh = Math.floor((h * Hv) / H);
      for (let t = 0; t < T; t++) {
        const scores: number[] = [];
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let i = 0; i < D; i++) {
            dot += q[((b * T + t) * H + h) * D + i] * k[((b * T + s) * Hk + kh) * D + i];
          }
          scores.push(dot / Math.sqrt(D));
        }
        const max = Math.max(...scores);
        const z = scores.reduce((acc, s) => acc + Math.exp(s - max), 0);
        lse[(b * H + h) * T + t] = max + Math.log(z);
        for (let s = 0; s <= t; s++) {
          const p = Math.exp(scores[s] - max) / z;
          for (let i = 0; i < D; i++) {
            out[((b * T + t) * H + h) * D + i] += p * v[((b * T + s) * Hv + vh) * D + i];
          }
        }
      }
    }
  }
  return { out, lse };
}

/** Per-row cross-entropy of hidden [N, C] @ weight[V, C]^T against targets (-1 rows give 0). */
export function refCrossEntropy(
  hidden: Float64Array,
  weight: Float64Array,
  targets: ArrayLike<number>,
  c: number,
): Float64Array {
  const n = targets.length, v = weight.length / c;
  const logits = refMatmul(hidden, weight, n, v, c, false, true);
  const losses = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    if (targets[r] < 0) continue;
    const row = logits.subarray(r * v, (r + 1) * v);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((acc, x) => acc + Math.exp(x - max), 0));
    losses[r] = lse - row[targets[r]];
  }
  return losses;
}
