// The CUDA engine under the real model: both golden cases through verifyReference (and the CLI's
// `verify-reference --device cuda`), and a 100-step training run on the GPU that follows the CPU
// run's loss curve from the same init and data. GPU only.

import { CpuEngine } from "../lib/engine/cpu/mod.ts";
import type { Engine } from "../lib/engine/engine.ts";
import { loadModel } from "../lib/model/load.ts";
import { verifyReference } from "../lib/model/verify_reference.ts";
import { AdamW } from "../lib/train/optimizer.ts";
import { assert, assertEquals } from "./assert.ts";
import { cudaEngine, GPU_TEST } from "./cuda_compare.ts";
import { PROJECT_ROOT, runHarpe } from "./harness.ts";

const GOLDEN = ["llama_mha", "llama_gqa_tied_bf16_sharded"];
/** Steps of the loss-curve comparison. */
const STEPS = 100;
/** Largest accepted |loss_cuda - loss_cpu| at any step: f32 on both sides; the runs start equal to
 * ~1e-6 and drift apart only through rounding amplified by 100 optimizer steps. */
const LOSS_CURVE_TOLERANCE = 5e-3;

for (const name of GOLDEN) {
  Deno.test({
    name: `cuda golden ${name}: logits, loss and every gradient within the CPU tolerances (f32)`,
    ...GPU_TEST,
    async fn() {
      const report = await verifyReference(`${PROJECT_ROOT}fixtures/golden/${name}`, {
        engine: await cudaEngine(),
      });
      console.log(
        `${name}: logits ${report.logitsHarpe.toExponential(2)}, loss ${report.loss.toExponential(2)}, ` +
          `max grad ${report.maxGradient.toExponential(2)}`,
      );
      assert(report.passed, `golden case ${name} failed on cuda: ${JSON.stringify(report)}`);
    },
  });
}

Deno.test({
  name: "cuda: harpe verify-reference --device cuda passes on a golden case",
  ...GPU_TEST,
  async fn() {
    const result = await runHarpe([
      "verify-reference",
      "fixtures/golden/llama_mha",
      "--device",
      "cuda",
      "--json",
    ]);
    assertEquals(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout);
    assert(report.passed && String(report.device).startsWith("cuda"), result.stdout);
  },
});

/** Token windows from the corpus: byte values as ids (learnable, unlike random ids). */
async function corpusBatches(batch: number, seq: number): Promise<Int32Array> {
  const dir = `${PROJECT_ROOT}fixtures/corpus`;
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".txt")).sort();
  const text = (await Promise.all(names.map((n) => Deno.readFile(`${dir}/${n}`)))).flatMap((b) => [...b]);
  return Int32Array.from(text.slice(0, STEPS * batch * seq + 1));
}

async function lossCurve(engine: Engine, data: Int32Array, batch: number, seq: number): Promise<number[]> {
  const model = await loadModel(engine, `${PROJECT_ROOT}fixtures/tiny`);
  const opt = new AdamW(engine, model.layout, model, {
    beta1: 0.9,
    beta2: 0.95,
    eps: 1e-8,
    weightDecay: 0.1,
  });
  const losses: number[] = [];
  const n = batch * seq;
  for (let step = 1; step <= STEPS; step++) {
    const start = (step - 1) * n;
    model.zeroGrads();
    const loss = await model.forwardBackward(
      data.slice(start, start + n),
      data.slice(start + 1, start + n + 1),
      {
        batch,
      },
    );
    const norm = await opt.gradNorm();
    opt.step({ lr: 3e-3, step, gradScale: Math.min(1, 1 / norm) });
    losses.push(loss);
  }
  return losses;
}

Deno.test({
  name: `cuda: ${STEPS} training steps follow the CPU loss curve (same init and data)`,
  ...GPU_TEST,
  async fn() {
    const [batch, seq] = [4, 32];
    const data = await corpusBatches(batch, seq);
    const cpu = await lossCurve(new CpuEngine(), data, batch, seq);
    const gpu = await lossCurve(await cudaEngine(), data, batch, seq);
    const gaps = cpu.map((l, i) => Math.abs(l - gpu[i]));
    const worst = Math.max(...gaps);
    console.log(
      `loss cpu ${cpu[0].toFixed(4)} -> ${cpu[STEPS - 1].toFixed(4)}, cuda ${gpu[0].toFixed(4)} -> ` +
        `${gpu[STEPS - 1].toFixed(4)}, max gap ${worst.toExponential(2)} at step ${gaps.indexOf(worst) + 1}`,
    );
    assert(cpu[STEPS - 1] < cpu[0] - 1, "the CPU run did not learn, so the comparison says little");
    assert(worst <= LOSS_CURVE_TOLERANCE, `loss curves differ by ${worst} (> ${LOSS_CURVE_TOLERANCE})`);
  },
});
