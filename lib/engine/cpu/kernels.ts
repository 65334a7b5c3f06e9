// CPU kernels over flat f32 arrays for the row-wise ops: RMSNorm, per-head RoPE, SwiGLU, embedding and
// AdamW. Sums run in f64 (JavaScript numbers). Shapes are checked by the caller (cpu_engine.ts).

/** out[N, X] = x * rstd * w, rstd[N] = 1 / sqrt(mean(x^2) + eps). */
export function rmsnormForward(
  out: Float32Array,
  rstd: Float32Array,
  x: Float32Array,
  w: Float32Array,
  eps: number,
): void {
  const width = w.length;
  const rows = rstd.length;
  for (let r = 0; r < rows; r++) {
    const o = r * width;
    let ss = 0;
    for (let j = 0; j < width; j++) ss += x[o + j] * x[o + j];
    const s = 1 / Math.sqrt(ss / width + eps);
    rstd[r] = s;
    for (let j = 0; j < width; j++) out[o + j] = x[o + j] * s * w[j];
  }
}

/** dx (= or +=) and dw += from dout, x, w and the saved rstd. */
export function rmsnormBackward(
  dx: Float32Array,
  dw: Float32Array,
  dout: Float32Array,
  x: Float32Array,
  w: Float32Array,
  rstd: Float32Array,
  accumulate: boolean,
): void {
  const width = w.length;
  const rows = rstd.length;
  const dwSum = new Float64Array(width);
  for (let r = 0; r < rows; r++) {
    const o = r * width;
    const s = rstd[r];
    let dot = 0;
    for (let j = 0; j < width; j++) {
      dot += dout[o + j] * w[j] * x[o + j];
      dwSum[j] += dout[o + j] * x[o + j] * s;
    }
    const c = (s * s * s * dot) / width;
    for (let j = 0; j < width; j++) {
      const g = s * w[j] * dout[o + j] - c * x[o + j];
      dx[o + j] = accumulate ? dx[o + j] + g : g;
    }
  }
  for (let j = 0; j < width; j++) dw[j] += dwSum[j];
}

/** Rotates [rows, Ho, D] from [rows, Hx, D] per head (sign -1 rotates backwards, summing into dx). */
export function rope(
  out: Float32Array,
  x: Float32Array,
  invFreq: Float32Array,
  positions: Int32Array,
  dims: { hx: number; ho: number; d: number; half: number },
  sign: 1 | -1,
): void {
  const { hx, ho, d, half } = dims;
  const group = ho / hx;
  const rows = positions.length;
  for (let n = 0; n < rows; n++) {
    const pos = positions[n];
    for (let h = 0; h < ho; h++) {
      const xo = (n * hx + Math.floor(h / group)) * d;
      const oo = (n * ho + h) * d;
      for (let i = 0; i < half; i++) {
        const angle = pos * invFreq[h * half + i];
        const c = Math.cos(angle), s = sign * Math.sin(angle);
        const a = x[xo + i], b = x[xo + i + half];
        out[oo + i] = a * c - b * s;
        out[oo + i + half] = b * c + a * s;
      }
      for (let i = 2 * half; i < d; i++) out[oo + i] = x[xo + i];
    }
  }
}

/** The backward of `rope` when Ho > Hx: dx[rows, Hx, D] = sum over each group of rotated-back dout. */
export function ropeBackwardGrouped(
  dx: Float32Array,
  dout: Float32Array,
  invFreq: Float32Array,
  positions: Int32Array,
  dims: { hx: number; ho: number; d: number; half: number },
): void {
  const { hx, ho, d } = dims;
  const rows = positions.length;
  const rotated = new Float32Array(rows * ho * d);
  rope(rotated, dout, invFreq, positions, { ...dims, hx: ho }, -1);
  const group = ho / hx;
  dx.fill(0);
  for (let n = 0; n < rows; n++) {
    for (let h = 0; h < ho; h++) {
      const xo = (n * hx + Math.floor(h / group)) * d;
      const ro = (n * ho + h) * d;
      for (let i = 0; i < d; i++) dx[xo + i] += rotated[ro + i];
    }
  }
}

/** out = silu(gate) * up. */
export function swigluForward(out: Float32Array, gate: Float32Array, up: Float32Array): void {
  for (let i = 0; i < out.length; i++) {
    const g = gate[i];
    out[i] = (g / (1 + Math.exp(-g))) * up[i];
  }
}

/** dgate, dup from dout, gate, up. */
export function swigluBackward(
  dgate: Float32Array,
  dup: Float32Array,
  dout: Float32Array,
  gate: Float32Array,
  up: Float32Array,
): void {
  for (let i = 0; i < dout.length; i++) {
    const g = gate[i];
    const sig = 1 / (1 + Math.exp(-g));
    const d = dout[i];
    dup[i] = d * g * sig;
    dgate[i] = d * up[i] * sig * (1 + g * (1 - sig));
  }
}

/** One AdamW step in place (see Engine.adamw). */
export function adamw(
  param: Float32Array,
  grad: Float32Array,
  m: Float32Array,
  v: Float32Array,
  h: {
    lr: number;
    beta1: number;
    beta2: number;
    eps: number;
    weightDecay: number;
    step: number;
    gradScale: number;
  },
): void {
  const c1 = 1 - Math.pow(h.beta1, h.step);
  const c2 = 1 - Math.pow(h.beta2, h.step);
  for (let i = 0; i < param.length; i++) {
    const g = grad[i] * h.gradScale;
    const mi = h.beta1 * m[i] + (1 - h.beta1) * g;
    const vi = h.beta2 * v[i] + (1 - h.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const p = param[i];
    param[i] = p - h.lr * ((mi / c1) / (Math.sqrt(vi / c2) + h.eps) + h.weightDecay * p);
  }
}
