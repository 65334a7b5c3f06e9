// bench/train scaling (issue 9): tokens/s of `harpe train --gpus N` (the product's launcher and NCCL
// ranks, run as a subprocess) for the 1.1B shape at each length, weak scaling (1 sequence of T tokens per
// GPU per step), and the scaling efficiency tokens/s(N) / (N x tokens/s(1)); target >= 90% at N = 2.
// Prints one markdown table, writes JSON. Inputs (random checkpoint, token file) live in a temp dir.
// Run: deno run --allow-all bench/train/scaling.ts [--gpus 1,2] [--lengths 16k,64k] [--steps 3]
//      [--warmup 1] [--shape tinyllama|tiny] [--device cuda|cpu] [--reduce f32|bf16] [--timeout S]
//      [--out FILE]

import { stringify as toYaml } from "yaml";
import { Driver } from "../../lib/engine/cuda/ffi/driver.ts";
import { hasCuda } from "../../lib/engine/cuda/mod.ts";
import { ConfigError } from "../../lib/errors.ts";
import { type LogRecord, readLog } from "../../lib/train/log.ts";
import { writeTextFileAtomically } from "../../lib/util/atomic.ts";
import { HEAD_BASES, parseLength, SHAPES } from "./main.ts";
import { writeRandomCheckpoint, writeRandomTokens } from "./scaling_setup.ts";

/** Issue 9's target: tokens/s on 2 GPUs at least this fraction of twice the 1-GPU tokens/s. */
export const TARGET_EFFICIENCY = 0.9;
/** The GPU count the target is stated for. */
const TARGET_GPUS = 2;
const ROOT = new URL("../../", import.meta.url).pathname;
/** Flags added to the `harpe` task's `deno run`: the project's node_modules as they are, no downloads. */
const EXTRA_DENO_FLAGS = ["--node-modules-dir=manual", "--cached-only"];
const LR = 1e-5;
const SEED = 1234;
/** Seconds a run may take (model load, steps, final checkpoint) before it is stopped (SIGTERM). */
const DEFAULT_TIMEOUT_S = 300;
const OPTIONS = [
  "--gpus",
  "--lengths",
  "--steps",
  "--warmup",
  "--shape",
  "--device",
  "--reduce",
  "--timeout",
  "--out",
];

interface Options {
  gpus: number[];
  lengths: number[];
  steps: number;
  warmup: number;
  shape: string;
  device: "cuda" | "cpu";
  reduce: "f32" | "bf16";
  timeoutS: number;
  out: string;
}

/** One (T, N) run: throughput from its log.jsonl, or why it did not run. */
interface Row {
  t: number;
  gpus: number;
  tokens_per_s?: number;
  tokens_per_s_per_gpu?: number;
  /** tokens_per_s / (gpus x the 1-GPU tokens_per_s at the same T). */
  efficiency?: number;
  /** Seconds of each timed step (log: tokens / tokens_per_s). */
  seconds?: number[];
  /** The run's whole log.jsonl (warm-up steps included). */
  records?: LogRecord[];
  /** Seconds of the whole `harpe train` process (start, model load, steps, final checkpoint). */
  wall_s?: number;
  error?: string;
}

function integer(flag: string, text: string, min: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n < min) {
    throw new ConfigError(`${flag} must be an integer >= ${min}, got "${text}"`, {
      field: flag,
      actual: text,
    });
  }
  return n;
}

function parseOptions(args: string[]): Options {
  const given = new Map<string, string>();
  for (let i = 0; i < args.length; i += 2) {
    const [name, value] = [args[i], args[i + 1]];
    if (!OPTIONS.includes(name)) {
      throw new ConfigError(`unknown option "${name}"`, {
        hint: `known: ${OPTIONS.join(" ")}, each with a value`,
      });
    }
    if (value === undefined || value.startsWith("--")) throw new ConfigError(`${name} needs a value`);
    given.set(name, value);
  }
  const device = given.get("--device") ?? "cuda";
  if (device !== "cuda" && device !== "cpu") {
    throw new ConfigError(`--device must be cuda or cpu, got "${device}"`);
  }
  const shape = given.get("--shape") ?? (device === "cpu" ? "tiny" : "tinyllama");
  if (!(shape in SHAPES)) throw new ConfigError(`--shape must be one of ${Object.keys(SHAPES).join(", ")}`);
  const reduce = given.get("--reduce") ?? "f32";
  if (reduce !== "f32" && reduce !== "bf16") {
    throw new ConfigError(`--reduce must be f32 or bf16, got "${reduce}"`);
  }
  const gpus = (given.get("--gpus") ?? "1,2").split(",").map((g) => integer("--gpus", g, 1));
  const lengths = (given.get("--lengths") ?? "16k,64k").split(",").map(parseLength);
  if (lengths.some((t) => t < 1)) throw new ConfigError(`--lengths must be positive`);
  return {
    gpus: [...new Set(gpus)].sort((a, b) => a - b),
    lengths: [...new Set(lengths)].sort((a, b) => a - b),
    steps: integer("--steps", given.get("--steps") ?? "3", 1),
    warmup: integer("--warmup", given.get("--warmup") ?? "1", 0),
    shape,
    device,
    reduce,
    timeoutS: integer("--timeout", given.get("--timeout") ?? String(DEFAULT_TIMEOUT_S), 1),
    out: given.get("--out") ?? `${ROOT}bench/out/scaling.json`,
  };
}

/** `deno run` and its flags as in deno.json's `harpe` task (read from it), plus EXTRA_DENO_FLAGS. */
async function harpeTaskArgs(): Promise<string[]> {
  const tasks = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks as Record<string, string>;
  const words = tasks.harpe.trim().split(/\s+/);
  if (words[0] !== "deno" || words[1] !== "run" || !words.at(-1)!.endsWith(".ts")) {
    throw new Error(`deno.json's harpe task is not "deno run <flags> <main>.ts": ${tasks.harpe}`);
  }
  return ["run", ...EXTRA_DENO_FLAGS, ...words.slice(2, -1), `${ROOT}${words.at(-1)}`];
}

/** train.yaml of one run: T tokens, one sequence per GPU per step. As batch 1 and grad_accum N (not batch N
 * and grad_accum 1, which trains the same) because `harpe train` sizes its memory estimate by `batch`. */
function trainYaml(dir: string, options: Options, t: number, gpus: number): string {
  return toYaml({
    model: `${dir}/model`,
    data: `${dir}/train.tokens`,
    out: `${dir}/run-${t}-${gpus}`,
    seq_len: t,
    batch: 1,
    grad_accum: gpus,
    steps: options.warmup + options.steps,
    optimizer: { lr: LR },
    schedule: { kind: "constant" },
    seed: SEED,
    device: options.device,
    precision: "bf16",
    activation_checkpointing: true,
    grad_reduce_dtype: options.reduce,
  });
}

/** The last non-empty line of a process's output. */
function lastLine(text: string): string {
  return text.split("\n").map((l) => l.trim()).filter(Boolean).at(-1) ?? "";
}

/** Runs `harpe train` for (T, N) and reads its log; the run directory is removed afterwards. */
async function runOne(dir: string, options: Options, t: number, gpus: number): Promise<Row> {
  const row: Row = { t, gpus };
  const config = `${dir}/train-${t}-${gpus}.yaml`;
  await Deno.writeTextFile(config, trainYaml(dir, options, t, gpus));
  const runDir = `${dir}/run-${t}-${gpus}`;
  const timeout = AbortSignal.timeout(options.timeoutS * 1000);
  const started = performance.now();
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        ...await harpeTaskArgs(),
        "train",
        "--config",
        config,
        ...(gpus > 1 ? ["--gpus", String(gpus)] : []),
      ],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: timeout,
    }).output();
    row.wall_s = (performance.now() - started) / 1000;
    const stderr = new TextDecoder().decode(output.stderr);
    if (!output.success) {
      row.error = timeout.aborted
        ? `stopped after the --timeout of ${options.timeoutS} s`
        : lastLine(stderr) || `exit code ${output.code}`;
      return row;
    }
    const records = await readLog(`${runDir}/log.jsonl`);
    const timed = records.filter((r) => r.step > options.warmup);
    if (timed.length !== options.steps) {
      row.error = `log.jsonl has ${timed.length} timed steps, expected ${options.steps}`;
      return row;
    }
    const seconds = timed.map((r) => r.tokens / r.tokens_per_s);
    const tokens = timed.reduce((sum, r) => sum + r.tokens, 0);
    const tokensPerS = tokens / seconds.reduce((a, b) => a + b, 0);
    Object.assign(row, {
      tokens_per_s: tokensPerS,
      tokens_per_s_per_gpu: tokensPerS / gpus,
      seconds,
      records,
    });
    return row;
  } finally {
    await Deno.remove(runDir, { recursive: true }).catch(() => {});
  }
}

/** The CUDA device this bench runs on ("NVIDIA H200, 2 visible"), or null without one. */
function cudaDevice(): { name: string; count: number } | null {
  if (!hasCuda()) return null;
  const driver = Driver.open();
  return { name: driver.deviceInfo(0).name, count: driver.deviceCount() };
}

/** Every (T, N) row, N = 1 first so that the others get their efficiency. */
async function runAll(dir: string, options: Options, visible: number): Promise<Row[]> {
  const rows: Row[] = [];
  for (const t of options.lengths) {
    for (const gpus of options.gpus) {
      let row: Row;
      if (gpus > 1 && options.device === "cpu") {
        row = { t, gpus, error: `needs CUDA: harpe train --gpus ${gpus} refuses device cpu` };
      } else if (options.device === "cuda" && gpus > visible) {
        row = { t, gpus, error: `needs ${gpus} GPUs, ${visible} visible` };
      } else {
        console.error(`scaling: T=${t} on ${gpus} GPU(s): harpe train ...`);
        row = await runOne(dir, options, t, gpus);
      }
      rows.push(row);
      const one = rows.find((r) => r.t === t && r.gpus === 1)?.tokens_per_s;
      if (row.tokens_per_s !== undefined && one !== undefined) {
        row.efficiency = row.tokens_per_s / (gpus * one);
      }
      console.error(
        `scaling: T=${t} on ${gpus} GPU(s): ${row.error ?? `${row.tokens_per_s!.toFixed(0)} tokens/s`}`,
      );
    }
  }
  return rows;
}

function targetCell(row: Row): string {
  if (row.gpus !== TARGET_GPUS || row.efficiency === undefined) return "-";
  return row.efficiency >= TARGET_EFFICIENCY ? "met" : "NOT met";
}

/**
 * Runs the scaling benchmark with command-line style `args` (see the file's first lines); ConfigError
 * for bad options.
 *
 * @example
 * ```ts
 * await run(["--device", "cpu", "--shape", "tiny", "--gpus", "1,2", "--lengths", "64", "--steps", "2"]);
 * ```
 */
export async function run(args: string[] = []): Promise<void> {
  const options = parseOptions(args);
  const cuda = options.device === "cuda" ? cudaDevice() : null;
  if (options.device === "cuda" && !cuda) {
    console.log(
      "bench scaling: skipped, no CUDA device here (--device cpu --shape tiny runs the 1-GPU rows)",
    );
    return;
  }
  const device = cuda ? `${cuda.name}, ${cuda.count} visible` : "cpu";
  const maxT = options.lengths.at(-1)!;
  const runnable = options.gpus.filter((n) => options.device === "cuda" ? n <= cuda!.count : n === 1);
  const dir = await Deno.makeTempDir({ prefix: "harpe-scaling-" });
  let rows: Row[];
  let parameters: number;
  try {
    parameters = await writeRandomCheckpoint(`${dir}/model`, {
      shape: options.shape,
      maxLength: maxT,
      seed: SEED,
    });
    await writeRandomTokens(`${dir}/train.tokens`, {
      documents: (options.warmup + options.steps) * Math.max(1, ...runnable) + 1,
      length: maxT,
      vocabSize: SHAPES[options.shape].vocab_size as number,
      seed: SEED,
    });
    rows = await runAll(dir, options, cuda?.count ?? 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const header = [
    "T",
    "GPUs",
    "tokens/s",
    "tokens/s per GPU",
    "scaling efficiency",
    "target (>= 90% at 2 GPUs)",
  ];
  console.log(
    `${
      new Date().toISOString().slice(0, 10)
    }; device: ${device}; shape ${options.shape} (P = ${parameters}); ` +
      `weak scaling, 1 sequence per GPU per step; ${options.warmup} warm-up + ${options.steps} timed steps; ` +
      `gradient all-reduce ${options.reduce}`,
  );
  console.log(`| ${header.join(" | ")} |\n|${header.map(() => "---").join("|")}|`);
  for (const row of rows) {
    const cells = row.error ? [`(${row.error})`, "-", "-", "-"] : [
      row.tokens_per_s!.toFixed(0),
      row.tokens_per_s_per_gpu!.toFixed(0),
      row.efficiency === undefined ? "-" : `${(row.efficiency * 100).toFixed(1)}%`,
      targetCell(row),
    ];
    console.log(`| ${[String(row.t), String(row.gpus), ...cells].join(" | ")} |`);
  }
  const result = {
    date: new Date().toISOString(),
    device,
    shape: options.shape,
    parameters,
    head_bases: HEAD_BASES.slice(0, SHAPES[options.shape].num_key_value_heads as number),
    steps: options.steps,
    warmup: options.warmup,
    grad_reduce_dtype: options.reduce,
    target_efficiency: TARGET_EFFICIENCY,
    work_dir: dir,
    rows,
  };
  const slash = options.out.lastIndexOf("/");
  if (slash > 0) await Deno.mkdir(options.out.slice(0, slash), { recursive: true });
  await writeTextFileAtomically(options.out, JSON.stringify(result, null, 2) + "\n");
  console.log(`wrote ${options.out}`);
}

if (import.meta.main) {
  try {
    await run(Deno.args);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`bench scaling: ${error.message}`);
    Deno.exit(2);
  }
}
