// Tests of lib/train: LR schedule values, one AdamW step against hand-computed numbers, the
// non-finite guard, checkpoint atomicity and discovery, train.yaml validation through the CLI.

import { assert, assertAlmostEquals, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { listDir, PROJECT_ROOT, runHarpe, withTempDir } from "./harness.ts";
import { CpuEngine } from "../lib/engine/cpu/mod.ts";
import type { Engine } from "../lib/engine/engine.ts";
import type { ParameterLayout, ParameterSlot } from "../lib/model/layout.ts";
import { PackedLoader } from "../lib/data/mod.ts";
import {
  AdamW,
  findLatestCheckpoint,
  learningRate,
  parseTrainConfig,
  readLog,
  runTraining,
  saveRunCheckpoint,
  type TrainableModel,
  TrainingDivergedError,
  TrainLog,
} from "../lib/train/mod.ts";

Deno.test("LR schedule: linear warmup, cosine to min_lr, constant", () => {
  const options = { lr: 1e-3, warmup: 10, kind: "cosine" as const, minLr: 1e-4, totalSteps: 110 };
  assertAlmostEquals(learningRate(1, options), 1e-4, 1e-15);
  assertAlmostEquals(learningRate(5, options), 5e-4, 1e-15);
  assertAlmostEquals(learningRate(10, options), 1e-3, 1e-15);
  assertAlmostEquals(learningRate(60, options), 5.5e-4, 1e-15); // halfway: min + (lr - min) / 2
  assertAlmostEquals(learningRate(35, options), 1e-4 + 9e-4 * (1 + Math.SQRT1_2) / 2, 1e-15); // a quarter
  assertAlmostEquals(learningRate(110, options), 1e-4, 1e-15);
  assertAlmostEquals(learningRate(80, { ...options, kind: "constant" }), 1e-3, 1e-15);
  assertAlmostEquals(
    learningRate(3, { ...options, warmup: 0 }),
    1e-4 + 9e-4 * (1 + Math.cos(Math.PI * 3 / 110)) / 2,
    1e-15,
  );
});

/** A layout with one [2, 2] matrix and one [2] norm weight. */
function smallLayout(): ParameterLayout {
  const slots: ParameterSlot[] = [
    { name: "w", role: "q_proj", layer: 0, shape: [2, 2], offset: 0, size: 4 },
    { name: "n", role: "attn_norm", layer: 0, shape: [2], offset: 4, size: 2 },
  ];
  return { slots, size: 6, byName: new Map(slots.map((s) => [s.name, s])) };
}

Deno.test("AdamW: two steps match hand-computed values; decay only on matrices; grad norm", async () => {
  const engine = new CpuEngine();
  const layout = smallLayout();
  const params = engine.alloc([6]);
  const grads = engine.alloc([6]);
  engine.upload(params, new Float32Array(6).fill(1));
  engine.upload(grads, new Float32Array(6).fill(0.5));
  const opt = new AdamW(engine, layout, { params, grads }, {
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0.1,
  });
  assertAlmostEquals(await opt.gradNorm(), Math.sqrt(1.5), 1e-7);
  // Step 1: m_hat = g, v_hat = g^2, so the Adam direction is g/|g| = 1; p = 1 - lr * (1 + wd * p).
  opt.step({ lr: 0.1, step: 1 });
  let p = await engine.download(params);
  for (let i = 0; i < 4; i++) assertAlmostEquals(p[i], 0.89, 1e-6, 0, `matrix ${i}`);
  for (let i = 4; i < 6; i++) assertAlmostEquals(p[i], 0.9, 1e-6, 0, `norm ${i}`);
  const state = await opt.state();
  assertAlmostEquals(state.m[0], 0.05, 1e-8);
  assertAlmostEquals(state.v[0], 0.00025, 1e-10);
  // Step 2 with the same gradient: m = 0.095, m_hat = 0.095 / 0.19 = 0.5, v_hat = 0.25: direction 1 again.
  opt.step({ lr: 0.1, step: 2 });
  p = await engine.download(params);
  assertAlmostEquals(p[0], 0.89 - 0.1 * (1 + 0.1 * 0.89), 1e-6);
  assertAlmostEquals(p[4], 0.8, 1e-6);
  // gradScale scales g before the moments: m = 0.1 * (0.5 * 0.5).
  const fresh = new AdamW(engine, layout, { params, grads }, {
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0,
  });
  fresh.step({ lr: 0.1, step: 1, gradScale: 0.5 });
  assertAlmostEquals((await fresh.state()).m[3], 0.025, 1e-8);
});

/** A model with loss 0.5 * |p|^2 (gradient p) whose listed calls return NaN. */
function quadraticModel(engine: Engine, nanCalls: Set<number>): TrainableModel & { calls: number } {
  const layout = smallLayout();
  const params = engine.alloc([6]);
  const grads = engine.alloc([6]);
  engine.upload(params, new Float32Array([1, 2, 3, 4, 5, 6]));
  return {
    engine,
    layout,
    params,
    grads,
    config: { raw: { model_type: "test" } },
    calls: 0,
    zeroGrads() {
      engine.fill({ out: grads, value: 0 });
    },
    async forwardBackward(_inputs, _targets, options) {
      this.calls++;
      const p = await engine.download(params) as Float32Array;
      const g = await engine.download(grads) as Float32Array;
      const bad = nanCalls.has(this.calls);
      for (let i = 0; i < 6; i++) g[i] += options.gradScale * (bad ? NaN : p[i]);
      engine.upload(grads, g);
      return bad ? NaN : 0.5 * p.reduce((s, x) => s + x * x, 0);
    },
  };
}

async function runQuadratic(dir: string, nanCalls: number[], extra: Record<string, unknown> = {}) {
  const engine = new CpuEngine();
  const model = quadraticModel(engine, new Set(nanCalls));
  const config = parseTrainConfig({
    model: "m",
    data: "d",
    out: dir,
    seq_len: 4,
    steps: 5,
    optimizer: { lr: 0.1 },
    schedule: { kind: "constant" },
    checkpoint: { every: 100 },
    ...extra,
  });
  const data = { tokens: new Uint16Array([2, 3, 4, 5, 6, 7, 8]), docOffsets: [0, 7] };
  const loader = new PackedLoader(data, { seqLen: 4, batch: 1, seed: 0, eosId: 1 });
  const optimizer = new AdamW(engine, model.layout, model, {
    beta1: 0.9,
    beta2: 0.95,
    eps: 1e-8,
    weightDecay: 0,
  });
  const log = await TrainLog.open(`${dir}/log.jsonl`, { keepThroughStep: 0 });
  const state = {
    step: 0,
    updates: 0,
    tokens: 0,
    skipped: 0,
    badStepsInRow: 0,
    loader: loader.cursor(),
    config,
  };
  return {
    model,
    run: () => runTraining(model, loader, { config, runDir: dir, state, optimizer, log, progress: false }),
  };
}

Deno.test("guard: a NaN step is skipped (no update), logged, and the run goes on", async () => {
  await withTempDir(async (dir) => {
    const { model, run } = await runQuadratic(dir, [3]);
    const before = Array.from(await model.engine.download(model.params));
    const final = await run();
    assertEquals(final.step, 5);
    assertEquals(final.updates, 4);
    assertEquals(final.skipped, 1);
    const log = await readLog(`${dir}/log.jsonl`);
    assertEquals(log.map((r) => r.skipped), [false, false, true, false, false]);
    assertEquals(log[2].loss, null);
    assertEquals(log[2].skipped_total, 1);
    assert(log[3].loss! < log[1].loss!, "training continued after the skipped step");
    const after = Array.from(await model.engine.download(model.params));
    assert(after.every((x, i) => Math.abs(x) < Math.abs(before[i])), "parameters moved toward 0");
    assertEquals(await listDir(`${dir}/checkpoints`), ["step-5"]);
  });
});

Deno.test("guard: max_bad_steps_in_row non-finite steps stop the run with a clear error", async () => {
  await withTempDir(async (dir) => {
    const { run } = await runQuadratic(dir, [2, 3], { max_bad_steps_in_row: 2 });
    const error = await assertRejects(run, TrainingDivergedError, "2 steps in a row");
    assertEquals(error.step, 3);
    assertEquals((await readLog(`${dir}/log.jsonl`)).length, 3);
  });
});

Deno.test("checkpoints: a failed save leaves no step dir and keeps latest; discovery skips incomplete dirs; stale temporaries go", async () => {
  await withTempDir(async (dir) => {
    const { model, run } = await runQuadratic(dir, [], { checkpoint: { every: 2 } });
    await run();
    assertEquals(await listDir(`${dir}/checkpoints`), ["step-2", "step-4", "step-5"]);
    assertEquals(await Deno.readLink(`${dir}/latest`), "checkpoints/step-5");
    const broken = {
      ...model,
      engine: {
        ...model.engine,
        view: model.engine.view.bind(model.engine),
        download: () => Promise.reject(new Error("disk on fire")),
      },
    } as unknown as TrainableModel;
    const optimizer = { m: new Float32Array(6), v: new Float32Array(6) };
    const state = {
      step: 6,
      updates: 6,
      tokens: 0,
      skipped: 0,
      badStepsInRow: 0,
      loader: { epoch: 0, doc: 0, offset: 0, rng: [1, 2, 3, 4] as [number, number, number, number] },
      config: {},
    };
    await assertRejects(
      () => saveRunCheckpoint(dir, { model: { ...broken, rawConfig: {} }, optimizer, state }),
      Error,
      "disk on fire",
    );
    assertEquals(await listDir(`${dir}/checkpoints`), ["step-2", "step-4", "step-5"]);
    assertEquals(await findLatestCheckpoint(dir), `${dir}/checkpoints/step-5`);
    await Deno.mkdir(`${dir}/checkpoints/step-9`);
    await Deno.mkdir(`${dir}/checkpoints/.step-12.tmp-1-ab`);
    await Deno.remove(`${dir}/latest`);
    await Deno.symlink("checkpoints/step-9", `${dir}/latest`);
    assertEquals(await findLatestCheckpoint(dir), `${dir}/checkpoints/step-5`);
    const names = await listDir(`${dir}/checkpoints/step-5`);
    for (const f of ["config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"]) {
      assert(names.includes(f), `step-5 holds ${f}`);
    }
    const working = { engine: model.engine, layout: model.layout, params: model.params, rawConfig: {} };
    await saveRunCheckpoint(dir, { model: working, optimizer, state });
    assertEquals(await listDir(`${dir}/checkpoints`), ["step-2", "step-4", "step-5", "step-6", "step-9"]);
    assertEquals(await findLatestCheckpoint(dir), `${dir}/checkpoints/step-6`);
  });
});

Deno.test("harpe train: train.yaml errors are exit 2 with the field path; an existing run needs --resume", async () => {
  await withTempDir(async (dir) => {
    const base =
      `model: ${PROJECT_ROOT}fixtures/tiny\ndata: ${dir}/none.tokens\nout: ${dir}/run\nseq_len: 64\nsteps: 2\n`;
    await Deno.writeTextFile(`${dir}/train.yaml`, base + "optimizer: {lr: -1}\n");
    let result = await runHarpe(["train", "--config", `${dir}/train.yaml`]);
    assertEquals(result.code, 2);
    assertEquals(result.stderr.trim(), "harpe train: train.yaml: optimizer.lr must be a positive number");
    await Deno.writeTextFile(`${dir}/train.yaml`, base + "optimizer: {lr: 0.001}\nbatchsize: 3\n");
    result = await runHarpe(["train", "--config", `${dir}/train.yaml`]);
    assertEquals(result.code, 2);
    assertStringIncludes(result.stderr, "unknown field batchsize");
    await Deno.writeTextFile(`${dir}/train.yaml`, base + "optimizer: {lr: 0.001}\n");
    result = await runHarpe(["train", "--config", `${dir}/train.yaml`, "--seq-len", "0"]);
    assertEquals(result.code, 2);
    assertStringIncludes(result.stderr, "seq_len must be a positive integer");
    result = await runHarpe(["train", "--config", `${dir}/train.yaml`]);
    assertEquals(result.code, 2);
    assertStringIncludes(result.stderr, "none.tokens");
    await Deno.mkdir(`${dir}/run`);
    await Deno.writeTextFile(`${dir}/run/train.yaml`, "");
    result = await runHarpe(["train", "--config", `${dir}/train.yaml`]);
    assertEquals(result.code, 2);
    assertStringIncludes(result.stderr, "--resume");
  });
});

Deno.test("train.yaml: defaults, steps from tokens, exactly one of steps/tokens, paths in messages", async () => {
  const base = {
    model: "m",
    data: "d",
    out: "o",
    seq_len: 128,
    batch: 2,
    grad_accum: 3,
    optimizer: { lr: 1e-3 },
  };
  const fromTokens = parseTrainConfig({ ...base, tokens: 10_000 });
  assertEquals(fromTokens.steps, Math.ceil(10_000 / (128 * 2 * 3)));
  assertEquals(fromTokens.checkpoint.every, fromTokens.steps);
  assertEquals(fromTokens.optimizer.betas, [0.9, 0.95]);
  assertEquals(fromTokens.schedule, { kind: "cosine", warmup: 0, min_lr: 0 });
  const { ConfigError } = await import("../lib/errors.ts");
  const message = (raw: unknown) => {
    try {
      parseTrainConfig(raw, { file: "run.yaml" });
    } catch (error) {
      assert(error instanceof ConfigError, `ConfigError, got ${error}`);
      return error.message;
    }
    throw new Error("no error");
  };
  assertEquals(
    message({ ...base, steps: 1, tokens: 5 }),
    "run.yaml: steps or tokens must be given (exactly one)",
  );
  assertEquals(message({ ...base }), "run.yaml: steps or tokens must be given (exactly one)");
  assertEquals(message({ ...base, steps: 1, optimizer: {} }), "run.yaml: optimizer.lr is required");
  assertEquals(
    message({ ...base, steps: 1, optimizer: { lr: 1, betas: [0.9, 1] } }),
    "run.yaml: optimizer.betas[1] must be in [0, 1)",
  );
  assertEquals(
    message({ ...base, steps: 1, schedule: { kind: "linear" } }),
    "run.yaml: schedule.kind must be cosine or constant",
  );
  assertEquals(message({ ...base, steps: 1.5 }), "run.yaml: steps must be a positive integer");
  assertEquals(message([1]), "run.yaml: the file must be a mapping");
});
