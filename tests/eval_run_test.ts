// Every evaluation task end to end on tiny checkpoints on the CPU: perplexity against an independent
// recomputation from full-forward logits, passkey on a model trained for it (far above chance) and on
// an untrained one, the 8 NIAH tasks, the report files, resuming, and bad input through the CLI.

import { assert, assertAlmostEquals, assertEquals, assertStringIncludes } from "./assert.ts";
import { listDir, runHarpe, withTempDir } from "./harness.ts";
import { CpuEngine } from "../lib/engine/cpu/mod.ts";
import { loadModel } from "../lib/model/load.ts";
import { writeTokenFile } from "../lib/data/token_file.ts";
import { loadCodec } from "../lib/eval/codec.ts";
import { runEval } from "../lib/eval/run.ts";
import { writeReport } from "../lib/eval/report.ts";
import { reportPlotter } from "../lib/eval/plots.ts";
import { NIAH_TASKS } from "../lib/eval/niah.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const TINY = `${ROOT}fixtures/tiny`;
const TRAINED = `${ROOT}fixtures/eval/passkey_tiny`;
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** -log softmax(row)[target] in float64. */
function nll(row: Float32Array, target: number): number {
  let max = -Infinity;
  for (const z of row) max = Math.max(max, z);
  let sum = 0;
  for (const z of row) sum += Math.exp(z - max);
  return max + Math.log(sum) - row[target];
}

Deno.test("ppl: sliding-window perplexity equals a recomputation from full-forward logits", async () => {
  await withTempDir(async (dir) => {
    const codec = await loadCodec(`${TINY}/tokenizer.json`);
    const text = await Deno.readTextFile(`${ROOT}fixtures/corpus/1790_george_washington_n.txt`);
    const tokens = Uint16Array.from(codec.encode(text).slice(0, 400));
    await writeTokenFile(`${dir}/data.tokens`, { tokens, docOffsets: [0, 150, 400] }, {
      tokenizer: "t",
      tokenizerSha256: "t",
      vocabSize: 512,
      eosId: codec.eosId!,
    });
    const out = `${dir}/report`;
    const run = await runEval([TINY], {
      task: "ppl",
      lengths: [32, 96],
      outDir: out,
      engine: new CpuEngine(),
      data: `${dir}/data.tokens`,
      stride: 16,
      textTokens: 96,
      samples: 2,
    });
    assertEquals(run.computed, 4);
    await writeReport(out, run.results, { checkpoints: [TINY], settings: [] }, reportPlotter());
    assertStringIncludes(await Deno.readTextFile(`${out}/ppl.svg`), "<svg");
    assertEquals(Array.from((await Deno.readFile(`${out}/ppl.png`)).subarray(0, 8)), PNG_SIGNATURE);
    assertStringIncludes(
      await Deno.readTextFile(`${out}/report.md`),
      "![Perplexity vs context length](ppl.png)",
    );
    // The independent reference: the token stream (documents + EOS), one full forward per window.
    const stream = [...tokens.slice(0, 150), codec.eosId!, ...tokens.slice(150), codec.eosId!];
    const model = await loadModel(new CpuEngine(), TINY);
    const V = model.config.vocabSize;
    for (const length of [32, 96]) {
      let total = 0, count = 0;
      for (let sample = 0; sample < 2; sample++) {
        const textTokens = stream.slice(sample * 96, sample * 96 + 96);
        // Windows by hand: step min(16, L/2); each token i >= 1 scored once with context from max(0, end - L).
        let scoredUpTo = 1;
        for (let end = Math.min(length, 96);; end = Math.min(end + Math.min(16, length / 2), 96)) {
          const start = Math.max(0, end - length);
          const logits = await model.forward(Int32Array.from(textTokens.slice(start, end)));
          for (let i = scoredUpTo; i < end; i++) {
            total += nll(logits.subarray((i - 1 - start) * V, (i - start) * V), textTokens[i]);
            count++;
          }
          scoredUpTo = end;
          if (end === 96) break;
        }
      }
      assertEquals(count, 2 * 95);
      const csv = await Deno.readTextFile(`${out}/ppl.csv`);
      const row = csv.split("\n").find((line) => line.startsWith(`${TINY},${length},`))!;
      assertAlmostEquals(Number(row.split(",")[2]), Math.exp(total / count), 0, 1e-4, `ppl at ${length}`);
    }
    model.dispose();
  });
});

Deno.test("passkey: the trained fixture retrieves keys far above chance, the untrained model does not", async () => {
  await withTempDir(async (dir) => {
    const args = ["eval", TRAINED, TINY, "--task", "passkey", "--passkey-digits", "3", "--lengths", "256"];
    const result = await runHarpe([...args, "--depths", "0,0.5,1", "--samples", "2", "-o", dir, "--json"]);
    assertEquals(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout);
    assertEquals(report.computed, 12);
    const mean = (checkpoint: string) => {
      const scores = report.scores.filter((s: { checkpoint: string }) => s.checkpoint === checkpoint);
      assertEquals(scores.length, 3);
      return scores.reduce((a: number, s: { score: number }) => a + s.score, 0) / scores.length;
    };
    assert(mean(TRAINED) >= 80, `trained model: ${mean(TRAINED)}% (chance ~0.1%)`);
    assert(mean(TINY) <= 20, `untrained model: ${mean(TINY)}%`);
    for (
      const name of [
        "passkey.csv",
        "passkey_summary.csv",
        "report.md",
        "results.jsonl",
        "passkey_by_length.svg",
      ]
    ) {
      assert((await listDir(dir)).includes(name), name);
    }
    const heatmaps = (await listDir(dir)).filter((f) =>
      f.startsWith("passkey_heatmap_") && f.endsWith(".png")
    );
    assertEquals(heatmaps.length, 2, "one heatmap per checkpoint");
    for (const png of heatmaps) {
      assertEquals(Array.from((await Deno.readFile(`${dir}/${png}`)).subarray(0, 8)), PNG_SIGNATURE);
    }
    const md = await Deno.readTextFile(`${dir}/report.md`);
    assertStringIncludes(md, "## Passkey retrieval");
    assertStringIncludes(md, `| ${TRAINED} |`);
    const lines = (await Deno.readTextFile(`${dir}/results.jsonl`)).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    for (const line of lines.filter((l) => l.checkpoint === TRAINED && l.score === 1)) {
      assertStringIncludes(line.output, line.answers[0]);
      assert(line.promptTokens <= 256);
    }
    // Resuming: nothing is recomputed; a larger grid computes only the new cells.
    const again = await runHarpe([...args, "--depths", "0,0.5,1", "--samples", "2", "-o", dir, "--json"]);
    assertEquals(JSON.parse(again.stdout).computed, 0);
    const more = await runHarpe([...args, "--depths", "0,0.5,1", "--samples", "3", "-o", dir, "--json"]);
    assertEquals(JSON.parse(more.stdout).computed, 6);
  });
});

Deno.test("niah: all 8 tasks end to end on the tiny model", async () => {
  await withTempDir(async (dir) => {
    const run = await runEval([TINY], {
      task: "niah",
      lengths: [512],
      depths: [0.5],
      samples: 1,
      outDir: dir,
      engine: new CpuEngine(),
    });
    assertEquals(run.results.map((r) => r.task), [...NIAH_TASKS]);
    for (const r of run.results) {
      assert(
        r.score >= 0 && r.score <= 1 && r.promptTokens! <= 512 && r.promptTokens! > 300,
        JSON.stringify(r),
      );
      assertEquals(r.answers!.length, r.task === "niah_multivalue" || r.task === "niah_multiquery" ? 4 : 1);
    }
    await writeReport(dir, run.results, { checkpoints: [TINY], settings: [] });
    const md = await Deno.readTextFile(`${dir}/report.md`);
    for (const task of NIAH_TASKS) assertStringIncludes(md, `| ${task} |`);
    assertStringIncludes(md, "| **Avg** |");
    const csv = (await Deno.readTextFile(`${dir}/niah.csv`)).trim().split("\n");
    assertEquals(csv.length, 1 + 8);
  });
});

Deno.test("harpe eval: bad input exits 2 with one line and no output folder", async () => {
  await withTempDir(async (dir) => {
    const cases: [string[], string][] = [
      [["--task", "nope", "--lengths", "256"], "Unknown task"],
      [["--task", "ppl", "--lengths", "256"], "--data"],
      [["--task", "passkey", "--lengths", "3k..8k"], "power of two"],
      [["--task", "passkey", "--lengths", "64"], "too short"],
      [["--task", "niah", "--niah-tasks", "niah_single_9", "--lengths", "512"], "Unknown NIAH task"],
      [["--task", "passkey", "--lengths", "256", "--samples", "0"], "--samples"],
      [["--task", "passkey", "--lengths", "256", "--kv-cache", "f16"], "--kv-cache"],
    ];
    for (const [args, message] of cases) {
      const out = `${dir}/out`;
      const result = await runHarpe(["eval", TINY, ...args, "-o", out]);
      assertEquals(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
      assertStringIncludes(result.stderr, message);
      assertEquals(result.stderr.trim().split("\n").length, 1);
      assert(!(await listDir(dir)).includes("out"), `${args.join(" ")}: no output folder`);
    }
  });
});
