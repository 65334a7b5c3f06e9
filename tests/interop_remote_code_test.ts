// Tests for lib/interop: the generated transformers remote code (config.json fields and modeling_harpe.py)
// for every architecture and granularity. No torch here: the module is compiled with python3, and its
// torch-free parts (inverse frequencies, config checks) are run alone and compared with hand values.

import { assert, assertAlmostEquals, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { withTempDir } from "./harness.ts";
import { parseConfig, readConfig } from "../lib/checkpoint/config.ts";
import type { ModelConfig } from "../lib/checkpoint/model_config.ts";
import { ConfigError } from "../lib/errors.ts";
import { headInverseFrequencies } from "../lib/harpe/rope.ts";
import { addRemoteCode, AUTO_MAP, REMOTE_CODE_FILE, remoteCode, TEMPLATE_URL } from "../lib/interop/mod.ts";

const ARCHITECTURES = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
  qwen3: "Qwen3ForCausalLM",
} as const;

/** A tiny HARPE config.json (8 query heads, 2 key heads, head_dim 16) in the v5 form with its v4 mirror. */
function harpeRaw(arch: keyof typeof ARCHITECTURES, granularity: "kv" | "query"): Record<string, unknown> {
  const bases = granularity === "kv" ? [1e4, 5e5] : [1e4, 2e4, 4e4, 8e4, 1e5, 2e5, 4e5, 8e5];
  return {
    architectures: [ARCHITECTURES[arch]],
    model_type: arch,
    hidden_size: 128,
    intermediate_size: 256,
    num_hidden_layers: 2,
    num_attention_heads: 8,
    num_key_value_heads: 2,
    head_dim: 16,
    vocab_size: 320,
    rms_norm_eps: 1e-6,
    max_position_embeddings: 4096,
    tie_word_embeddings: false,
    dtype: "float32",
    rope_parameters: { rope_type: "harpe", rope_theta: 10000, head_bases: bases, granularity },
    rope_theta: 10000,
    rope_scaling: { rope_type: "harpe", type: "harpe", head_bases: bases, granularity },
  };
}

/** Runs python3 with `script`, `input` as JSON on stdin; returns the JSON it prints. */
async function python(script: string, input: unknown): Promise<unknown> {
  const child = new Deno.Command("python3", {
    args: ["-c", script],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { PYTHONDONTWRITEBYTECODE: "1" },
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(input)));
  await writer.close();
  const output = await child.output();
  const stderr = new TextDecoder().decode(output.stderr);
  assertEquals(output.code, 0, `python3 failed: ${stderr}`);
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

/** Compiles each module, then runs only its torch-free definitions (picked out with `ast`). */
const PROBE = `
import ast, json, math, py_compile, sys, tempfile, types
req = json.load(sys.stdin)
names = {"harpe_inverse_frequencies", "harpe_rope_settings", "GRANULARITIES", "HARPE_ARCHITECTURE"}
def wanted(node):
    if isinstance(node, ast.FunctionDef):
        return node.name in names
    return isinstance(node, ast.Assign) and any(getattr(t, "id", None) in names for t in node.targets)
results = []
for module in req["modules"]:
    with tempfile.TemporaryDirectory() as tmp:
        py_compile.compile(module, cfile=tmp + "/m.pyc", doraise=True)
    tree = ast.parse(open(module).read())
    ns = {"math": math}
    exec(compile(ast.Module(body=[n for n in tree.body if wanted(n)], type_ignores=[]), module, "exec"), ns)
    out = {"architecture": ns["HARPE_ARCHITECTURE"], "classes": [n.name for n in tree.body if isinstance(n, ast.ClassDef)]}
    out["inv"] = ns["harpe_inverse_frequencies"](req["bases"], req["rotary_dim"])
    out["settings"] = []
    for cfg in req["configs"]:
        try:
            out["settings"].append(list(ns["harpe_rope_settings"](types.SimpleNamespace(**cfg))))
        except ValueError as error:
            out["settings"].append(str(error))
    results.append(out)
print(json.dumps(results))
`;

interface Probe {
  architecture: string;
  classes: string[];
  inv: number[][];
  settings: (unknown[] | string)[];
}

async function probe(modules: string[], input: { bases: number[]; rotary_dim: number; configs: unknown[] }) {
  return await python(PROBE, { modules, ...input }) as Probe[];
}

const CASES = (Object.keys(ARCHITECTURES) as (keyof typeof ARCHITECTURES)[])
  .flatMap((arch) => (["kv", "query"] as const).map((granularity) => ({ arch, granularity })));

Deno.test("remoteCode: every architecture and granularity gives auto_map, a HARPE model_type and a module that compiles", async () => {
  await withTempDir(async (dir) => {
    const modules: string[] = [];
    for (const { arch, granularity } of CASES) {
      const raw = harpeRaw(arch, granularity);
      const { config: out, files } = await remoteCode(parseConfig(raw));
      const label = `${arch} ${granularity}`;
      assertEquals(out.model_type, `harpe_${arch}`, label);
      assertEquals(out.auto_map, {
        AutoConfig: "modeling_harpe.HarpeConfig",
        AutoModelForCausalLM: "modeling_harpe.HarpeForCausalLM",
      }, label);
      assertEquals(out.rope_parameters, raw.rope_parameters, label);
      assertEquals(out.rope_scaling, raw.rope_scaling, label);
      assertEquals(out.architectures, raw.architectures, label);
      assertEquals(raw.model_type, arch, "the input object is not modified");
      assertEquals(files.map((f) => f.name), ["modeling_harpe.py"], label);
      const text = files[0].text;
      assert(!text.includes("{{"), `${label}: every placeholder is filled`);
      assertStringIncludes(text, `HARPE_ARCHITECTURE = "${arch}"`);
      modules.push(`${dir}/${arch}_${granularity}.py`);
      await Deno.writeTextFile(modules.at(-1)!, text);
    }
    const heads = { num_attention_heads: 8, num_key_value_heads: 2, head_dim: 16, hidden_size: 128 };
    const kv = harpeRaw("llama", "kv").rope_parameters as { head_bases: number[] };
    const query = harpeRaw("llama", "query").rope_parameters as { head_bases: number[] };
    const results = await probe(modules, {
      bases: [10000],
      rotary_dim: 4,
      configs: [{ ...heads, rope_parameters: kv }, { ...heads, rope_parameters: query }],
    });
    CASES.forEach(({ arch }, c) => {
      assertEquals(results[c].architecture, arch);
      assertEquals(results[c].settings, [[kv.head_bases, "kv", 10000, 16], [
        query.head_bases,
        "query",
        10000,
        16,
      ]]);
      for (const target of Object.values(AUTO_MAP)) {
        assert(results[c].classes.includes(target.split(".")[1]), `${arch}: ${target} is defined`);
      }
    });
  });
});

Deno.test("modeling_harpe.py: per-head inverse frequencies match hand values and lib/harpe", async () => {
  const bases = [10000, 1e6, 5e5, 2.5e6];
  const R = 8;
  const config = parseConfig(harpeRaw("llama", "kv"));
  const text = (await remoteCode(config)).files[0].text;
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/m.py`, text);
    const [result] = await probe([`${dir}/m.py`], { bases, rotary_dim: R, configs: [] });
    // Hand values: base^(-2i/R) for i = 0..3.
    const hand10k = [1, 0.1, 0.01, 0.001];
    const hand1m = [1, 10 ** -1.5, 1e-3, 10 ** -4.5];
    hand10k.forEach((v, i) => assertAlmostEquals(result.inv[0][i], v, 0, 1e-14, `base 1e4 i=${i}`));
    hand1m.forEach((v, i) => assertAlmostEquals(result.inv[1][i], v, 0, 1e-14, `base 1e6 i=${i}`));
    headInverseFrequencies(bases, R).forEach((ours, h) => {
      assertEquals(result.inv[h].length, R / 2);
      ours.forEach((v, i) => assertAlmostEquals(result.inv[h][i], v, 0, 1e-15, `head ${h} i=${i}`));
    });
  });
});

Deno.test("modeling_harpe.py: harpe_rope_settings refuses configs that are not HARPE or do not fit the heads", async () => {
  const config = parseConfig(harpeRaw("qwen3", "kv"));
  const text = (await remoteCode(config)).files[0].text;
  const heads = { num_attention_heads: 8, num_key_value_heads: 2, hidden_size: 128 };
  const params = { rope_type: "harpe", rope_theta: 1e4, granularity: "kv", head_bases: [1e4, 1e5] };
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/m.py`, text);
    const [result] = await probe([`${dir}/m.py`], {
      bases: [],
      rotary_dim: 2,
      configs: [
        { ...heads, rope_parameters: { rope_type: "default", rope_theta: 1e4 } },
        { ...heads, rope_parameters: { ...params, head_bases: [1e4, 1e5, 1e6] } },
        { ...heads, rope_parameters: { ...params, granularity: "query" } },
        { ...heads, rope_parameters: { ...params, granularity: "layer" } },
        { ...heads, rope_parameters: { ...params, head_bases: [1e4, 0.5] } },
        // No head_dim: D = 128 / 8 = 16; partial rotary 0.5 rotates 8 dims.
        { ...heads, rope_parameters: { ...params, partial_rotary_factor: 0.5 } },
      ],
    });
    const [plain, tooMany, queryNeedsH, badGranularity, smallBase, partial] = result.settings;
    assertStringIncludes(plain as string, 'expected "harpe"');
    assertStringIncludes(tooMany as string, "must list 2 bases (one per key/value head)");
    assertStringIncludes(queryNeedsH as string, "must list 8 bases (one per query head)");
    assertStringIncludes(badGranularity as string, "granularity is 'layer'");
    assertStringIncludes(smallBase as string, "numbers > 1");
    assertEquals(partial, [[1e4, 1e5], "kv", 1e4, 8]);
  });
});

Deno.test("remoteCode: refuses a checkpoint without HARPE bases", async () => {
  const raw = harpeRaw("llama", "kv");
  const plain: ModelConfig = parseConfig({
    ...raw,
    rope_parameters: { rope_type: "default", rope_theta: 10000 },
    rope_scaling: undefined,
  });
  await assertRejects(() => remoteCode(plain), ConfigError, "run harpe convert first");
});

Deno.test("addRemoteCode: writes the module and rewrites config.json in a checkpoint directory", async () => {
  const raw = harpeRaw("mistral", "query");
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(raw));
    await addRemoteCode(dir);
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assertEquals(names, ["config.json", REMOTE_CODE_FILE]);
    const written = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    assertEquals(written.model_type, "harpe_mistral");
    assertEquals(written.auto_map.AutoModelForCausalLM, "modeling_harpe.HarpeForCausalLM");
    assertEquals(written.rope_parameters.granularity, "query");
    const reread = await readConfig(dir);
    assertEquals(reread.architecture, "mistral", "harpe reads its own export (model_type harpe_mistral)");
    assertEquals(reread.rope.harpe, parseConfig(raw).rope.harpe);
    const module = await Deno.readTextFile(`${dir}/${REMOTE_CODE_FILE}`);
    assertEquals(
      module,
      (await Deno.readTextFile(TEMPLATE_URL)).replace("{{architecture}}", "mistral")
        .replace("{{version}}", "0.1.0"),
    );
  });
});
