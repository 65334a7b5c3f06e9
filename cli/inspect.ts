// `harpe inspect PATH [--json]`: what a checkpoint (or a config.json) holds: architecture, parameter
// count, heads, RoPE (HARPE per-head bases), max positions, dtypes, shards and sizes.

import { Command } from "commander";
import { Checkpoint, readConfig } from "../lib/checkpoint/mod.ts";
import { type CheckpointSummary, summarizeCheckpoint, summarizeConfig } from "../lib/checkpoint/summary.ts";
import { PathError } from "../lib/errors.ts";
import { formatBytes } from "../lib/util/progress.ts";
import { formatTable } from "../lib/util/table.ts";
import { printJson, runAction } from "./run_action.ts";

/** Width of the label column of the text report. */
const LABEL_WIDTH = 16;

/** Significant digits of RoPE bases in the text report. */
const BASE_DIGITS = 6;

async function summarize(path: string): Promise<CheckpointSummary> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new PathError(`"${path}" does not exist`, {
        file: path,
        hint: "give a checkpoint directory or a config.json",
      });
    }
    throw error;
  }
  if (stat.isFile) return summarizeConfig(await readConfig(path), path);
  const checkpoint = await Checkpoint.open(path);
  try {
    return await summarizeCheckpoint(checkpoint);
  } finally {
    checkpoint.close();
  }
}

function formatCount(n: number): string {
  const scaled = n >= 1e9
    ? `${(n / 1e9).toFixed(2)}B`
    : n >= 1e6
    ? `${(n / 1e6).toFixed(2)}M`
    : `${(n / 1e3).toFixed(1)}K`;
  return `${n.toLocaleString("en-US")} (${scaled})`;
}

function formatBases(bases: number[]): string {
  return bases.map((b) => String(Number(b.toPrecision(BASE_DIGITS)))).join(" ");
}

/** The text report. */
export function formatSummary(s: CheckpointSummary): string {
  const attention = s.heads === s.kv_heads
    ? "MHA"
    : s.kv_heads === 1
    ? "MQA"
    : `GQA, ${s.heads / s.kv_heads} per group`;
  const rope = s.rope;
  const extras = [s.qkv_bias ? "q/k/v bias" : "", s.qk_norm ? "q/k norm" : ""].filter(Boolean).join(", ");
  const rows: [string, string][] = [
    ["architecture", `${s.architecture_class} (${s.architecture})${extras ? `, ${extras}` : ""}`],
    ["parameters", formatCount(s.parameters)],
    ["layers", String(s.layers)],
    ["hidden size", `${s.hidden_size} (MLP ${s.intermediate_size})`],
    ["vocabulary", `${s.vocab_size}${s.tied_embeddings ? " (tied embeddings)" : ""}`],
    ["heads", `${s.heads} query, ${s.kv_heads} key/value (${attention}), head dim ${s.head_dim}`],
    ["rope", `${rope.type}, base ${rope.theta}, rotary dim ${rope.rotary_dim} of ${rope.head_dim}`],
  ];
  if (rope.scaling) {
    const parameters = Object.entries(rope.scaling).map(([field, value]) => `${field} ${value}`);
    rows.push(["rope scaling", `${rope.type}: ${parameters.join(", ")}`]);
  }
  if (rope.harpe) {
    rows.push(["harpe", `granularity ${rope.harpe.granularity}, ${rope.harpe.head_bases.length} bases`]);
    rows.push(["head bases", formatBases(rope.harpe.head_bases)]);
    if (rope.harpe.granularity === "kv") rows.push(["query heads", formatBases(rope.harpe.query_head_bases)]);
  }
  rows.push(["max positions", String(s.max_position_embeddings)]);
  if (s.sliding_window !== null) rows.push(["sliding window", String(s.sliding_window)]);
  rows.push(["config dtype", s.config_dtype]);
  if (s.dtypes) {
    rows.push([
      "stored dtypes",
      s.dtypes.map((d) => `${d.dtype} (${d.tensors} tensors, ${formatBytes(d.bytes)})`).join(", "),
    ]);
  }
  const lines = [s.path, ...rows.map(([label, value]) => `  ${label.padEnd(LABEL_WIDTH)}${value}`)];
  for (const warning of s.warnings) lines.push(`  warning: ${warning}`);
  if (s.shards) {
    const total = s.shards.reduce((sum, shard) => sum + shard.bytes, 0);
    lines.push("");
    lines.push(formatTable(
      ["shard", "tensors", "bytes", "size"],
      [
        ...s.shards.map((shard) => [shard.file, shard.tensors, shard.bytes, formatBytes(shard.bytes)]),
        ["total", s.shards.reduce((sum, shard) => sum + shard.tensors, 0), total, formatBytes(total)],
      ],
    ));
  }
  return lines.join("\n");
}

/** The `inspect` command. */
export function inspectCommand(): Command {
  return new Command("inspect")
    .description(
      "Show a checkpoint's architecture, parameter count, heads, RoPE (HARPE per-head bases), " +
        "max positions, dtypes and shards; checks every tensor's name and shape against config.json",
    )
    .argument("<path>", "checkpoint directory, or a config.json alone")
    .option("--json", "print the summary as JSON")
    .action(runAction("inspect", async (path: string, options: { json?: boolean }) => {
      const summary = await summarize(path);
      if (options.json) printJson(summary);
      else console.log(formatSummary(summary));
    }));
}
