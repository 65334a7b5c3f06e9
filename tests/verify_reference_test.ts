// `verifyReference` and `harpe verify-reference` on the golden cases (pass), on corrupted copies (exit 1),
// on bad meta.json (exit 2), and on a synthetic Qwen3 case at `query` granularity made by the float64
// reference decoder (the code reads every field from the files).

import { parseConfig } from "../lib/checkpoint/config.ts";
import { parameterTable } from "../lib/checkpoint/tensor_table.ts";
import { CpuEngine } from "../lib/engine/cpu/mod.ts";
import { verifyReference } from "../lib/model/verify_reference.ts";
import { SafetensorsFile, writeSafetensors } from "../lib/safetensors/mod.ts";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { PROJECT_ROOT, runHarpe, withTempDir } from "./harness.ts";
import { makeRandom } from "./engine_cpu_reference.ts";
import { randomWeights, referenceDecoder } from "./model_reference.ts";

const GOLDEN = `${PROJECT_ROOT}fixtures/golden`;
const CASES = ["llama_mha", "llama_gqa_tied_bf16_sharded"];

async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isDirectory) await copyDir(`${from}/${entry.name}`, `${to}/${entry.name}`);
    else await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
  }
}

function f32Bytes(values: ArrayLike<number>): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

/** Rewrites reference.safetensors of `dir` with `change` applied to the named tensor. */
async function corrupt(dir: string, name: string, change: (values: Float32Array) => void): Promise<void> {
  const path = `${dir}/reference.safetensors`;
  const file = await SafetensorsFile.open(path);
  const tensors = [];
  for (const info of file.tensors.values()) {
    let data = await file.readBytes(info.name);
    if (info.name === name) {
      const values = await file.readF32(name);
      change(values);
      data = f32Bytes(values);
    }
    tensors.push({ name: info.name, dtype: info.dtype, shape: info.shape, data });
  }
  file.close();
  await writeSafetensors(path, tensors);
}

for (const name of CASES) {
  Deno.test(`verifyReference passes the golden case ${name}`, async () => {
    const report = await verifyReference(`${GOLDEN}/${name}`, { engine: new CpuEngine() });
    assert(report.passed, JSON.stringify(report));
    assert(report.logitsHarpe < 1e-4 && report.logitsPlain < 1e-4 && report.loss < 1e-4);
    const config = parseConfig(
      JSON.parse(await Deno.readTextFile(`${GOLDEN}/${name}/checkpoint/config.json`)),
    );
    const expectedParams = config.numLayers * 9 + 2 + (config.tieWordEmbeddings ? 0 : 1);
    assertEquals(Object.keys(report.gradients).length, expectedParams);
  });
}

Deno.test("harpe verify-reference: exit 0 with a table, --json, on the golden case", async () => {
  const text = await runHarpe(["verify-reference", `${GOLDEN}/llama_mha`]);
  assertEquals(text.code, 0, text.stderr);
  assertStringIncludes(text.stdout, "logits (HARPE)");
  assertStringIncludes(text.stdout, "grad model.layers.1.mlp.down_proj.weight");
  assertStringIncludes(text.stdout, "PASSED");
  const json = await runHarpe(["verify-reference", `${GOLDEN}/llama_gqa_tied_bf16_sharded`, "--json"]);
  assertEquals(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout);
  assertEquals(report.passed, true);
  assertEquals(report.device, "cpu");
});

Deno.test("harpe verify-reference: a corrupted gradient or logits exit 1 and name it", async () => {
  await withTempDir(async (dir) => {
    await copyDir(`${GOLDEN}/llama_mha`, `${dir}/case`);
    await corrupt(`${dir}/case`, "grad.model.layers.0.self_attn.k_proj.weight", (v) => {
      v[3] += 0.01 * Math.max(...v.map(Math.abs));
    });
    const result = await runHarpe(["verify-reference", `${dir}/case`]);
    assertEquals(result.code, 1, result.stdout + result.stderr);
    assertStringIncludes(result.stdout, "FAILED");
    const line = result.stdout.split("\n").find((l) => l.includes("k_proj") && l.includes("layers.0"))!;
    assertStringIncludes(line, "FAIL");
  });
  await withTempDir(async (dir) => {
    await copyDir(`${GOLDEN}/llama_mha`, `${dir}/case`);
    await corrupt(`${dir}/case`, "logits.plain", (v) => {
      v[100] += 0.001 * Math.max(...v.map(Math.abs));
    });
    const report = await verifyReference(`${dir}/case`, { engine: new CpuEngine() });
    assert(!report.passed && report.logitsPlain > 1e-4 && report.logitsHarpe < 1e-4, JSON.stringify(report));
  });
});

Deno.test("harpe verify-reference: bad input exits 2 with one line", async () => {
  await withTempDir(async (dir) => {
    await copyDir(`${GOLDEN}/llama_mha`, `${dir}/case`);
    const metaPath = `${dir}/case/meta.json`;
    const meta = JSON.parse(await Deno.readTextFile(metaPath));
    await Deno.writeTextFile(metaPath, JSON.stringify({ ...meta, q_bases: [1e4, 1e5] }));
    const result = await runHarpe(["verify-reference", `${dir}/case`]);
    assertEquals(result.code, 2, result.stderr);
    assertStringIncludes(result.stderr, "q_bases");
    assertEquals(result.stderr.trim().split("\n").length, 1);
  });
  const missing = await runHarpe(["verify-reference", "/nonexistent/case"]);
  assertEquals(missing.code, 2);
  const device = await runHarpe(["verify-reference", `${GOLDEN}/llama_mha`, "--device", "tpu"]);
  assertEquals(device.code, 2);
  assertStringIncludes(device.stderr, "tpu");
});

Deno.test("verifyReference reads a Qwen3 case at query granularity from its files", async () => {
  const random = makeRandom();
  const raw = {
    architectures: ["Qwen3ForCausalLM"],
    model_type: "qwen3",
    vocab_size: 11,
    hidden_size: 8,
    intermediate_size: 12,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 6,
    hidden_act: "silu",
    max_position_embeddings: 64,
    rms_norm_eps: 1e-6,
    rope_parameters: { rope_type: "default", rope_theta: 10000 },
    tie_word_embeddings: false,
    dtype: "float32",
  };
  const config = parseConfig(raw);
  const qBases = [20, 300, 4000, 50000];
  const harpe = {
    ...config,
    rope: { ...config.rope, type: "harpe", harpe: { headBases: qBases, granularity: "query" as const } },
  };
  const weights = randomWeights(config, random.next);
  const [batch, seq] = [2, 6];
  const tokens = Int32Array.from({ length: batch * seq }, () => Math.floor(((random.next() + 1) / 2) * 11));
  const targets = tokens.map((_, i) => (i % seq === seq - 1 ? -1 : tokens[i + 1]));
  const input = { tokens, targets, batch, positions: tokens.map((_, i) => i % seq) };
  const plain = referenceDecoder(config, weights, input);
  const withBases = referenceDecoder(harpe, weights, input);
  const grads = [...weights].map(([name, values]) => {
    const grad = values.map((saved, i) => {
      const at = (x: number) => {
        values[i] = x;
        return referenceDecoder(harpe, weights, input).loss;
      };
      const g = (at(saved + 1e-5) - at(saved - 1e-5)) / 2e-5;
      values[i] = saved;
      return g;
    });
    return { name: `grad.${name}`, dtype: "F32" as const, shape: [values.length], data: f32Bytes(grad) };
  });
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/checkpoint`);
    await Deno.writeTextFile(`${dir}/checkpoint/config.json`, JSON.stringify(raw));
    const specs = parameterTable(config);
    await writeSafetensors(
      `${dir}/checkpoint/model.safetensors`,
      specs.map((s) => ({
        name: s.name,
        dtype: "F32",
        shape: s.shape,
        data: f32Bytes(weights.get(s.name)!),
      })),
    );
    const meta = {
      architecture: "Qwen3ForCausalLM",
      granularity: "query",
      q_bases: qBases,
      k_bases: null,
      seq,
      batch,
    };
    await Deno.writeTextFile(`${dir}/meta.json`, JSON.stringify(meta));
    await writeSafetensors(`${dir}/reference.safetensors`, [
      { name: "input_ids", dtype: "I32", shape: [batch, seq], data: new Uint8Array(tokens.buffer) },
      { name: "logits.plain", dtype: "F32", shape: [batch, seq, 11], data: f32Bytes(plain.logits) },
      { name: "logits.harpe", dtype: "F32", shape: [batch, seq, 11], data: f32Bytes(withBases.logits) },
      { name: "loss.harpe", dtype: "F32", shape: [1], data: f32Bytes([withBases.loss]) },
      ...grads,
    ]);
    const report = await verifyReference(dir, { engine: new CpuEngine() });
    assert(report.passed && report.maxGradient < 1e-4, `seed ${random.seed}: ${JSON.stringify(report)}`);
    assertEquals(Object.keys(report.gradients).length, specs.length);
  });
});
