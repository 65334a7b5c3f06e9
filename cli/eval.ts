// `harpe eval CHECKPOINT... --task ppl|passkey|niah --lengths 4k..128k -o DIR`: evaluates checkpoints
// on a grid (resumable through DIR/results.jsonl) and writes CSV files, plots and one report.md.

import { Command } from "commander";
import { ConfigError } from "../lib/errors.ts";
import { openEngine } from "../lib/engine/open.ts";
import { parseCacheDtype } from "./generate.ts";
import { DEFAULT_DEPTHS, type EvalTask, parseDepths } from "../lib/eval/grid.ts";
import { formatLength, parseLengths } from "../lib/eval/lengths.ts";
import { parseNiahTask } from "../lib/eval/niah.ts";
import { DEFAULT_PPL_STRIDE } from "../lib/eval/perplexity.ts";
import { writeReport } from "../lib/eval/report.ts";
import { reportPlotter } from "../lib/eval/plots.ts";
import { DEFAULT_SAMPLES, type EvalOptions, runEval } from "../lib/eval/run.ts";
import type { CellResult } from "../lib/eval/results_store.ts";
import { pplPoints, scorePoints } from "../lib/eval/summary.ts";
import { formatTable } from "../lib/util/table.ts";
import { printJson, runAction } from "./run_action.ts";
import { cudaLibDirOption, deviceOption } from "./engine_options.ts";

/** Output folder when -o is not given. */
export const DEFAULT_EVAL_DIR = "eval-report";

const TASKS: EvalTask[] = ["ppl", "passkey", "niah"];

interface EvalFlags {
  task: string;
  lengths: string;
  depths?: string;
  samples: string;
  seed: string;
  data?: string;
  stride: string;
  textTokens?: string;
  niahTasks?: string;
  haystack?: string;
  passkeyDigits?: string;
  tokenizer?: string;
  kvCache: string;
  device: string;
  cudaLibDir?: string;
  output: string;
  plots: boolean;
  json?: boolean;
}

function parseInteger(text: string, flag: string, min: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min) {
    throw new ConfigError(`${flag} must be an integer >= ${min}, got "${text}"`, {
      field: flag,
      actual: text,
    });
  }
  return value;
}

function parseTasks(spec: string): EvalTask[] {
  const tasks = spec.split(",").map((t) => t.trim());
  for (const task of tasks) {
    if (!(TASKS as string[]).includes(task)) {
      throw new ConfigError(`Unknown task "${task}"`, {
        field: "task",
        actual: task,
        hint: `use ${TASKS.join(", ")}`,
      });
    }
  }
  return [...new Set(tasks)] as EvalTask[];
}

function summaryLines(results: CellResult[]): string {
  const ppl = pplPoints(results).map((
    p,
  ) => [p.checkpoint, "ppl", formatLength(p.length), Number(p.ppl.toFixed(3))]);
  const byLength = new Map<string, number[]>();
  for (const p of scorePoints(results)) {
    const key = `${p.checkpoint}\u0000${p.task === "passkey" ? "passkey" : "niah"}\u0000${p.length}`;
    byLength.set(key, [...(byLength.get(key) ?? []), p.score]);
  }
  const scores = [...byLength].map(([key, values]) => {
    const [checkpoint, task, length] = key.split("\u0000");
    return [
      checkpoint,
      task,
      formatLength(Number(length)),
      Number((values.reduce((a, b) => a + b, 0) / values.length).toFixed(2)),
    ];
  });
  return formatTable(["checkpoint", "task", "length", "value"], [...ppl, ...scores]);
}

/** The `eval` command. */
export function evalCommand(): Command {
  return new Command("eval")
    .description(
      "Evaluate checkpoints: perplexity vs length, passkey retrieval, NIAH tasks; CSV + plots + report.md",
    )
    .argument("<checkpoints...>", "checkpoint folders to compare")
    .requiredOption("--task <tasks>", "ppl, passkey or niah (or a comma list)")
    .requiredOption("--lengths <spec>", "context lengths: 4k..128k (powers of two), or a list 2k,4k,8k")
    .option("--depths <list>", "needle depths 0..1 or percentages (default 0,0.1,...,1)")
    .option("--samples <n>", "samples per cell (perplexity: texts of the data)", String(DEFAULT_SAMPLES))
    .option("--seed <n>", "seed of the prompts", "0")
    .option("--data <tokens>", "perplexity: token file made by harpe tokenize")
    .option("--stride <n>", "perplexity: tokens a window advances", String(DEFAULT_PPL_STRIDE))
    .option("--text-tokens <n>", "perplexity: tokens per sample text (default: the largest length)")
    .option("--niah-tasks <list>", "NIAH: a subset of the 8 tasks, e.g. niah_single_1,niah_multivalue")
    .option(
      "--haystack <dir>",
      "NIAH: folder of .txt files for the real-text haystack (default fixtures/corpus)",
    )
    .option("--passkey-digits <n>", "passkey: digits of the key (default 5)")
    .option(
      "--tokenizer <path>",
      'tokenizer.json (default: each checkpoint\'s), or "bytes" for byte-level ids',
    )
    .option("--kv-cache <dtype>", "KV cache storage: f32, or bf16 for half the memory", "f32")
    .addOption(deviceOption())
    .addOption(cudaLibDirOption())
    .option(
      "-o, --output <dir>",
      "output folder (finished cells in results.jsonl are kept and skipped)",
      DEFAULT_EVAL_DIR,
    )
    .option("--no-plots", "write CSV and report.md without plots")
    .option("--json", "print the results as JSON")
    .action(runAction("eval", async (checkpoints: string[], flags: EvalFlags) => {
      const tasks = parseTasks(flags.task);
      const lengths = parseLengths(flags.lengths);
      const depths = flags.depths ? parseDepths(flags.depths) : DEFAULT_DEPTHS;
      const base = {
        lengths,
        depths,
        outDir: flags.output,
        samples: parseInteger(flags.samples, "--samples", 1),
        seed: parseInteger(flags.seed, "--seed", 0),
        tokenizer: flags.tokenizer,
        data: flags.data,
        stride: parseInteger(flags.stride, "--stride", 1),
        textTokens: flags.textTokens ? parseInteger(flags.textTokens, "--text-tokens", 2) : undefined,
        niahTasks: flags.niahTasks?.split(",").map((t) => parseNiahTask(t.trim())),
        haystackDir: flags.haystack,
        passkeyDigits: flags.passkeyDigits
          ? parseInteger(flags.passkeyDigits, "--passkey-digits", 1)
          : undefined,
        cacheDtype: parseCacheDtype(flags.kvCache),
      };
      if (tasks.includes("ppl") && !flags.data) {
        throw new ConfigError("--task ppl needs --data TOKENS", {
          field: "data",
          hint: "make one with harpe tokenize",
        });
      }
      const engine = await openEngine(flags.device, { cudaLibDir: flags.cudaLibDir });
      const results: CellResult[] = [];
      let computed = 0;
      try {
        for (const task of tasks) {
          const options: EvalOptions = { ...base, task, engine };
          const run = await runEval(checkpoints, options);
          results.push(...run.results);
          computed += run.computed;
        }
      } finally {
        engine.dispose();
      }
      const settings = [
        `tasks: ${tasks.join(", ")}`,
        `lengths: ${lengths.map(formatLength).join(", ")}`,
        `depths: ${depths.join(", ")}`,
        `samples per cell: ${base.samples}, seed: ${base.seed}`,
        ...(tasks.includes("ppl") ? [`perplexity data: ${flags.data}, stride ${base.stride}`] : []),
        `device: ${flags.device}`,
      ];
      await writeReport(
        flags.output,
        results,
        { checkpoints, settings },
        flags.plots ? reportPlotter() : undefined,
      );
      if (flags.json) {
        printJson({
          output: flags.output,
          computed,
          skipped: results.length - computed,
          ppl: pplPoints(results),
          scores: scorePoints(results),
        });
      } else {
        console.log(summaryLines(results));
        console.log(
          `${computed} cells computed, ${
            results.length - computed
          } reused; report: ${flags.output}/report.md`,
        );
      }
    }));
}
