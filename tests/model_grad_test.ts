// The decoder on the CPU engine against a float64 reference decoder: logits, loss, and every gradient
// against finite differences of the reference loss, for each architecture variant, on fresh random
// weights and tokens each run.

import type { ModelConfig } from "../lib/checkpoint/model_config.ts";
import { CpuEngine } from "../lib/engine/cpu/mod.ts";
import { IGNORE_INDEX } from "../lib/engine/engine.ts";
import { Model } from "../lib/model/model.ts";
import { assert } from "./assert.ts";
import { makeRandom, relativeError } from "./engine_cpu_reference.ts";
import { randomWeights, referenceDecoder, tinyConfig } from "./model_reference.ts";

const LOGITS_TOLERANCE = 1e-5;
const GRADIENT_TOLERANCE = 1e-4;
const FD_STEP = 1e-5;

const harpe = (headBases: number[], granularity: "kv" | "query", rotaryDim = 4) => ({
  type: "harpe",
  theta: 10000,
  rotaryDim,
  harpe: { headBases, granularity },
});

const VARIANTS: [string, Partial<ModelConfig>][] = [
  ["llama MHA, plain RoPE", {}],
  ["llama GQA with HARPE kv bases", { numHeads: 4, numKvHeads: 2, rope: harpe([100, 100000], "kv") }],
  ["qwen2 q/k/v bias", { architecture: "qwen2", qkvBias: true, rope: harpe([50, 5000], "kv") }],
  ["qwen3 q/k norm, explicit head_dim", {
    architecture: "qwen3",
    qkNorm: true,
    headDim: 6,
    numHeads: 4,
    numKvHeads: 2,
    rope: harpe([30, 3000], "kv", 6),
  }],
  ["partial rotary", { headDim: 8, numHeads: 2, numKvHeads: 1, rope: harpe([500], "kv", 4) }],
  ["tied embeddings", { tieWordEmbeddings: true, numHeads: 4, numKvHeads: 1 }],
  ["query granularity under GQA", {
    numHeads: 4,
    numKvHeads: 2,
    rope: harpe([10, 100, 1000, 10000], "query"),
  }],
  ["attention and mlp biases", { outputBias: true, qkvBias: true, mlpBias: true }],
];

for (const [name, overrides] of VARIANTS) {
  Deno.test(`model vs float64 reference and finite differences: ${name}`, async () => {
    const random = makeRandom();
    const config = tinyConfig(overrides);
    const weights = randomWeights(config, random.next);
    const batch = 2, seq = 5, N = batch * seq;
    const tokens = Int32Array.from(
      { length: N },
      () => Math.floor(((random.next() + 1) / 2) * config.vocabSize),
    );
    const targets = tokens.map((_, i) => (i % seq === seq - 1 ? IGNORE_INDEX : tokens[i + 1]));
    const positions = Int32Array.from({ length: N }, (_, i) => (i % seq) + (i < seq ? 0 : 37));
    const input = { tokens, targets, batch, positions };
    const where = `${name} (seed ${random.seed})`;

    const model = Model.create(new CpuEngine(), config, {
      weights: new Map([...weights].map(([k, v]) => [k, Float32Array.from(v)])),
    });
    const reference = referenceDecoder(config, weights, input);
    const logits = await model.forward(tokens, { batch, positions });
    const logitError = relativeError(logits, reference.logits);
    assert(logitError < LOGITS_TOLERANCE, `${where}: logits error ${logitError}`);

    model.zeroGrads();
    const loss = await model.forwardBackward(tokens, targets, { batch, positions });
    assert(
      Math.abs(loss - reference.loss) < LOGITS_TOLERANCE * reference.loss,
      `${where}: loss ${loss} vs ${reference.loss}`,
    );

    const grads = await model.exportGradients();
    for (const [param, values] of weights) {
      const numeric = new Float64Array(values.length);
      for (let i = 0; i < values.length; i++) {
        const saved = values[i];
        values[i] = saved + FD_STEP;
        const plus = referenceDecoder(config, weights, input).loss;
        values[i] = saved - FD_STEP;
        const minus = referenceDecoder(config, weights, input).loss;
        values[i] = saved;
        numeric[i] = (plus - minus) / (2 * FD_STEP);
      }
      const error = relativeError(grads.get(param)!, numeric);
      assert(error < GRADIENT_TOLERANCE, `${where}: gradient of ${param} off by ${error}`);
    }
  });
}
