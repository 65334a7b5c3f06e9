// Summaries and report files from hand-made results: token-weighted perplexity, mean scores per cell,
// the Table 4 layout (tasks x lengths + averages) and the files written beside report.md.

import { assertAlmostEquals, assertEquals, assertStringIncludes } from "./assert.ts";
import { listDir, withTempDir } from "./harness.ts";
import type { CellResult } from "../lib/eval/results_store.ts";
import { averageTable, pplPoints, scorePoints } from "../lib/eval/summary.ts";
import { checkpointSlug, writeReport } from "../lib/eval/report.ts";

function result(
  task: string,
  length: number,
  depth: number | null,
  sample: number,
  score: number,
  extra = {},
): CellResult {
  return { checkpoint: "a", task, length, depth, sample, variant: "v", score, seconds: 0, ...extra };
}

Deno.test("pplPoints weights each text's mean NLL by its tokens", () => {
  const points = pplPoints([
    result("ppl", 64, null, 0, 2, { tokens: 100 }),
    result("ppl", 64, null, 1, 3, { tokens: 300 }),
  ]);
  assertEquals(points.length, 1);
  assertAlmostEquals(points[0].ppl, Math.exp((2 * 100 + 3 * 300) / 400), 1e-12);
  assertEquals(points[0].tokens, 400);
});

Deno.test("scorePoints and the Table 4 layout", () => {
  const results = [
    result("niah_single_1", 64, 0, 0, 1),
    result("niah_single_1", 64, 0, 1, 0),
    result("niah_single_1", 64, 1, 0, 1),
    result("niah_single_1", 64, 1, 1, 1),
    result("niah_multivalue", 64, 0, 0, 0.5),
    result("niah_multivalue", 64, 1, 0, 0),
    result("niah_single_1", 128, 0, 0, 0),
    result("niah_multivalue", 128, 0, 0, 1),
  ];
  const points = scorePoints(results);
  const cell = points.find((p) => p.task === "niah_single_1" && p.length === 64 && p.depth === 0)!;
  assertEquals(cell.score, 50);
  assertEquals(cell.samples, 2);
  const table = averageTable(points, (p) => p.task);
  assertEquals(table.rows, ["niah_single_1", "niah_multivalue"]);
  assertEquals(table.lengths, [64, 128]);
  assertEquals(table.values[0], [75, 0, 37.5]); // single_1: (50 + 100) / 2 at 64, 0 at 128
  assertEquals(table.values[1], [25, 100, 62.5]); // multivalue: (50 + 0) / 2 at 64
  const byCheckpoint = averageTable(points, (p) => p.checkpoint);
  assertEquals(byCheckpoint.values[0], [50, 50, 50]); // mean over tasks per length
});

Deno.test("writeReport: CSV files, tables and per-checkpoint summaries", async () => {
  await withTempDir(async (dir) => {
    const results = [
      result("passkey", 64, 0, 0, 1),
      result("passkey", 64, 1, 0, 0),
      result("niah_single_1", 64, 0.5, 0, 1),
      result("niah_multiquery", 64, 0.5, 0, 0.25),
      result("ppl", 64, null, 0, Math.log(5), { tokens: 10 }),
    ];
    await writeReport(dir, results, { checkpoints: ["a"], settings: ["seed: 0"] });
    assertEquals(await listDir(dir), [
      "niah.csv",
      "niah_summary.csv",
      "niah_summary_a.csv",
      "passkey.csv",
      "passkey_summary.csv",
      "ppl.csv",
      "report.md",
    ]);
    const md = await Deno.readTextFile(`${dir}/report.md`);
    assertStringIncludes(md, "| a | 5.000 |");
    assertStringIncludes(md, "| a | 50.00 | 50.00 |");
    assertStringIncludes(md, "| niah_multiquery | 25.00 | 25.00 |");
    assertStringIncludes(md, "| **Avg** | 62.50 | 62.50 |");
    assertStringIncludes(md, "- seed: 0");
    assertEquals(
      await Deno.readTextFile(`${dir}/passkey.csv`),
      "checkpoint,task,length,depth,samples,score\na,passkey,64,0,1,100\na,passkey,64,1,1,0\n",
    );
  });
});

Deno.test("checkpointSlug is file-name safe and unique", () => {
  assertEquals(checkpointSlug("runs/harpe/latest/", ["runs/harpe/latest/"]), "harpe_latest");
  const all = ["x/a/b", "y/a/b"];
  assertEquals(all.map((c) => checkpointSlug(c, all)), ["a_b-1", "a_b-2"]);
});
