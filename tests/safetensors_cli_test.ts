// Hostile safetensors files through the CLI: `harpe inspect` and `harpe export` exit with code 2, print
// one line naming the file, and leave no output (nor temporary) directory behind.

import { assertEquals, assertStringIncludes } from "./assert.ts";
import { listDir, PROJECT_ROOT, runHarpe, withTempDir } from "./harness.ts";
import { HOSTILE_CASES } from "./safetensors_hostile_cases.ts";

/** CLI runs in flight at once (each is a separate Deno process). */
const CONCURRENCY = 4;
/** `inspect` runs on every n-th class (export, which must also leave no output, runs on all): each CLI
 * process costs ~0.35 s of CPU, and the suite must stay fast on 2 cores. */
const INSPECT_EVERY = 3;
const CONFIG = `${PROJECT_ROOT}fixtures/golden/llama_mha/checkpoint/config.json`;

async function checkCase(dir: string, bytes: Uint8Array, inspect: boolean): Promise<void> {
  const checkpoint = `${dir}/ckpt`;
  await Deno.mkdir(checkpoint);
  await Deno.copyFile(CONFIG, `${checkpoint}/config.json`);
  await Deno.writeFile(`${checkpoint}/model.safetensors`, bytes);
  const runs = [["export", checkpoint, "-o", `${dir}/out`, "--dtype", "bf16"]];
  if (inspect) runs.push(["inspect", checkpoint]);
  for (const args of runs) {
    const { code, stdout, stderr } = await runHarpe(args);
    assertEquals(code, 2, `${args[0]} exit code (stderr: ${stderr})`);
    assertEquals(stdout, "", `${args[0]} prints nothing on stdout`);
    const lines = stderr.trimEnd().split("\n");
    assertEquals(lines.length, 1, `${args[0]} prints one line: ${stderr}`);
    assertStringIncludes(lines[0], `harpe ${args[0]}: `);
    assertStringIncludes(lines[0], "model.safetensors");
  }
  assertEquals(await listDir(dir), ["ckpt"], "no output or temporary directory left behind");
}

Deno.test(`CLI: ${HOSTILE_CASES.length} hostile safetensors classes give exit code 2, one line, no output`, async () => {
  const failures: string[] = [];
  const queue = HOSTILE_CASES.map((hostile, i) => ({ ...hostile, inspect: i % INSPECT_EVERY === 0 }));
  async function worker(): Promise<void> {
    for (let hostile = queue.shift(); hostile; hostile = queue.shift()) {
      const { name, bytes, inspect } = hostile;
      await withTempDir((dir) => checkCase(dir, bytes, inspect)).catch((error) =>
        failures.push(`${name}: ${error.message}`)
      );
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  assertEquals(failures, []);
});
