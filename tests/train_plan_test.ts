// `plan:` in train.yaml: the model is converted with the plan into <out>/model, trained with HARPE
// bases, and a resume with another plan is refused.

import { assertEquals, assertStringIncludes } from "./assert.ts";
import { listDir, PROJECT_ROOT, runHarpe, withTempDir, writeCorpusTokens } from "./harness.ts";
import { readConfig } from "../lib/checkpoint/mod.ts";
import { makePlan, stringifyPlan } from "../lib/harpe/mod.ts";
import { sha256Hex } from "../lib/util/hash.ts";

const TINY = `${PROJECT_ROOT}fixtures/tiny`;

async function writePlan(path: string, bases: number[]): Promise<void> {
  const config = await readConfig(TINY);
  const plan = makePlan(config, {
    schedule: "explicit",
    targetLength: 128,
    parameters: { bases },
    checkpoint: TINY,
    configSha256: await sha256Hex(await Deno.readFile(`${TINY}/config.json`)),
  });
  await Deno.writeTextFile(path, stringifyPlan(plan));
}

Deno.test("harpe train with plan: converts into <out>/model, trains HARPE, refuses another plan on resume", async () => {
  await withTempDir(async (dir) => {
    await writeCorpusTokens(`${dir}/train.tokens`);
    await writePlan(`${dir}/plan.yaml`, [20000, 300000]);
    await Deno.writeTextFile(
      `${dir}/train.yaml`,
      `model: ${TINY}\nplan: plan.yaml\ndata: train.tokens\nout: run\nseq_len: 128\nsteps: 2\noptimizer: {lr: 0.001}\n`,
    );
    const result = await runHarpe(["train", "--config", `${dir}/train.yaml`]);
    assertEquals(result.code, 0, result.stderr);
    const converted = await readConfig(`${dir}/run/model`);
    assertEquals(converted.rope.harpe?.headBases, [20000, 300000]);
    assertEquals(converted.maxPositionEmbeddings, 128);
    const trained = await readConfig(`${dir}/run/latest`);
    assertEquals(trained.rope.harpe?.headBases, [20000, 300000]);
    assertEquals((await listDir(`${dir}/run/latest`)).includes("harpe_plan.yaml"), true);

    await writePlan(`${dir}/plan.yaml`, [20000, 400000]);
    const again = await runHarpe(["train", "--config", `${dir}/train.yaml`, "--resume", "--steps", "3"]);
    assertEquals(again.code, 2);
    assertStringIncludes(again.stderr, "another plan");
  });
});
