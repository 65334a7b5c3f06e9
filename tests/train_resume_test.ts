// Resume is exact: a `harpe train` subprocess is SIGKILLed after its first checkpoint, resumed with
// --resume, and its log and final weights must equal an uninterrupted run's, bit for bit.

import { assert, assertEquals } from "./assert.ts";
import { harpeDenoArgs, PROJECT_ROOT, runHarpe, withTempDir, writeCorpusTokens } from "./harness.ts";
import { readLog } from "../lib/train/mod.ts";
import { SafetensorsFile } from "../lib/safetensors/mod.ts";

const STEPS = 24;
const POLL_MS = 10;

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

Deno.test("resume after SIGKILL gives bit-identical losses and weights", async () => {
  await withTempDir(async (dir) => {
    await writeCorpusTokens(`${dir}/train.tokens`, [
      "1790_george_washington_n.txt",
      "1813_james_madison_dr.txt",
    ]);
    await Deno.writeTextFile(
      `${dir}/train.yaml`,
      [
        `model: ${PROJECT_ROOT}fixtures/tiny`,
        "data: train.tokens",
        "out: full",
        "seq_len: 32",
        "batch: 2",
        "grad_accum: 2",
        `steps: ${STEPS}`,
        "optimizer: {lr: 0.003, weight_decay: 0.1}",
        "schedule: {kind: cosine, warmup: 4, min_lr: 0.0003}",
        "checkpoint: {every: 4}",
        "seed: 3",
      ].join("\n") + "\n",
    );
    const full = await runHarpe(["train", "--config", `${dir}/train.yaml`]);
    assertEquals(full.code, 0, full.stderr);

    const child = new Deno.Command(Deno.execPath(), {
      args: harpeDenoArgs(["train", "--config", `${dir}/train.yaml`, "--out", `${dir}/killed`]),
      stdout: "null",
      stderr: "null",
    }).spawn();
    while (!await exists(`${dir}/killed/checkpoints/step-4`)) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    child.kill("SIGKILL");
    const status = await child.status;
    assertEquals(status.signal, "SIGKILL");
    const partial = await readLog(`${dir}/killed/log.jsonl`);
    assert(partial.length < STEPS, `the run was interrupted (${partial.length} of ${STEPS} steps logged)`);

    const resumed = await runHarpe([
      "train",
      "--config",
      `${dir}/train.yaml`,
      "--out",
      `${dir}/killed`,
      "--resume",
      "--json",
    ]);
    assertEquals(resumed.code, 0, resumed.stderr);
    const startStep = JSON.parse(resumed.stdout).startStep;
    assert(startStep >= 4 && startStep % 4 === 0, `resumed from a checkpoint (step ${startStep})`);

    const a = await readLog(`${dir}/full/log.jsonl`);
    const b = await readLog(`${dir}/killed/log.jsonl`);
    assertEquals(b.map((r) => r.step), Array.from({ length: STEPS }, (_, i) => i + 1));
    assertEquals(b.map((r) => r.loss), a.map((r) => r.loss));
    assertEquals(b.map((r) => r.grad_norm), a.map((r) => r.grad_norm));
    const weights = (run: string) =>
      Deno.readFile(`${dir}/${run}/checkpoints/step-${STEPS}/model.safetensors`);
    assertEquals(await weights("killed"), await weights("full"));
    const embedding = async (path: string) => {
      const file = await SafetensorsFile.open(path);
      const values = await file.readF32("model.embed_tokens.weight");
      file.close();
      return values;
    };
    const initial = await embedding(`${PROJECT_ROOT}fixtures/tiny/model.safetensors`);
    const trained = await embedding(`${dir}/full/checkpoints/step-${STEPS}/model.safetensors`);
    assert(trained.some((x, i) => x !== initial[i]), "training changed the weights");
  });
});
