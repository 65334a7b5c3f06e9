// CPU fused lm head + cross-entropy: logits for a chunk of rows at a time (never [N, V] at once), the
// per-row loss, and optionally the gradients of hidden and of the head weight.

import { IGNORE_INDEX } from "../engine.ts";
import { matmulF32 } from "./matmul.ts";

/** Rows of logits materialized at once. */
export const CROSS_ENTROPY_CHUNK_ROWS = 64;

/** hidden [N, C], weight [V, C], targets [N] -> losses [N]; dhidden [N, C] (=), dweight [V, C] (+=). */
export function crossEntropy(
  out: { losses: Float32Array; dhidden?: Float32Array; dweight?: Float32Array },
  hidden: Float32Array,
  weight: Float32Array,
  targets: Int32Array,
  dims: { n: number; c: number; v: number; scale: number },
): void {
  const { n: N, c: C, v: V, scale } = dims;
  const needGrad = out.dhidden !== undefined || out.dweight !== undefined;
  const logits = new Float32Array(Math.min(N, CROSS_ENTROPY_CHUNK_ROWS) * V);
  for (let start = 0; start < N; start += CROSS_ENTROPY_CHUNK_ROWS) {
    const rows = Math.min(CROSS_ENTROPY_CHUNK_ROWS, N - start);
    const h = hidden.subarray(start * C, (start + rows) * C);
    const z = logits.subarray(0, rows * V);
    matmulF32(z, h, weight, { m: rows, n: V, p: C, transA: false, transB: true, alpha: 1, beta: 0 });
    for (let r = 0; r < rows; r++) {
      const target = targets[start + r];
      const row = z.subarray(r * V, (r + 1) * V);
      if (target === IGNORE_INDEX) {
        out.losses[start + r] = 0;
        row.fill(0);
        continue;
      }
      let max = -Infinity;
      for (let j = 0; j < V; j++) if (row[j] > max) max = row[j];
      let sum = 0;
      for (let j = 0; j < V; j++) sum += Math.exp(row[j] - max);
      const lse = max + Math.log(sum);
      out.losses[start + r] = lse - row[target];
      if (!needGrad) continue;
      for (let j = 0; j < V; j++) row[j] = Math.exp(row[j] - lse) * scale;
      row[target] -= scale;
    }
    if (out.dhidden) {
      const dh = out.dhidden.subarray(start * C, (start + rows) * C);
      matmulF32(dh, z, weight, { m: rows, n: C, p: V, transA: false, transB: false, alpha: 1, beta: 0 });
    }
    if (out.dweight) {
      matmulF32(out.dweight, z, h, { m: V, n: C, p: rows, transA: true, transB: false, alpha: 1, beta: 1 });
    }
  }
}
