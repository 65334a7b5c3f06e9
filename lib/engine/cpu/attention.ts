// CPU causal attention with grouped heads: q [B, T, H, D], k [B, T, Hk, D], v [B, T, Hv, D]. One query
// row at a time in f64, saving the log-sum-exp; the backward recomputes probabilities from it.

import type { AttentionDims } from "../checks.ts";

/** out [B, T, H, D], lse [B, H, T]. */
export function attentionForward(
  out: Float32Array,
  lse: Float32Array,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  dims: AttentionDims,
): void {
  const { b: B, t: T, h: H, hk: Hk, hv: Hv, d: D } = dims;
  const scale = 1 / Math.sqrt(D);
  const scores = new Float64Array(T);
  const acc = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / (H / Hk)), vh = Math.floor(h / (H / Hv));
      for (let t = 0; t < T; t++) {
        const qo = ((b * T + t) * H + h) * D;
        let max = -Infinity;
        for (let s = 0; s <= t; s++) {
          const ko = ((b * T + s) * Hk + kh) * D;
          let dot = 0;
          for (let i = 0; i < D; i++) dot += q[qo + i] * k[ko + i];
          scores[s] = dot * scale;
          if (scores[s] > max) max = scores[s];
        }
        let sum = 0;
        acc.fill(0);
        for (let s = 0; s <= t; s++) {
          const p = Math.exp(scores[s] - max);
          sum += p;
          const vo = ((b * T + s) * Hv + vh) * D;
          for (let i = 0; i < D; i++) acc[i] += p * v[vo + i];
        }
        for (let i = 0; i < D; i++) out[qo + i] = acc[i] / sum;
        lse[(b * H + h) * T + t] = max + Math.log(sum);
      }
    }
  }
}

/** dq [B, T, H, D], dk [B, T, Hk, D], dv [B, T, Hv, D] (written). */
export function attentionBackward(
  grads: { dq: Float32Array; dk: Float32Array; dv: Float32Array },
  dout: Float32Array,
  saved: { q: Float32Array; k: Float32Array; v: Float32Array; out: Float32Array; lse: Float32Array },
  dims: AttentionDims,
): void {
  const { b: B, t: T, h: H, hk: Hk, hv: Hv, d: D } = dims;
  const { q, k, v, out, lse } = saved;
  const scale = 1 / Math.sqrt(D);
  const dk = new Float64Array(grads.dk.length);
  const dv = new Float64Array(grads.dv.length);
  const dq = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / (H / Hk)), vh = Math.floor(h / (H / Hv));
      for (let t = 0; t < T; t++) {
        const qo = ((b * T + t) * H + h) * D;
        const l = lse[(b * H + h) * T + t];
        let delta = 0;
        for (let i = 0; i < D; i++) delta += dout[qo + i] * out[qo + i];
        dq.fill(0);
        for (let s = 0; s <= t; s++) {
          const ko = ((b * T + s) * Hk + kh) * D;
          const vo = ((b * T + s) * Hv + vh) * D;
          let dot = 0, dp = 0;
          for (let i = 0; i < D; i++) {
            dot += q[qo + i] * k[ko + i];
            dp += dout[qo + i] * v[vo + i];
          }
          const p = Math.exp(dot * scale - l);
          const ds = p * (dp - delta) * scale;
          for (let i = 0; i < D; i++) {
            dq[i] += ds * k[ko + i];
            dk[ko + i] += ds * q[qo + i];
            dv[vo + i] += p * dout[qo + i];
          }
        }
        for (let i = 0; i < D; i++) grads.dq[qo + i] = dq[i];
      }
    }
  }
  grads.dk.set(dk);
  grads.dv.set(dv);
}
