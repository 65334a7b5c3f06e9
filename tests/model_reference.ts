// A float64 decoder written naively from the HF definitions (independent of lib/model), and tiny
// random configs and weights: the oracle of the model tests.

import type { ModelConfig } from "../lib/checkpoint/model_config.ts";
import { parameterTable } from "../lib/checkpoint/tensor_table.ts";
import { refAttention, refMatmul, refRmsnorm, refRope } from "./engine_cpu_reference.ts";

/** A tiny Llama config; `overrides` change any field. */
export function tinyConfig(overrides: Partial<ModelConfig> = {}): ModelConfig {
  const base: ModelConfig = {
    architecture: "llama",
    architectureClass: "LlamaForCausalLM",
    vocabSize: 11,
    hiddenSize: 8,
    intermediateSize: 12,
    numLayers: 2,
    numHeads: 2,
    numKvHeads: 2,
    headDim: 4,
    rmsNormEps: 1e-5,
    maxPositionEmbeddings: 64,
    tieWordEmbeddings: false,
    qkvBias: false,
    outputBias: false,
    mlpBias: false,
    qkNorm: false,
    rope: { type: "default", theta: 10000, rotaryDim: 4 },
    dtype: "float32",
    raw: {},
  };
  return { ...base, ...overrides };
}

/** Random weights for every parameter of `config`, already rounded to f32. Norm weights near 1. */
export function randomWeights(config: ModelConfig, rand: () => number): Map<string, Float64Array> {
  return new Map(
    parameterTable(config).map((spec) => {
      const size = spec.shape.reduce((a, b) => a * b, 1);
      const isNorm = spec.role.endsWith("norm");
      const values = Float64Array.from({ length: size }, () => (isNorm ? 1 + 0.3 * rand() : 0.6 * rand()));
      return [spec.name, Float64Array.from(Float32Array.from(values))];
    }),
  );
}

/** Bases per query head and per rotated key head (K entries at `kv`, H at `query`). */
function bases(config: ModelConfig): { query: number[]; key: number[] } {
  const { numHeads: H, numKvHeads: K, rope } = config;
  if (!rope.harpe) return { query: new Array(H).fill(rope.theta), key: new Array(K).fill(rope.theta) };
  const b = rope.harpe.headBases;
  if (rope.harpe.granularity === "query") return { query: b, key: b };
  return { query: Array.from({ length: H }, (_, h) => b[Math.floor((h * K) / H)]), key: b };
}

/** Logits [B*T, V] and the mean cross-entropy of `targets` (-1 ignored) in float64. */
export function referenceDecoder(
  config: ModelConfig,
  weights: Map<string, Float64Array>,
  input: {
    tokens: ArrayLike<number>;
    targets: ArrayLike<number>;
    batch: number;
    positions: ArrayLike<number>;
  },
): { logits: Float64Array; loss: number } {
  const { hiddenSize: C, intermediateSize: F, numHeads: H, numKvHeads: K, headDim: D, vocabSize: V } = config;
  const eps = config.rmsNormEps;
  const N = input.tokens.length, B = input.batch, T = N / B;
  const w = (name: string) => weights.get(name)!;
  const linear = (x: Float64Array, name: string, rowsOut: number, cols: number) => {
    const y = refMatmul(x, w(`${name}.weight`), N, rowsOut, cols, false, true);
    const bias = weights.get(`${name}.bias`);
    if (bias) { for (let i = 0; i < y.length; i++) y[i] += bias[i % rowsOut]; }
    return y;
  };
  const add = (a: Float64Array, b: Float64Array) => a.map((x, i) => x + b[i]);
  const { query: qBases, key: kBases } = bases(config);
  const R = config.rope.rotaryDim;
  let x = new Float64Array(N * C);
  for (let n = 0; n < N; n++) {
    x.set(w("model.embed_tokens.weight").subarray(input.tokens[n] * C, (input.tokens[n] + 1) * C), n * C);
  }
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    const h = refRmsnorm(x, w(`${p}.input_layernorm.weight`), eps);
    let q = linear(h, `${p}.self_attn.q_proj`, H * D, C);
    let k = linear(h, `${p}.self_attn.k_proj`, K * D, C);
    const v = linear(h, `${p}.self_attn.v_proj`, K * D, C);
    if (config.qkNorm) {
      q = refRmsnorm(q, w(`${p}.self_attn.q_norm.weight`), eps);
      k = refRmsnorm(k, w(`${p}.self_attn.k_norm.weight`), eps);
    }
    const qr = refRope(q, input.positions, qBases, { hx: H, d: D, rotary: R });
    const kr = refRope(k, input.positions, kBases, { hx: K, d: D, rotary: R });
    const att = refAttention(qr, kr, v, { b: B, t: T, h: H, hk: kBases.length, hv: K, d: D }).out;
    x = add(x, linear(att, `${p}.self_attn.o_proj`, C, H * D));
    const h2 = refRmsnorm(x, w(`${p}.post_attention_layernorm.weight`), eps);
    const g = linear(h2, `${p}.mlp.gate_proj`, F, C), u = linear(h2, `${p}.mlp.up_proj`, F, C);
    const a = g.map((gi, i) => (gi / (1 + Math.exp(-gi))) * u[i]);
    x = add(x, linear(a, `${p}.mlp.down_proj`, C, F));
  }
  const hf = refRmsnorm(x, w("model.norm.weight"), eps);
  const head = weights.get("lm_head.weight") ?? w("model.embed_tokens.weight");
  const logits = refMatmul(hf, head, N, V, C, false, true);
  let sum = 0, counted = 0;
  for (let n = 0; n < N; n++) {
    const target = input.targets[n];
    if (target < 0) continue;
    const row = logits.subarray(n * V, (n + 1) * V);
    const max = Math.max(...row);
    sum += max + Math.log(row.reduce((s, z) => s + Math.exp(z - max), 0)) - row[target];
    counted++;
  }
  return { logits, loss: sum / counted };
}
