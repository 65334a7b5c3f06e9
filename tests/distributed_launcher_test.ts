// The one-host launcher: real rank processes, real failures. A rank whose data file is not a token file
// exits 2; the launcher stops the other rank (a long CPU training run), reports the failing rank with its
// error, and prefixes every output line with the rank. Through the CLI: `harpe train --gpus 2` ends with
// exit 1 and one line naming the rank; bad rank flags and a CPU config are exit 2.

import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { DENO_RUN, PROJECT_ROOT, withTempDir, writeCorpusTokens } from "./harness.ts";
import { superviseRanks } from "../lib/distributed/mod.ts";
import { readLog } from "../lib/train/mod.ts";

/** Steps of the run that rank 0 would do if nobody stopped it (minutes on the CPU). */
const LONG_RUN_STEPS = 100_000;
/** The launcher must stop rank 0 well before that. */
const STOP_WITHIN_MS = 60_000;
const HARPE = [
  ...DENO_RUN,
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-ffi",
  "--allow-run",
  "--allow-net",
];

async function makeRun(dir: string, device: string): Promise<void> {
  await writeCorpusTokens(`${dir}/train.tokens`);
  await Deno.writeTextFile(`${dir}/not-tokens.txt`, "plain text, not a token file\n");
  await Deno.writeTextFile(
    `${dir}/train.yaml`,
    [
      `model: ${PROJECT_ROOT}fixtures/tiny`,
      "data: train.tokens",
      "out: run",
      "seq_len: 32",
      "batch: 2",
      `steps: ${LONG_RUN_STEPS}`,
      "optimizer: {lr: 0.001}",
      `device: ${device}`,
    ].join("\n") + "\n",
  );
}

async function harpe(args: string[]) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [...HARPE, `${PROJECT_ROOT}cli/main.ts`, ...args],
    cwd: PROJECT_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

Deno.test("launcher: a failing rank stops the others; its rank and error are reported; output is prefixed", async () => {
  await withTempDir(async (dir) => {
    await makeRun(dir, "cpu");
    const lines: string[] = [];
    const started = performance.now();
    const result = await superviseRanks([
      {
        rank: 0,
        command: Deno.execPath(),
        args: [...HARPE, `${PROJECT_ROOT}cli/main.ts`, "train", "--config", `${dir}/train.yaml`],
      },
      {
        // Rank 1 fails only once rank 0 is training (its first step is logged), so that rank 0 is
        // stopped mid-run.
        rank: 1,
        command: "sh",
        args: [
          "-c",
          `while [ ! -s "$0/run/log.jsonl" ]; do sleep 0.05; done; exec "$@"`,
          dir,
          Deno.execPath(),
          ...HARPE,
          `${PROJECT_ROOT}cli/main.ts`,
          "train",
          "--config",
          `${dir}/train.yaml`,
          "--data",
          `${dir}/not-tokens.txt`,
          "--out",
          `${dir}/run1`,
        ],
      },
    ], { write: (line) => lines.push(line), graceMs: 2000 });
    const elapsed = performance.now() - started;
    assert(!result.ok, "the run failed");
    if (result.ok) return;
    assertEquals(result.rank, 1);
    assertEquals(result.code, 2);
    assertStringIncludes(result.error, "not-tokens.txt");
    assert(elapsed < STOP_WITHIN_MS, `rank 0 was stopped (${Math.round(elapsed)} ms)`);
    const logged = await readLog(`${dir}/run/log.jsonl`);
    assert(
      logged.length >= 1 && logged.length < LONG_RUN_STEPS,
      `rank 0 was stopped mid-run (${logged.length} steps)`,
    );
    assert(
      lines.some((l) => l.startsWith("[rank 1] harpe train: ") && l.includes("not-tokens.txt")),
      lines.join("\n"),
    );
    assert(lines.every((l) => /^\[rank [01]\] /.test(l)), lines.join("\n"));
  });
});

Deno.test("launcher: every rank succeeding is ok; --json mode passes rank 0's stdout through unprefixed", async () => {
  const ranks = [0, 1].map((rank) => ({
    rank,
    command: Deno.execPath(),
    args: ["eval", `console.log(JSON.stringify({ rank: ${rank} })); console.error("note ${rank}")`],
  }));
  const lines: string[] = [];
  assertEquals(await superviseRanks(ranks, { write: (l, s) => lines.push(`${s}:${l}`) }), { ok: true });
  assertEquals(lines.sort(), [
    "stderr:[rank 0] note 0",
    "stderr:[rank 1] note 1",
    'stdout:[rank 0] {"rank":0}',
    'stdout:[rank 1] {"rank":1}',
  ]);
  const raw: string[] = [];
  await superviseRanks(ranks, { write: (l, s) => raw.push(`${s}:${l}`), rawRank0Stdout: true });
  assertEquals(raw.filter((l) => l.startsWith("stdout:")), ['stdout:{"rank":0}']);
});

Deno.test("harpe train --gpus 2: a rank failing ends the launcher with exit 1 and one line naming it", async () => {
  await withTempDir(async (dir) => {
    await makeRun(dir, "cuda");
    const run = await harpe([
      "train",
      "--config",
      `${dir}/train.yaml`,
      "--gpus",
      "2",
      "--data",
      `${dir}/not-tokens.txt`,
    ]);
    assertEquals(run.code, 1, run.stderr);
    const last = run.stderr.trim().split("\n").pop()!;
    assert(
      /^harpe train: rank [01] failed \(exit code 2\): .*not-tokens\.txt.*; the other ranks were stopped$/
        .test(last),
      last,
    );
    // The other rank may be stopped before it prints its own (same) error.
    const failed = /rank (\d) failed/.exec(last)![1];
    assertStringIncludes(run.stderr, `[rank ${failed}] harpe train: `);
  });
});

Deno.test("harpe train: --gpus on a CPU config, and incomplete or wrong rank flags, are exit 2", async () => {
  await withTempDir(async (dir) => {
    await makeRun(dir, "cpu");
    const config = ["train", "--config", `${dir}/train.yaml`];
    const cases: [string[], string][] = [
      [["--gpus", "2"], "Training on several GPUs needs device cuda, the config says cpu"],
      [["--gpus", "0"], "--gpus must be an integer >= 1"],
      [["--rank", "0"], "--rank, --world-size and --rendezvous go together"],
      [["--gpus", "2", "--rank", "0", "--world-size", "2", "--rendezvous", "file:x"], "and not with --gpus"],
      [
        ["--rank", "2", "--world-size", "2", "--rendezvous", "file:x"],
        "--rank 2 is not below --world-size 2",
      ],
      [["--rank", "0", "--world-size", "2", "--rendezvous", "udp://x:1"], "neither file:<path> nor tcp://"],
      [["--rank", "1", "--world-size", "2", "--rendezvous", "file:x"], "needs device cuda"],
    ];
    for (const [flags, message] of cases) {
      const run = await harpe([...config, ...flags]);
      assertEquals(run.code, 2, `${flags.join(" ")}: ${run.stderr}`);
      assertEquals(run.stderr.trim().split("\n").length, 1, run.stderr);
      assertStringIncludes(run.stderr, message);
    }
  });
});
