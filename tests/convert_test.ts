// `harpe convert`: round trips on both golden checkpoints (bases read back exactly, every other config
// field untouched, weights byte-identical), v4- and v5-form inputs, plans from `harpe plan`, and every
// refusal (exit 2, one line, no output directory).

import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { listDir, PROJECT_ROOT, runHarpe, withTempDir } from "./harness.ts";
import { parseConfig, readConfig } from "../lib/checkpoint/mod.ts";
import { convertCheckpoint, makePlan, type Plan, readPlan, stringifyPlan } from "../lib/harpe/mod.ts";
import { sha256Hex } from "../lib/util/hash.ts";

const GOLDEN = ["llama_mha", "llama_gqa_tied_bf16_sharded"];
const goldenDir = (name: string) => `${PROJECT_ROOT}fixtures/golden/${name}/checkpoint`;
/** Config keys conversion writes; every other key must come through unchanged. */
const HARPE_KEYS = ["rope_parameters", "rope_theta", "rope_scaling", "max_position_embeddings"];

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(path));
}

function without(raw: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(raw).filter(([key]) => !keys.includes(key)));
}

/** A uniform plan for a checkpoint, made through the library (set-up steps need no subprocess). */
async function uniformPlan(checkpoint: string, targetLength: number): Promise<Plan> {
  const configSha256 = await sha256Hex(await Deno.readFile(`${checkpoint}/config.json`));
  return makePlan(await readConfig(checkpoint), {
    schedule: "uniform",
    targetLength,
    checkpoint,
    configSha256,
  });
}

/** Copies a checkpoint directory (files only) so a test can edit its config. */
async function copyCheckpoint(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for (const name of await listDir(from)) await Deno.copyFile(`${from}/${name}`, `${to}/${name}`);
}

Deno.test("convert round trip on both golden checkpoints: exact bases, other fields and weights unchanged", async () => {
  for (const name of GOLDEN) {
    await withTempDir(async (dir) => {
      const source = goldenDir(name);
      const original = await readJson(`${source}/config.json`);
      const kvHeads = original.num_key_value_heads as number;
      // Bases with many digits: float64 values must survive JSON and YAML exactly.
      const bases = Array.from({ length: kvHeads }, (_, h) => 10000 + h * 1234.5678901234567 + 1 / 3);
      const result = await runHarpe([
        "convert",
        source,
        "--schedule",
        "explicit",
        "--bases",
        bases.join(","),
        "--target-length",
        "1k",
        "-o",
        `${dir}/out`,
      ]);
      assertEquals(result.code, 0, result.stderr);
      const converted = await readJson(`${dir}/out/config.json`);
      const config = parseConfig(converted);
      assertEquals(config.rope.harpe, { headBases: bases, granularity: "kv" });
      assertEquals(config.rope.theta, 10000);
      assertEquals(config.maxPositionEmbeddings, 1024);
      assertEquals(without(converted, HARPE_KEYS), without(original, HARPE_KEYS));
      assertEquals(converted.rope_parameters, {
        rope_theta: 10000,
        rope_type: "harpe",
        head_bases: bases,
        granularity: "kv",
      });
      assertEquals(converted.rope_scaling, {
        rope_type: "harpe",
        type: "harpe",
        head_bases: bases,
        granularity: "kv",
      });
      assertEquals(converted.rope_theta, 10000);
      const sourceFiles = await listDir(source);
      assertEquals(await listDir(`${dir}/out`), [...sourceFiles, "harpe_plan.yaml"].sort());
      for (const file of sourceFiles.filter((f) => f !== "config.json")) {
        assertEquals(
          await Deno.readFile(`${dir}/out/${file}`),
          await Deno.readFile(`${source}/${file}`),
          file,
        );
      }
      assertEquals((await readPlan(`${dir}/out/harpe_plan.yaml`)).headBases, bases);
    });
  }
});

Deno.test("convert --plan uses the plan's bases; query granularity; plan then convert", async () => {
  await withTempDir(async (dir) => {
    const source = goldenDir("llama_gqa_tied_bf16_sharded");
    const plan = await runHarpe([
      "plan",
      source,
      "--target-length",
      "512",
      "--schedule",
      "geometric",
      "--b-min",
      "1e4",
      "--b-max",
      "3e5",
      "--granularity",
      "query",
      "-o",
      `${dir}/plan.yaml`,
    ]);
    assertEquals(plan.code, 0, plan.stderr);
    const planned = await readPlan(`${dir}/plan.yaml`);
    assertEquals(planned.headBases.length, 8);
    const result = await runHarpe([
      "convert",
      source,
      "--plan",
      `${dir}/plan.yaml`,
      "-o",
      `${dir}/out`,
      "--json",
    ]);
    assertEquals(result.code, 0, result.stderr);
    assertEquals(JSON.parse(result.stdout).head_bases, planned.headBases);
    const config = parseConfig(await readJson(`${dir}/out/config.json`));
    assertEquals(config.rope.harpe, { headBases: planned.headBases, granularity: "query" });
    assertEquals(config.maxPositionEmbeddings, 512);
    const inspect = await runHarpe(["inspect", `${dir}/out`, "--json"]);
    assertEquals(JSON.parse(inspect.stdout).rope.harpe.head_bases, planned.headBases);
  });
});

Deno.test("convert a v4-form config (rope_theta at the top, no rope_parameters)", async () => {
  await withTempDir(async (dir) => {
    await copyCheckpoint(goldenDir("llama_mha"), `${dir}/v4`);
    const raw = await readJson(`${dir}/v4/config.json`);
    delete raw.rope_parameters;
    raw.rope_theta = 50000;
    await Deno.writeTextFile(`${dir}/v4/config.json`, JSON.stringify(raw));
    const result = await runHarpe([
      "convert",
      `${dir}/v4`,
      "--schedule",
      "uniform",
      "--b-min",
      "1e5",
      "--b-max",
      "4e5",
      "--target-length",
      "256",
      "-o",
      `${dir}/out`,
    ]);
    assertEquals(result.code, 0, result.stderr);
    const converted = await readJson(`${dir}/out/config.json`);
    const config = parseConfig(converted);
    assertEquals(config.rope.theta, 50000);
    assertEquals(config.rope.harpe?.headBases, [1e5, 2e5, 3e5, 4e5]);
    assertEquals((converted.rope_parameters as Record<string, unknown>).rope_theta, 50000);
    assertEquals(converted.rope_theta, 50000);
  });
});

Deno.test("convert refuses bad input with exit 2, one line, and no output directory", async () => {
  await withTempDir(async (dir) => {
    const mha = goldenDir("llama_mha");
    const gqa = goldenDir("llama_gqa_tied_bf16_sharded");
    // A plan for the GQA model (2 key/value heads) and one for a model with other heads but the same count.
    await Deno.writeTextFile(`${dir}/gqa.yaml`, stringifyPlan(await uniformPlan(gqa, 1024)));
    await copyCheckpoint(mha, `${dir}/theta`);
    const raw = await readJson(`${dir}/theta/config.json`);
    (raw.rope_parameters as Record<string, unknown>).rope_theta = 20000;
    await Deno.writeTextFile(`${dir}/theta/config.json`, JSON.stringify(raw));
    await Deno.writeTextFile(`${dir}/theta.yaml`, stringifyPlan(await uniformPlan(`${dir}/theta`, 1024)));
    // An already-HARPE checkpoint.
    await convertCheckpoint(mha, `${dir}/harpe`, { plan: await uniformPlan(mha, 1024) });
    await Deno.mkdir(`${dir}/exists`);

    const cases: [string[], string][] = [
      [[mha, "--plan", `${dir}/gqa.yaml`, "-o", `${dir}/out`], "needs 4 at granularity kv"],
      [[mha, "--target-length", "64", "--schedule", "uniform", "-o", `${dir}/out`], "shorter than"],
      [
        [`${dir}/harpe`, "--target-length", "2k", "--schedule", "uniform", "-o", `${dir}/out`],
        "already a HARPE checkpoint",
      ],
      [
        [mha, "--plan", `${dir}/theta.yaml`, "-o", `${dir}/out`],
        "rope_theta is 20000 in the plan but 10000 here",
      ],
      [[mha, "--plan", `${dir}/gqa.yaml`, "--schedule", "uniform", "-o", `${dir}/out`], "not both"],
      [
        [mha, "--plan", `${dir}/theta.yaml`, "--target-length", "2k", "-o", `${dir}/out`],
        "differs from the plan",
      ],
      [[mha, "--schedule", "uniform", "-o", `${dir}/out`], "Missing --target-length"],
      [[mha, "--target-length", "1k", "--schedule", "uniform", "-o", `${dir}/exists`], "already exists"],
      [
        [mha, "--target-length", "1k", "--schedule", "uniform", "-o", mha, "--force"],
        "is the input checkpoint",
      ],
      [[`${dir}/missing`, "--target-length", "1k", "-o", `${dir}/out`], "does not exist"],
    ];
    for (const [args, message] of cases) {
      const result = await runHarpe(["convert", ...args]);
      assertEquals(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
      assertStringIncludes(result.stderr, message);
      assertEquals(result.stderr.trim().split("\n").length, 1, result.stderr);
    }
    assertEquals(await listDir(dir), ["exists", "gqa.yaml", "harpe", "theta", "theta.yaml"]);
    assertEquals(await listDir(`${dir}/exists`), []);
    assertEquals((await listDir(mha)).includes("harpe_plan.yaml"), false);
  });
});

Deno.test("convert --force re-converts a HARPE checkpoint, keeping the original base; a config that only differs cosmetically warns", async () => {
  await withTempDir(async (dir) => {
    const mha = goldenDir("llama_mha");
    await convertCheckpoint(mha, `${dir}/a`, { plan: await uniformPlan(mha, 1024) });
    const again = await runHarpe([
      "convert",
      `${dir}/a`,
      "--target-length",
      "2k",
      "--schedule",
      "explicit",
      "--bases",
      "2e4,3e4,4e4,5e4",
      "-o",
      `${dir}/b`,
      "--force",
    ]);
    assertEquals(again.code, 0, again.stderr);
    const config = parseConfig(await readJson(`${dir}/b/config.json`));
    assertEquals(config.rope.theta, 10000);
    assertEquals(config.rope.harpe?.headBases, [2e4, 3e4, 4e4, 5e4]);
    // Plan made from a config with an extra cosmetic field: same model facts, different hash.
    await copyCheckpoint(mha, `${dir}/edited`);
    const raw = await readJson(`${dir}/edited/config.json`);
    raw.note = "edited";
    await Deno.writeTextFile(`${dir}/edited/config.json`, JSON.stringify(raw));
    await Deno.writeTextFile(`${dir}/p.yaml`, stringifyPlan(await uniformPlan(`${dir}/edited`, 1024)));
    const warned = await runHarpe(["convert", mha, "--plan", `${dir}/p.yaml`, "-o", `${dir}/c`]);
    assertEquals(warned.code, 0, warned.stderr);
    assertStringIncludes(warned.stderr, "warning: config.json differs");
    assert((await listDir(`${dir}/c`)).includes("model.safetensors"));
  });
});
