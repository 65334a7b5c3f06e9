// bench/train/scaling.ts on the CPU (tiny shape): the 1-GPU row's tokens/s comes from the log of a real
// `harpe train` run, the 2-GPU row says it needs CUDA without starting anything, the JSON is written and
// the temp dir is gone; a run stopped by --timeout is a row; bad options are exit 2 with one line.

import { assert, assertAlmostEquals, assertEquals, assertStringIncludes } from "./assert.ts";
import { DENO_RUN, PROJECT_ROOT, withTempDir } from "./harness.ts";

const SCALING = `${PROJECT_ROOT}bench/train/scaling.ts`;
const TINY = [
  "--device",
  "cpu",
  "--shape",
  "tiny",
  "--gpus",
  "1,2",
  "--lengths",
  "64",
  "--steps",
  "2",
  "--warmup",
  "1",
];

/** Runs the bench as a subprocess with its temporary files under `tmp`. */
async function scaling(args: string[], tmp: string) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [...DENO_RUN, "--allow-all", SCALING, ...args],
    cwd: PROJECT_ROOT,
    env: { TMPDIR: tmp, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

Deno.test("bench scaling on the CPU: 1-GPU tokens/s from the run's log, 2 GPUs need CUDA, no temp dir left", async () => {
  await withTempDir(async (dir) => {
    const tmp = `${dir}/tmp`;
    await Deno.mkdir(tmp);
    const out = `${dir}/scaling.json`;
    const run = await scaling([...TINY, "--out", out], tmp);
    assertEquals(run.code, 0, run.stderr);
    const result = JSON.parse(await Deno.readTextFile(out));
    const [one, two] = result.rows;
    assertEquals([one.t, one.gpus, two.t, two.gpus], [64, 1, 64, 2]);
    assertEquals(one.error, undefined, one.error);
    // The log: 1 warm-up + 2 timed steps of 1 sequence of 64 tokens.
    assertEquals(one.records.map((r: { step: number; tokens: number }) => [r.step, r.tokens]), [
      [1, 64],
      [2, 64],
      [3, 64],
    ]);
    // Equal tokens per timed step: total tokens / total seconds is the harmonic mean of the two steps' rates.
    const [a, b] = [one.records[1].tokens_per_s, one.records[2].tokens_per_s];
    assert(a > 0 && b > 0, `positive rates in the log: ${a}, ${b}`);
    assertAlmostEquals(one.tokens_per_s, 2 * a * b / (a + b), 1e-9 * (a + b));
    assertEquals(one.tokens_per_s_per_gpu, one.tokens_per_s);
    assertEquals(one.efficiency, 1);
    assertEquals(one.seconds.length, 2);
    assertStringIncludes(two.error, "needs CUDA");
    assertEquals(two.tokens_per_s, undefined);
    assertEquals(two.records, undefined);
    assertStringIncludes(run.stdout, "device: cpu; shape tiny");
    assertStringIncludes(run.stdout, `| 64 | 1 | ${one.tokens_per_s.toFixed(0)} |`);
    assertStringIncludes(run.stdout, "| 64 | 2 | (needs CUDA");
    assert(result.work_dir.startsWith(tmp), `work dir ${result.work_dir} under TMPDIR`);
    assertEquals([...Deno.readDirSync(tmp)], [], "the temp dir (model, tokens, run dirs) is removed");
  });
});

Deno.test("bench scaling: a run past --timeout is stopped and becomes a row, the bench goes on", async () => {
  await withTempDir(async (dir) => {
    const tmp = `${dir}/tmp`;
    await Deno.mkdir(tmp);
    const out = `${dir}/scaling.json`;
    // A 16k-token step of the tiny model takes far more than a second on the CPU engine.
    const args = ["--device", "cpu", "--gpus", "1,2", "--lengths", "16k", "--timeout", "1", "--out", out];
    const run = await scaling(args, tmp);
    assertEquals(run.code, 0, run.stderr);
    const rows = JSON.parse(await Deno.readTextFile(out)).rows;
    assertEquals(rows.map((r: { gpus: number }) => r.gpus), [1, 2]);
    assertEquals(rows[0].error, "stopped after the --timeout of 1 s");
    assertStringIncludes(rows[1].error, "needs CUDA");
    assertStringIncludes(run.stdout, "| 16384 | 1 | (stopped after the --timeout of 1 s) |");
    assertEquals([...Deno.readDirSync(tmp)], []);
  });
});

Deno.test("bench scaling: bad options are exit 2 with one line, before anything is made", async () => {
  await withTempDir(async (tmp) => {
    const cases: [string[], string][] = [
      [["--gpus", "0"], '--gpus must be an integer >= 1, got "0"'],
      [["--reduce", "f16"], '--reduce must be f32 or bf16, got "f16"'],
      [["--step", "3"], 'unknown option "--step"'],
      [["--lengths", "16q"], '--lengths: "16q" is not a length'],
    ];
    await Promise.all(cases.map(async ([args, message]) => {
      const run = await scaling(["--device", "cpu", ...args], tmp);
      assertEquals(run.code, 2, run.stderr);
      const lines = run.stderr.trim().split("\n");
      assertEquals(lines.length, 1, run.stderr);
      assert(lines[0].startsWith(`bench scaling: ${message}`), lines[0]);
    }));
    assertEquals([...Deno.readDirSync(tmp)], []);
  });
});
