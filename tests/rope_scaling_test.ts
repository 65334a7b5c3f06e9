// Llama-3 (`llama3`) and `linear` rope scaling as a checkpoint's original RoPE: both config forms parse,
// bad fields are refused by name, inverse frequencies match values computed by hand (Python float64 from
// transformers' rule), a scaled tiny checkpoint runs the scaled rotation (f64 recomputation), and
// conversion replaces the scaling with HARPE bases while harpe_plan.yaml records it.

import { assert, assertEquals, assertStringIncludes, assertThrows } from "./assert.ts";
import { listDir, PROJECT_ROOT, runHarpe, withTempDir } from "./harness.ts";
import { relativeError } from "./engine_cpu_reference.ts";
import { referenceDecoder } from "./model_reference.ts";
import { Checkpoint, parseConfig, readConfig } from "../lib/checkpoint/mod.ts";
import { ConfigError } from "../lib/errors.ts";
import { CpuEngine } from "../lib/engine/cpu/mod.ts";
import { inverseFrequencies, loadModel } from "../lib/model/mod.ts";
import { ropeTables } from "../lib/model/rope_tables.ts";
import { baseInverseFrequencies, scaleInverseFrequencies } from "../lib/harpe/rope.ts";
import { convertCheckpoint, makePlan, readPlan } from "../lib/harpe/mod.ts";
import { sha256Hex } from "../lib/util/hash.ts";

const MHA = `${PROJECT_ROOT}fixtures/golden/llama_mha/checkpoint`;

/** Llama 3.1's scaling parameters (HF names) and its rope_scaling object. */
const LLAMA31_SCALING = {
  factor: 8.0,
  low_freq_factor: 1.0,
  high_freq_factor: 4.0,
  original_max_position_embeddings: 8192,
};
const LLAMA31 = { rope_type: "llama3", ...LLAMA31_SCALING };

function llamaConfig(extra: Record<string, unknown>): Record<string, unknown> {
  return {
    model_type: "llama",
    vocab_size: 32,
    hidden_size: 256,
    intermediate_size: 512,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    max_position_embeddings: 131072,
    ...extra,
  };
}

Deno.test("llama3 and linear parse in the v4 (rope_scaling) and v5 (rope_parameters) forms", () => {
  const expected = {
    factor: 8,
    low_freq_factor: 1,
    high_freq_factor: 4,
    original_max_position_embeddings: 8192,
  };
  const v4 = parseConfig(llamaConfig({ rope_theta: 500000, rope_scaling: LLAMA31 }));
  assertEquals(v4.rope.type, "llama3");
  assertEquals(v4.rope.theta, 500000);
  assertEquals(v4.rope.scaling, expected);
  const v5 = parseConfig(llamaConfig({ rope_parameters: { ...LLAMA31, rope_theta: 500000 } }));
  assertEquals(v5.rope.type, "llama3");
  assertEquals(v5.rope.theta, 500000);
  assertEquals(v5.rope.scaling, expected);
  const both = parseConfig(llamaConfig({
    rope_parameters: { ...LLAMA31, rope_theta: 500000 },
    rope_theta: 500000,
    rope_scaling: LLAMA31,
  }));
  assertEquals(both.rope.scaling, expected);
  const linearV4 = parseConfig(llamaConfig({ rope_scaling: { type: "linear", factor: 4 } }));
  assertEquals([linearV4.rope.type, linearV4.rope.theta, linearV4.rope.scaling], ["linear", 10000, {
    factor: 4,
  }]);
  const linearV5 = parseConfig(
    llamaConfig({ rope_parameters: { rope_type: "linear", factor: 2, rope_theta: 1e4 } }),
  );
  assertEquals([linearV5.rope.type, linearV5.rope.scaling], ["linear", { factor: 2 }]);
  assertEquals(parseConfig(llamaConfig({})).rope.scaling, undefined);
});

Deno.test("missing or bad scaling fields are refused with the field named; other types stay refused", () => {
  const refused = (extra: Record<string, unknown>, field: string, text: string) => {
    const error = assertThrows(() => parseConfig(llamaConfig(extra)), ConfigError, text);
    assertEquals((error as ConfigError).detail.field, field);
  };
  const { factor: _f, ...noFactor } = LLAMA31;
  refused({ rope_scaling: noFactor }, "rope_scaling.factor", '"rope_scaling.factor" is missing');
  const { original_max_position_embeddings: _o, ...noOriginal } = LLAMA31;
  refused(
    { rope_parameters: noOriginal },
    "rope_parameters.original_max_position_embeddings",
    "is missing",
  );
  refused({ rope_scaling: { ...LLAMA31, low_freq_factor: "1" } }, "rope_scaling.low_freq_factor", "number");
  refused(
    { rope_scaling: { ...LLAMA31, high_freq_factor: 1 } },
    "rope_scaling.high_freq_factor",
    "greater than",
  );
  refused(
    { rope_scaling: { ...LLAMA31, original_max_position_embeddings: 8192.5 } },
    "rope_scaling.original_max_position_embeddings",
    "integer",
  );
  refused({ rope_scaling: { type: "linear", factor: 0.5 } }, "rope_scaling.factor", "at least 1");
  refused({ rope_scaling: { type: "linear" } }, "rope_scaling.factor", "is missing");
  refused(
    { rope_parameters: { ...LLAMA31, factor: 4 }, rope_scaling: LLAMA31 },
    "rope_parameters",
    "disagree on factor",
  );
  for (const type of ["dynamic", "yarn", "longrope"]) {
    const error = assertThrows(
      () => parseConfig(llamaConfig({ rope_scaling: { rope_type: type, factor: 2 } })),
      ConfigError,
      `"${type}"`,
    );
    assertStringIncludes((error as ConfigError).message, "default, linear, llama3, harpe");
  }
});

Deno.test("inverse frequencies: linear and llama3 (all three bands) against hand-computed values", () => {
  // Python float64 of transformers' rule, theta 1e4, R 128, linear factor 4: 1e4^(-2i/128) / 4.
  const linear = scaleInverseFrequencies(baseInverseFrequencies(1e4, 128), {
    type: "linear",
    scaling: { factor: 4 },
  });
  for (const [i, value] of [[0, 0.25], [10, 0.05928434264154138], [63, 2.8869549617236455e-05]]) {
    assert(Math.abs(linear[i] - value) <= 1e-14 * value, `linear i=${i}: ${linear[i]} vs ${value}`);
  }
  // Llama 3.1: theta 5e5, R 128; wavelengths < 2048 keep, 2048..8192 blend, > 8192 divide by 8.
  const llama3 = scaleInverseFrequencies(baseInverseFrequencies(5e5, 128), {
    type: "llama3",
    scaling: LLAMA31_SCALING,
  });
  const expected: [number, number][] = [
    [0, 1.0], // high band, unchanged
    [20, 0.016560440080994446], // high band (wavelength 379)
    [29, 0.002166570763503359], // smooth band (wavelength 2402)
    [30, 0.0013718935677611381], // smooth band
    [34, 0.0001785078127679964], // smooth band (wavelength 6695)
    [35, 9.556212353964683e-05], // low band (wavelength 8219): / 8
    [63, 3.068925988914511e-07], // low band
  ];
  for (const [i, value] of expected) {
    assert(Math.abs(llama3[i] - value) <= 1e-12 * value, `llama3 i=${i}: ${llama3[i]} vs ${value}`);
  }
  // The model's f32 table is the same rule, rounded once.
  const table = inverseFrequencies([5e5], 128, { scaling: { type: "llama3", scaling: LLAMA31_SCALING } });
  for (const [i, value] of expected) assertEquals(table[i], Math.fround(value));
  const plain = inverseFrequencies([5e5], 128);
  assertEquals(plain[0], 1);
  assertEquals(plain[63], Math.fround(Math.pow(5e5, -126 / 128)));
});

/** Tiny llama3 parameters for llama_mha (R 16, theta 1e4): i=0 keeps, i=1 blends, i>=2 divide by 4. */
const TINY_LLAMA3 = {
  rope_type: "llama3",
  factor: 4,
  low_freq_factor: 1,
  high_freq_factor: 4,
  original_max_position_embeddings: 32,
};

/** Hand-worked inverse frequencies of TINY_LLAMA3: f_i = 1e4^(-i/8); the blend at i=1 simplifies to
 * f/4 + (32 f / (2 pi) - 1) * f/4 = 4 f^2 / pi = 0.4 / pi. */
function tinyLlama3InvFreq(): number[] {
  return Array.from({ length: 8 }, (_, i) => {
    const f = Math.pow(1e4, -i / 8);
    return i === 0 ? f : i === 1 ? 0.4 / Math.PI : f / 4;
  });
}

/** A copy of llama_mha whose config gets `rope` as its v5 rope_parameters. */
async function scaledCheckpoint(dir: string, rope: Record<string, unknown>): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  for (const name of await listDir(MHA)) await Deno.copyFile(`${MHA}/${name}`, `${dir}/${name}`);
  const raw = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  raw.rope_parameters = { rope_theta: 10000.0, ...rope };
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(raw, null, 2));
}

Deno.test("a llama3-scaled tiny checkpoint: forward differs from unscaled, rotation matches float64", async () => {
  await withTempDir(async (dir) => {
    await scaledCheckpoint(`${dir}/l3`, TINY_LLAMA3);
    const engine = new CpuEngine();
    const scaled = await loadModel(engine, `${dir}/l3`);
    assertEquals(scaled.config.rope.type, "llama3");
    const plain = await loadModel(engine, MHA);
    const tokens = Int32Array.from({ length: 24 }, (_, n) => (n * 37 + 5) % 384);
    const a = await scaled.forward(tokens);
    const b = await plain.forward(tokens);
    assert(relativeError(a, b) > 1e-3, `scaled and unscaled logits agree (${relativeError(a, b)})`);

    // Position 23's rotation of a vector through the engine with the model's tables, vs float64.
    const config = scaled.config;
    const { numHeads: H, headDim: D } = config;
    const position = 23;
    const x = Float32Array.from({ length: H * D }, (_, j) => Math.sin(j + 1));
    const xt = engine.alloc([1, H, D]), out = engine.alloc([1, H, D]), pos = engine.alloc([1], "i32");
    engine.upload(xt, x);
    engine.upload(pos, Int32Array.of(position));
    engine.ropeForward({ out, x: xt, invFreq: ropeTables(engine, config).query, positions: pos });
    const rotated = await engine.download(out);
    const freqs = tinyLlama3InvFreq();
    const expected = new Float64Array(H * D);
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < D / 2; i++) {
        const angle = position * freqs[i], p = h * D + i, q = p + D / 2;
        expected[p] = x[p] * Math.cos(angle) - x[q] * Math.sin(angle);
        expected[q] = x[q] * Math.cos(angle) + x[p] * Math.sin(angle);
      }
    }
    assert(relativeError(rotated, expected) < 1e-5, `rotation error ${relativeError(rotated, expected)}`);
  });
});

Deno.test("a linear-scaled checkpoint's forward equals the float64 reference at positions / factor", async () => {
  await withTempDir(async (dir) => {
    await scaledCheckpoint(`${dir}/lin`, { rope_type: "linear", factor: 2 });
    const model = await loadModel(new CpuEngine(), `${dir}/lin`);
    const tokens = Int32Array.from({ length: 16 }, (_, n) => (n * 53 + 11) % 384);
    const logits = await model.forward(tokens);
    const checkpoint = await Checkpoint.open(`${dir}/lin`);
    const weights = new Map<string, Float64Array>();
    try {
      for (const slot of model.layout.slots) {
        weights.set(slot.name, Float64Array.from(await checkpoint.readF32(slot.name)));
      }
    } finally {
      checkpoint.close();
    }
    // inv_freq / 2 at position m is inv_freq at m / 2: the unscaled reference at half positions.
    const plain = { ...model.config, rope: { type: "default", theta: 1e4, rotaryDim: 16 } };
    const reference = referenceDecoder(plain, weights, {
      tokens,
      targets: new Int32Array(tokens.length),
      batch: 1,
      positions: Array.from(tokens, (_, n) => n / 2),
    });
    assert(
      relativeError(logits, reference.logits) < 1e-4,
      `error ${relativeError(logits, reference.logits)}`,
    );
  });
});

Deno.test("convert a llama3 checkpoint: HARPE config without scaling, plan and inspect show it", async () => {
  await withTempDir(async (dir) => {
    await scaledCheckpoint(`${dir}/l3`, TINY_LLAMA3);
    const inspect = await runHarpe(["inspect", `${dir}/l3`]);
    assertEquals(inspect.code, 0, inspect.stderr);
    assertStringIncludes(inspect.stdout, "llama3: factor 4, low_freq_factor 1, high_freq_factor 4");
    const json = JSON.parse((await runHarpe(["inspect", `${dir}/l3`, "--json"])).stdout);
    assertEquals(json.rope.scaling.original_max_position_embeddings, 32);

    const config = await readConfig(`${dir}/l3`);
    const plan = makePlan(config, {
      schedule: "uniform",
      targetLength: 512,
      checkpoint: `${dir}/l3`,
      configSha256: await sha256Hex(await Deno.readFile(`${dir}/l3/config.json`)),
      parameters: { bMin: 1e4, bMax: 1e6 },
    });
    await convertCheckpoint(`${dir}/l3`, `${dir}/out`, { plan });
    const raw = JSON.parse(await Deno.readTextFile(`${dir}/out/config.json`));
    assertEquals(raw.rope_parameters, {
      rope_theta: 10000,
      rope_type: "harpe",
      head_bases: plan.headBases,
      granularity: "kv",
    });
    const converted = parseConfig(raw);
    assertEquals([converted.rope.type, converted.rope.theta, converted.rope.scaling], [
      "harpe",
      1e4,
      undefined,
    ]);
    const written = await readPlan(`${dir}/out/harpe_plan.yaml`);
    assertEquals(written.source.ropeScaling, {
      type: "llama3",
      parameters: {
        factor: 4,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 32,
      },
    });
    assertStringIncludes(await Deno.readTextFile(`${dir}/out/harpe_plan.yaml`), "rope_type: llama3");
    // The HARPE model rotates with the bases unscaled: head 0 (base 1e4) has inv_freq 1e4^(-i/8).
    const engine = new CpuEngine();
    const model = await loadModel(engine, `${dir}/out`);
    const table = await engine.download(ropeTables(engine, model.config).query);
    assertEquals(table[2], Math.fround(Math.pow(plan.headBases[0], -2 / 8)));
  });
});

Deno.test("auto on llama3 uses original_max_position_embeddings as the original context", async () => {
  await withTempDir(async (dir) => {
    await scaledCheckpoint(`${dir}/l3`, TINY_LLAMA3);
    const planOf = (config: Awaited<ReturnType<typeof readConfig>>) =>
      makePlan(config, {
        schedule: "auto",
        targetLength: 4096,
        checkpoint: "x",
        configSha256: "0".repeat(64),
      });
    const scaled = planOf(await readConfig(`${dir}/l3`));
    const atOriginal = planOf({ ...(await readConfig(MHA)), maxPositionEmbeddings: 32 });
    assertEquals(scaled.headBases, atOriginal.headBases);
    assertEquals(scaled.parameters, atOriginal.parameters);
  });
});
