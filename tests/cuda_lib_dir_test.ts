// `--cuda-lib-dir <dir>` reaches the CUDA engine's library lookup: a folder that does not exist is an
// input error (exit 2, one line naming it) on any machine, GPU or not; every command that opens an
// engine offers the flag.

import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { runHarpe } from "./harness.ts";

const MISSING = "/nonexistent/harpe-cuda-libs";

Deno.test("verify-reference --device cuda --cuda-lib-dir <missing>: exit 2 naming the folder", async () => {
  const result = await runHarpe([
    "verify-reference",
    "fixtures/golden/llama_mha",
    "--device",
    "cuda",
    "--cuda-lib-dir",
    MISSING,
  ]);
  assertEquals(result.code, 2);
  const lines = result.stderr.trim().split("\n");
  assertEquals(lines.length, 1);
  assertStringIncludes(lines[0], `harpe verify-reference: CUDA library folder "${MISSING}" does not exist`);
  assertStringIncludes(lines[0], "--cuda-lib-dir");
});

Deno.test("train, eval, generate and verify-reference offer --cuda-lib-dir", async () => {
  for (const command of ["train", "eval", "generate", "verify-reference"]) {
    const result = await runHarpe([command, "--help"]);
    assertEquals(result.code, 0, `${command} --help: ${result.stderr}`);
    assert(result.stdout.includes("--cuda-lib-dir <dir>"), `${command} --help lacks --cuda-lib-dir`);
  }
});
