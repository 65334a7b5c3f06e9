// The Model API the training loop relies on: the layout table, weights in and out, gradient
// accumulation and scaling, batch/position checks, loading a sharded bf16 checkpoint, and a few AdamW
// steps lowering the loss.

import { parseConfig } from "../lib/checkpoint/config.ts";
import { Checkpoint } from "../lib/checkpoint/checkpoint.ts";
import { parameterTable } from "../lib/checkpoint/tensor_table.ts";
import { CpuEngine } from "../lib/engine/cpu/mod.ts";
import { IGNORE_INDEX } from "../lib/engine/engine.ts";
import { ShapeError } from "../lib/errors.ts";
import { loadModel, Model, parameterLayout } from "../lib/model/mod.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { makeRandom, relativeError } from "./engine_cpu_reference.ts";
import { randomWeights, tinyConfig } from "./model_reference.ts";

const GOLDEN = new URL("../fixtures/golden/", import.meta.url).pathname;

function tinyModel(seed?: number) {
  const random = makeRandom(seed);
  const config = tinyConfig({ numHeads: 4, numKvHeads: 2, qkvBias: true });
  const weights = new Map([...randomWeights(config, random.next)].map(([k, v]) => [k, Float32Array.from(v)]));
  const engine = new CpuEngine();
  return { config, weights, engine, model: Model.create(engine, config, { weights }), random };
}

Deno.test("layout: one slot per table entry, back to back, hand-counted total", () => {
  const config = tinyConfig({ tieWordEmbeddings: true });
  const layout = parameterLayout(config);
  const table = parameterTable(config);
  assertEquals(layout.slots.map((s) => s.name), table.map((s) => s.name));
  let offset = 0;
  for (const slot of layout.slots) {
    assertEquals(slot.offset, offset);
    offset += slot.size;
  }
  // V*C + L * (C + 4 * (H*D*C) + C + 3 * F*C) + C with V 11, C 8, H*D 8, F 12, L 2.
  assertEquals(layout.size, 88 + 2 * (8 + 4 * 64 + 8 + 3 * 96) + 8);
});

Deno.test("weights round-trip through the model; wrong or missing weights are refused", async () => {
  const { config, weights, model, engine } = tinyModel();
  const exported = await model.exportWeights();
  assertEquals([...exported.keys()], [...weights.keys()]);
  for (const [name, values] of weights) assertEquals([...exported.get(name)!], [...values]);
  assertThrows(() => model.setParameter("model.norm.weight", new Float32Array(3)), ShapeError, "expected 8");
  assertThrows(() => model.parameter("nope"), ShapeError);
  const partial = new Map(weights);
  partial.delete("model.norm.weight");
  assertThrows(() => Model.create(engine, config, { weights: partial }), ShapeError, "model.norm.weight");
});

Deno.test("gradients accumulate across calls, scale with gradScale, and zeroGrads clears them", async () => {
  const { model, config, random } = tinyModel();
  const tokens = Int32Array.from(
    { length: 8 },
    () => Math.floor(((random.next() + 1) / 2) * config.vocabSize),
  );
  const targets = Int32Array.from(
    tokens.map((_, i) => (i === 3 || i === 7 ? IGNORE_INDEX : tokens[(i + 1) % 8])),
  );
  model.zeroGrads();
  const loss1 = await model.forwardBackward(tokens, targets, { batch: 2 });
  const once = await model.exportGradients();
  const loss2 = await model.forwardBackward(tokens, targets, { batch: 2, gradScale: 0.5 });
  assertEquals(loss1, loss2);
  const twice = await model.exportGradients();
  for (const [name, g] of once) {
    assert(relativeError(twice.get(name)!, g.map((x) => 1.5 * x)) < 1e-6, name);
  }
  model.zeroGrads();
  assert((await model.exportGradients()).get("model.norm.weight")!.every((x) => x === 0));
});

Deno.test("batch, targets and positions are checked", async () => {
  const { model } = tinyModel();
  const tokens = new Int32Array(6);
  await assertRejects(() => model.forward(tokens, { batch: 4 }), ShapeError, "do not split");
  await assertRejects(() => model.forwardBackward(tokens, new Int32Array(5)), ShapeError);
  await assertRejects(() => model.forwardBackward(tokens, new Int32Array(6).fill(IGNORE_INDEX)), ShapeError);
  await assertRejects(() => model.forward(tokens, { positions: new Int32Array(2) }), ShapeError, "positions");
  await assertRejects(() => model.forward(Int32Array.from([0, 1, 99])), ShapeError, "vocabulary");
});

Deno.test("loadModel reads a sharded bf16 checkpoint into the layout", async () => {
  const dir = `${GOLDEN}llama_gqa_tied_bf16_sharded/checkpoint`;
  const model = await loadModel(new CpuEngine(), dir);
  const checkpoint = await Checkpoint.open(dir);
  try {
    const config = parseConfig(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)));
    assertEquals(model.config.numKvHeads, config.numKvHeads);
    const exported = await model.exportWeights();
    for (
      const name of ["model.embed_tokens.weight", "model.layers.2.mlp.down_proj.weight", "model.norm.weight"]
    ) {
      assertEquals([...exported.get(name)!], [...await checkpoint.readF32(name)]);
    }
  } finally {
    checkpoint.close();
  }
});

Deno.test("a few AdamW steps on one batch lower the loss", async () => {
  const { model, engine, config, random } = tinyModel();
  const m = engine.alloc([model.layout.size]), v = engine.alloc([model.layout.size]);
  const tokens = Int32Array.from(
    { length: 12 },
    () => Math.floor(((random.next() + 1) / 2) * config.vocabSize),
  );
  const targets = Int32Array.from(tokens.map((_, i) => (i % 6 === 5 ? IGNORE_INDEX : tokens[i + 1])));
  const losses: number[] = [];
  for (let step = 1; step <= 10; step++) {
    model.zeroGrads();
    losses.push(await model.forwardBackward(tokens, targets, { batch: 2 }));
    engine.adamw({
      param: model.params,
      grad: model.grads,
      m,
      v,
      lr: 0.02,
      beta1: 0.9,
      beta2: 0.95,
      eps: 1e-8,
      weightDecay: 0,
      step,
    });
  }
  assert(losses[9] < 0.7 * losses[0], `losses ${losses.map((l) => l.toFixed(3)).join(" ")}`);
});

Deno.test("bf16 precision: close to f32 on moderate weights, and the working copy follows the parameters", async () => {
  const random = makeRandom();
  const config = tinyConfig({ numHeads: 4, numKvHeads: 2, hiddenSize: 16, intermediateSize: 24 });
  const weights = new Map(
    [...randomWeights(config, random.next)].map(([k, v]) => [k, Float32Array.from(v, (x) => 0.5 * x)]),
  );
  const tokens = Int32Array.from({ length: 16 }, (_, i) => (i * 7) % config.vocabSize);
  const targets = Int32Array.from(tokens, (_, i) => (i * 7 + 7) % config.vocabSize);
  const run = async (model: Model) => {
    const logits = await model.forward(tokens, { batch: 2 });
    model.zeroGrads();
    const loss = await model.forwardBackward(tokens, targets, { batch: 2 });
    return { logits, loss, grads: await model.exportGradients() };
  };
  const f32 = await run(Model.create(new CpuEngine(), config, { weights }));
  const bf16Model = Model.create(new CpuEngine(), config, { weights, precision: "bf16" });
  const bf16 = await run(bf16Model);
  assert(relativeError(bf16.logits, f32.logits) < 3e-2, `logits (seed ${random.seed})`);
  assert(Math.abs(bf16.loss - f32.loss) < 1e-2 * f32.loss, `loss (seed ${random.seed})`);
  for (const [name, g] of f32.grads) {
    assert(relativeError(bf16.grads.get(name)!, g) < 1e-1, `${name} (seed ${random.seed})`);
  }
  bf16Model.setParameter("model.norm.weight", new Float32Array(config.hiddenSize));
  assert((await bf16Model.forward(tokens, { batch: 2 })).every((x) => x === 0));
});

Deno.test("activation checkpointing gives the same loss and gradients", async () => {
  for (
    const overrides of [
      { numHeads: 4, numKvHeads: 2, qkvBias: true },
      {
        architecture: "qwen3" as const,
        qkNorm: true,
        numHeads: 4,
        numKvHeads: 2,
        rope: {
          type: "harpe",
          theta: 1e4,
          rotaryDim: 4,
          harpe: { headBases: [10, 100, 1e3, 1e4], granularity: "query" as const },
        },
      },
    ]
  ) {
    const random = makeRandom();
    const config = tinyConfig({ ...overrides, numLayers: 3 });
    const weights = new Map(
      [...randomWeights(config, random.next)].map(([k, v]) => [k, Float32Array.from(v)]),
    );
    const tokens = Int32Array.from({ length: 12 }, (_, i) => (i * 5) % config.vocabSize);
    const targets = Int32Array.from(tokens, (_, i) => (i % 6 === 5 ? IGNORE_INDEX : tokens[i + 1]));
    const results = [];
    for (const checkpointing of [false, true]) {
      const model = Model.create(new CpuEngine(), config, { weights, checkpointing });
      model.zeroGrads();
      const loss = await model.forwardBackward(tokens, targets, { batch: 2 });
      results.push({ loss, grads: await model.exportGradients() });
    }
    assertEquals(results[1].loss, results[0].loss);
    for (const [name, g] of results[0].grads) assertEquals([...results[1].grads.get(name)!], [...g], name);
  }
});
