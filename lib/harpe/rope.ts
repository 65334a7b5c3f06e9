// RoPE math per head, in float64: inverse frequencies for a base (and a plain checkpoint's linear or
// llama3 scaling of them), the wavelength of the lowest frequency, and the attention waveform of a base.
// R is the number of rotated dims per head (R <= D, even).

/**
 * The inverse frequencies of one base: inv_freq[i] = base^(-2i/R), i = 0 .. R/2-1, in float64.
 *
 * @example
 * ```ts
 * baseInverseFrequencies(10000, 4); // Float64Array [1, 0.01]
 * ```
 */
export function baseInverseFrequencies(base: number, rotaryDim: number): Float64Array {
  const half = rotaryDim / 2;
  const out = new Float64Array(half);
  for (let i = 0; i < half; i++) out[i] = Math.pow(base, (-2 * i) / rotaryDim);
  return out;
}

/** The rope type and scaling parameters {@link scaleInverseFrequencies} reads (a RopeConfig fits). */
export interface RopeScaling {
  type: string;
  /** HF names: `factor`; llama3 also `low_freq_factor`, `high_freq_factor`, `original_max_position_embeddings`. */
  scaling?: Record<string, number>;
}

/**
 * A plain checkpoint's scaling applied to its inverse frequencies, as transformers does (in float64):
 * `linear` divides every one by `factor`; `llama3` divides those whose wavelength 2*pi/f exceeds
 * original_max_position_embeddings / low_freq_factor by `factor`, keeps those shorter than
 * original_max_position_embeddings / high_freq_factor, and blends the band between with
 * s = (original / wavelength - low) / (high - low): (1 - s) * f / factor + s * f.
 * Other types (default, harpe) come back unchanged (a copy).
 *
 * @example
 * ```ts
 * scaleInverseFrequencies(baseInverseFrequencies(1e4, 4), { type: "linear", scaling: { factor: 2 } }); // [0.5, 0.005]
 * ```
 */
export function scaleInverseFrequencies(invFreq: Float64Array, rope: RopeScaling): Float64Array {
  const out = Float64Array.from(invFreq);
  const scaling = rope.scaling ?? {};
  if (rope.type === "linear") {
    for (let i = 0; i < out.length; i++) out[i] /= scaling.factor;
  } else if (rope.type === "llama3") {
    const { factor, low_freq_factor: low, high_freq_factor: high } = scaling;
    const original = scaling.original_max_position_embeddings;
    const lowFreqWavelength = original / low;
    const highFreqWavelength = original / high;
    for (let i = 0; i < out.length; i++) {
      const f = out[i];
      const wavelength = (2 * Math.PI) / f;
      if (wavelength > lowFreqWavelength) {
        out[i] = f / factor;
      } else if (wavelength >= highFreqWavelength) {
        const smooth = (original / wavelength - low) / (high - low);
        out[i] = (1 - smooth) * (f / factor) + smooth * f;
      }
    }
  }
  return out;
}

/**
 * Inverse frequencies of every head: one row [R/2] per base, in head order.
 *
 * @example
 * ```ts
 * headInverseFrequencies([1e4, 1e6], 128).length; // 2
 * ```
 */
export function headInverseFrequencies(bases: readonly number[], rotaryDim: number): Float64Array[] {
  return bases.map((base) => baseInverseFrequencies(base, rotaryDim));
}

/**
 * Wavelength in tokens of a base's lowest frequency, 2*pi*base^((R-2)/R): the longest relative
 * distance the head can tell apart before its slowest rotation wraps around.
 *
 * @example
 * ```ts
 * lowestWavelength(10000, 128); // ~54410
 * ```
 */
export function lowestWavelength(base: number, rotaryDim: number): number {
  return 2 * Math.PI * Math.pow(base, (rotaryDim - 2) / rotaryDim);
}

/**
 * The attention waveform of a base at relative distances `positions`:
 * w_b(m) = (2/sqrt(R)) * sum_i cos(m * base^(-2i/R)).
 *
 * @example
 * ```ts
 * waveform(10000, [0], { rotaryDim: 128 })[0]; // 2/sqrt(128) * 64 = 11.31...
 * ```
 */
export function waveform(
  base: number,
  positions: ArrayLike<number>,
  options: { rotaryDim: number },
): Float64Array {
  const { rotaryDim } = options;
  const freqs = baseInverseFrequencies(base, rotaryDim);
  const scale = 2 / Math.sqrt(rotaryDim);
  const out = new Float64Array(positions.length);
  for (let j = 0; j < positions.length; j++) {
    const m = positions[j];
    let sum = 0;
    for (let i = 0; i < freqs.length; i++) sum += Math.cos(m * freqs[i]);
    out[j] = scale * sum;
  }
  return out;
}

/**
 * The waveform on an evenly spaced grid m = start, start+step, ... (count points), computed with
 * one complex rotation per frequency and point instead of a cosine (fast for long windows).
 * Each rotation is re-anchored with an exact cosine every {@link REANCHOR_INTERVAL} points so rounding
 * cannot drift.
 *
 * @example
 * ```ts
 * waveformOnGrid(1e6, { rotaryDim: 128, start: 0, step: 16, count: 8192 });
 * ```
 */
export function waveformOnGrid(
  base: number,
  grid: { rotaryDim: number; start: number; step: number; count: number },
): Float64Array {
  const freqs = baseInverseFrequencies(base, grid.rotaryDim);
  const scale = 2 / Math.sqrt(grid.rotaryDim);
  const out = new Float64Array(grid.count);
  for (let i = 0; i < freqs.length; i++) {
    const f = freqs[i];
    const stepCos = Math.cos(grid.step * f);
    const stepSin = Math.sin(grid.step * f);
    let c = 0;
    let s = 0;
    for (let j = 0; j < grid.count; j++) {
      if (j % REANCHOR_INTERVAL === 0) {
        const angle = (grid.start + j * grid.step) * f;
        c = Math.cos(angle);
        s = Math.sin(angle);
      } else {
        const nc = c * stepCos - s * stepSin;
        s = s * stepCos + c * stepSin;
        c = nc;
      }
      out[j] += c;
    }
  }
  for (let j = 0; j < grid.count; j++) out[j] *= scale;
  return out;
}

/** Points between exact re-evaluations of the rotation recurrence in {@link waveformOnGrid}. */
export const REANCHOR_INTERVAL = 1024;
