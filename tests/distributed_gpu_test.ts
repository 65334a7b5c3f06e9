// NCCL on real GPUs (skipped without them; NOT YET RUN anywhere): with one GPU, a one-rank NCCL
// communicator through the file rendezvous (all-reduce and broadcast leave f32/bf16 tensors as they
// are, barrier, version); with two, `harpe train --gpus 2` follows the 1-GPU loss curve of the same
// train.yaml and writes one log and one set of checkpoints.

import { assert, assertEquals } from "./assert.ts";
import { GPU, GPU_TEST } from "./cuda_compare.ts";
import { DENO_RUN, PROJECT_ROOT, withTempDir, writeCorpusTokens } from "./harness.ts";
import { Driver } from "../lib/engine/cuda/ffi/driver.ts";
import { CudaEngine } from "../lib/engine/cuda/mod.ts";
import { NcclCommunicator } from "../lib/distributed/nccl_communicator.ts";
import { parseRendezvous } from "../lib/distributed/mod.ts";
import { readLog } from "../lib/train/mod.ts";

const GPUS = GPU ? Driver.open().deviceCount() : 0;
const STEPS = 20;
/** Largest accepted relative difference of 2-GPU vs 1-GPU losses (f32 training; on the CPU simulation
 * the difference is 5e-8, float reordering; cuBLAS may pick other kernels for the half batch). */
const LOSS_RTOL = 1e-4;
const HARPE = [
  ...DENO_RUN,
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-ffi",
  "--allow-run",
  "--allow-sys",
];

Deno.test({
  name: "NCCL, one rank on one GPU: all-reduce and broadcast are identities, barrier returns",
  ...GPU_TEST,
  async fn() {
    await withTempDir(async (dir) => {
      const engine = await CudaEngine.open();
      const comm = await NcclCommunicator.create(engine, {
        rank: 0,
        worldSize: 1,
        rendezvous: parseRendezvous(`file:${dir}/rendezvous`),
      });
      const values = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 3);
      for (const dtype of ["f32", "bf16"] as const) {
        const t = engine.alloc([values.length], dtype);
        engine.upload(t, values);
        const before = await engine.download(t);
        await comm.allReduceSum(t);
        await comm.broadcast(t);
        assertEquals([...await engine.download(t)], [...before]);
        engine.free(t);
      }
      await comm.barrier();
      comm.destroy();
      engine.dispose();
    });
  },
});

async function harpe(args: string[]) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [...HARPE, `${PROJECT_ROOT}cli/main.ts`, ...args],
    cwd: PROJECT_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

Deno.test({
  name: "harpe train --gpus 2 follows the 1-GPU loss curve of the same train.yaml",
  ...GPU_TEST,
  ignore: GPUS < 2,
  async fn() {
    await withTempDir(async (dir) => {
      await writeCorpusTokens(`${dir}/train.tokens`);
      await Deno.writeTextFile(
        `${dir}/train.yaml`,
        [
          `model: ${PROJECT_ROOT}fixtures/tiny`,
          "data: train.tokens",
          "seq_len: 64",
          "batch: 4",
          "grad_accum: 2",
          `steps: ${STEPS}`,
          "optimizer: {lr: 0.003}",
          "checkpoint: {every: 10}",
          "device: cuda",
          "seed: 1",
        ].join("\n") + "\n",
      );
      const one = await harpe(["train", "--config", `${dir}/train.yaml`, "--out", `${dir}/one`]);
      assertEquals(one.code, 0, one.stderr);
      const two = await harpe([
        "train",
        "--config",
        `${dir}/train.yaml`,
        "--out",
        `${dir}/two`,
        "--gpus",
        "2",
      ]);
      assertEquals(two.code, 0, two.stderr);
      const a = await readLog(`${dir}/one/log.jsonl`);
      const b = await readLog(`${dir}/two/log.jsonl`);
      assertEquals(b.map((r) => r.step), a.map((r) => r.step));
      const worst = Math.max(
        ...a.map((r, i) => Math.abs((b[i].loss as number) - (r.loss as number)) / (r.loss as number)),
      );
      console.log(
        `2 GPUs vs 1: largest relative loss difference ${worst.toExponential(2)} over ${STEPS} steps`,
      );
      assert(worst <= LOSS_RTOL, `2-GPU losses within ${LOSS_RTOL} of 1-GPU (worst ${worst})`);
      for (const step of [10, 20]) await Deno.stat(`${dir}/two/checkpoints/step-${step}/trainer_state.json`);
      const leftover = await Deno.stat(`${dir}/two/rendezvous`).then(() => true, () => false);
      assert(!leftover, "rank 0 removed the rendezvous file once every rank had joined");
    });
  },
});
