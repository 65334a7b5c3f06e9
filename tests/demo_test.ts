// Smoke test of `deno task demo`: the whole pipeline (tokenize, plan, convert, train 2 steps, export)
// into a temporary folder.

import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { DENO_RUN, listDir, PROJECT_ROOT, withTempDir } from "./harness.ts";

async function runDemo(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [...DENO_RUN, "--allow-read", "--allow-write", `${PROJECT_ROOT}demo/main.ts`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

Deno.test("demo runs end to end with 2 steps and says where everything went", async () => {
  await withTempDir(async (dir) => {
    const out = `${dir}/demo`;
    const result = await runDemo(["--out", out, "--steps", "2"]);
    assertEquals(result.code, 0, result.stderr);
    const match = /held-out loss at 256 tokens: ([\d.]+) before -> ([\d.]+) after/.exec(result.stdout);
    assert(match, `prints the held-out loss before and after:\n${result.stdout}`);
    const before = Number(match[1]);
    assert(before > 2 && before < 4.5, `the pretrained tiny model starts well below ln(512) (${before})`);
    assertStringIncludes(result.stdout, out);
    assertEquals(await listDir(out), [
      "data",
      "export",
      "harpe-demo.json",
      "model-harpe",
      "plan.yaml",
      "run",
    ]);
    assertEquals(await Deno.readLink(`${out}/run/latest`), "checkpoints/step-2");
    const exported = JSON.parse(await Deno.readTextFile(`${out}/export/config.json`));
    assertEquals(exported.torch_dtype, "bfloat16");
    assertEquals(exported.rope_parameters.rope_type, "harpe");
    assertEquals(exported.max_position_embeddings, 256);
    await Deno.mkdir(`${dir}/mine`);
    const refused = await runDemo(["--out", `${dir}/mine`, "--steps", "1"]);
    assertEquals(refused.code, 2, "a folder the demo did not make is not replaced");
    assertStringIncludes(refused.stderr, "was not made by the demo");
    assertEquals(refused.stderr.trim().split("\n").length, 1);
  });
});
