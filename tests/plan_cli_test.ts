// `harpe plan`: the Table 2 setting through the CLI, length forms, the YAML file, plots, bad input.

import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { listDir, runHarpe, withTempDir } from "./harness.ts";
import { readPlan } from "../lib/harpe/mod.ts";

const LLAMA2_CONFIG = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 4096,
  intermediate_size: 11008,
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 32,
  max_position_embeddings: 4096,
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  torch_dtype: "float16",
  vocab_size: 32000,
};

async function withLlama2<T>(body: (dir: string, config: string) => Promise<T>): Promise<T> {
  return await withTempDir(async (dir) => {
    const config = `${dir}/config.json`;
    await Deno.writeTextFile(config, JSON.stringify(LLAMA2_CONFIG, null, 2));
    return await body(dir, config);
  });
}

Deno.test("plan --json: the paper's Table 2 setting gives 32 bases on the grid, b_min first", async () => {
  await withLlama2(async (_, config) => {
    const result = await runHarpe([
      "plan",
      config,
      "--target-length",
      "131072",
      "--schedule",
      "peak-valley",
      "--b-min",
      "1e6",
      "--b-max",
      "5e6",
      "--stride",
      "3e4",
      "--json",
    ]);
    assertEquals(result.code, 0, result.stderr);
    const plan = JSON.parse(result.stdout);
    assertEquals(plan.head_bases.length, 32);
    assertEquals(plan.head_bases[0], 1e6);
    for (const base of plan.head_bases) {
      assert(Number.isInteger((base - 1e6) / 3e4) && base <= 5e6, `${base} off the grid`);
    }
    assertEquals(plan.target_length, 131072);
    assertEquals(plan.granularity, "kv");
    assertEquals(plan.source.config_sha256.length, 64);
  });
});

Deno.test("plan: 131072, 128k and 128K are the same target; the table and the YAML file", async () => {
  await withLlama2(async (dir, config) => {
    const targets: number[] = [];
    for (const length of ["131072", "128k", "128K"]) {
      const result = await runHarpe([
        "plan",
        config,
        "--target-length",
        length,
        "--schedule",
        "uniform",
        "--json",
      ]);
      assertEquals(result.code, 0, result.stderr);
      targets.push(JSON.parse(result.stdout).target_length);
    }
    assertEquals(targets, [131072, 131072, 131072]);
    const result = await runHarpe([
      "plan",
      dir,
      "--target-length",
      "64k",
      "--schedule",
      "uniform",
      "--b-min",
      "1e6",
      "--b-max",
      "4.1e6",
      "--order",
      "desc",
      "-o",
      `${dir}/plan.yaml`,
    ]);
    assertEquals(result.code, 0, result.stderr);
    const lines = result.stdout.trim().split("\n");
    assertStringIncludes(lines[1], "longest distance");
    const head0 = lines[3].trim().split(/\s+/).map(Number);
    // head 0, key head 0, base 4.1e6 (descending), 2*pi*4.1e6^(126/128)
    assertEquals(head0.slice(0, 3), [0, 0, 4.1e6]);
    assertEquals(head0[3], Math.round(2 * Math.PI * Math.pow(4.1e6, 126 / 128)));
    assertEquals(lines.length, 3 + 32 + 1);
    const plan = await readPlan(`${dir}/plan.yaml`);
    assertEquals(plan.headBases[31], 1e6);
    assertEquals(plan.parameters, { b_min: 1e6, b_max: 4.1e6, order: "desc" });
  });
});

Deno.test("plan --plot writes SVG and PNG", async () => {
  await withLlama2(async (dir, config) => {
    for (const file of ["bases.svg", "bases.png"]) {
      const result = await runHarpe([
        "plan",
        config,
        "--target-length",
        "8k",
        "--schedule",
        "geometric",
        "--b-min",
        "1e4",
        "--b-max",
        "1e5",
        "--plot",
        `${dir}/${file}`,
      ]);
      assertEquals(result.code, 0, result.stderr);
    }
    assertStringIncludes(await Deno.readTextFile(`${dir}/bases.svg`), "</svg>");
    assertEquals(Array.from((await Deno.readFile(`${dir}/bases.png`)).slice(0, 4)), [0x89, 0x50, 0x4e, 0x47]);
  });
});

Deno.test("plan: bad input exits 2 with one line and writes nothing", async () => {
  await withLlama2(async (dir, config) => {
    const cases: [string[], string][] = [
      [["--target-length", "12x"], "target-length"],
      [["--target-length", "128k", "--schedule", "zigzag"], "--schedule"],
      [["--target-length", "128k", "--plot", `${dir}/p.gif`], ".svg or .png"],
      [["--target-length", "128k", "--schedule", "explicit", "--bases", "1e6,2e6"], "expected 32"],
      [[
        "--target-length",
        "128k",
        "--schedule",
        "peak-valley",
        "--b-min",
        "1e6",
        "--b-max",
        "1.1e6",
        "--stride",
        "3e4",
      ], "candidates"],
      [["--target-length", "128k", "--b-min", "abc"], "--b-min"],
    ];
    for (const [flags, message] of cases) {
      const result = await runHarpe(["plan", config, ...flags, "-o", `${dir}/plan.yaml`]);
      assertEquals(result.code, 2, `${flags.join(" ")}: ${result.stderr}`);
      assertStringIncludes(result.stderr, message);
      assertEquals(result.stderr.trim().split("\n").length, 1, result.stderr);
    }
    const missing = await runHarpe(["plan", `${dir}/nope.json`, "--target-length", "128k"]);
    assertEquals(missing.code, 2);
    assertEquals(await listDir(dir), ["config.json"]);
  });
});
