// `harpe export --hf-remote-code` through the CLI: a HARPE checkpoint gets modeling_harpe.py and auto_map;
// a checkpoint without HARPE bases is refused with exit code 2 and no output.

import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { listDir, PROJECT_ROOT, runHarpe, withTempDir } from "./harness.ts";

const GOLDEN = `${PROJECT_ROOT}fixtures/golden/llama_gqa_tied_bf16_sharded/checkpoint`;

/** A copy of the golden checkpoint whose config.json carries HARPE bases (the contract's v5 + v4 form). */
async function harpeCopy(dir: string): Promise<string> {
  const out = `${dir}/harpe`;
  await Deno.mkdir(out);
  for (const name of await listDir(GOLDEN)) await Deno.copyFile(`${GOLDEN}/${name}`, `${out}/${name}`);
  const config = JSON.parse(await Deno.readTextFile(`${GOLDEN}/config.json`));
  const harpe = { head_bases: [1e4, 5e5], granularity: "kv" };
  config.rope_parameters = { rope_type: "harpe", rope_theta: 10000, ...harpe };
  config.rope_theta = 10000;
  config.rope_scaling = { rope_type: "harpe", type: "harpe", ...harpe };
  await Deno.writeTextFile(`${out}/config.json`, JSON.stringify(config));
  return out;
}

Deno.test("harpe export --hf-remote-code: adds modeling_harpe.py and auto_map, keeps the HARPE fields", async () => {
  await withTempDir(async (dir) => {
    const src = await harpeCopy(dir);
    const result = await runHarpe([
      "export",
      src,
      "-o",
      `${dir}/out`,
      "--dtype",
      "f32",
      "--hf-remote-code",
      "--json",
    ]);
    assertEquals(result.code, 0, result.stderr);
    assertEquals(JSON.parse(result.stdout).remote_code, ["modeling_harpe.py"]);
    const files = await listDir(`${dir}/out`);
    assert(files.includes("modeling_harpe.py"), `files: ${files}`);
    const config = JSON.parse(await Deno.readTextFile(`${dir}/out/config.json`));
    assertEquals(config.model_type, "harpe_llama");
    assertEquals(config.auto_map.AutoConfig, "modeling_harpe.HarpeConfig");
    assertEquals(config.rope_parameters.head_bases, [1e4, 5e5]);
    assertEquals(config.dtype, "float32", "the export's dtype change is kept");
    assertStringIncludes(
      await Deno.readTextFile(`${dir}/out/modeling_harpe.py`),
      'HARPE_ARCHITECTURE = "llama"',
    );
  });
});

Deno.test("harpe export --hf-remote-code: a plain-RoPE checkpoint is refused (exit 2, no output)", async () => {
  await withTempDir(async (dir) => {
    const result = await runHarpe(["export", GOLDEN, "-o", `${dir}/out`, "--hf-remote-code"]);
    assertEquals(result.code, 2, result.stderr);
    assertStringIncludes(result.stderr, "run harpe convert first");
    assertEquals((await listDir(dir)).length, 0);
  });
});
