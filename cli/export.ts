// `harpe export SRC -o DST [--dtype f32|bf16|f16] [--shard-size 5GB] [--verify] [--force] [--hf-remote-code]`:
// a Hugging Face checkpoint directory, re-sharded and cast, written atomically (+ transformers remote code).

import { Command } from "commander";
import { exportCheckpoint, parseSize, readConfig, type WeightDType } from "../lib/checkpoint/mod.ts";
import { ConfigError } from "../lib/errors.ts";
import { remoteCode } from "../lib/interop/mod.ts";
import { formatBytes, formatDuration } from "../lib/util/progress.ts";
import { printJson, runAction } from "./run_action.ts";

/** The --dtype choices and the safetensors dtype each writes. */
const DTYPE_FLAGS: Readonly<Record<string, WeightDType>> = { f32: "F32", bf16: "BF16", f16: "F16" };

/** The --shard-size default, as Hugging Face's `max_shard_size`. */
const DEFAULT_SHARD_SIZE_FLAG = "5GB";

interface ExportFlags {
  output: string;
  dtype?: string;
  shardSize: string;
  verify?: boolean;
  force?: boolean;
  json?: boolean;
  hfRemoteCode?: boolean;
}

function dtypeOf(flag: string | undefined): WeightDType | undefined {
  if (flag === undefined) return undefined;
  const dtype = DTYPE_FLAGS[flag.toLowerCase()];
  if (!dtype) {
    throw new ConfigError(`--dtype "${flag}" is not one of ${Object.keys(DTYPE_FLAGS).join(", ")}`, {
      field: "--dtype",
      actual: flag,
      hint: "bf16 is what most downstream tools load",
    });
  }
  return dtype;
}

/** The `export` command. */
export function exportCommand(): Command {
  return new Command("export")
    .description(
      "Export a checkpoint the Hugging Face way: shards model-0000i-of-0000N.safetensors with an index " +
        "(or one model.safetensors), optional cast, config/tokenizer/generation files copied; atomic",
    )
    .argument("<src>", "checkpoint directory to export")
    .requiredOption("-o, --output <dir>", "output directory (appears only when complete)")
    .option("--dtype <dtype>", "cast every tensor: f32, bf16 or f16 (default: keep the stored dtypes)")
    .option("--shard-size <size>", "largest shard, e.g. 5GB, 500MB, 2GiB", DEFAULT_SHARD_SIZE_FLAG)
    .option("--verify", "re-read every written tensor and compare it with the source before finishing")
    .option("--force", "replace the output directory if it exists")
    .option("--json", "print the summary as JSON")
    .option(
      "--hf-remote-code",
      "add modeling_harpe.py + auto_map so transformers runs the per-head bases (trust_remote_code=True)",
    )
    .action(runAction("export", async (src: string, flags: ExportFlags) => {
      const dtype = dtypeOf(flags.dtype);
      const shardSize = parseSize(flags.shardSize, { field: "--shard-size" });
      const started = performance.now();
      // Refuses non-HARPE checkpoints before writing; the code goes in before the output appears.
      const remote = flags.hfRemoteCode ? await remoteCode(await readConfig(src)) : undefined;
      const summary = await exportCheckpoint(src, flags.output, {
        dtype,
        shardSize,
        config: remote?.config,
        files: remote?.files,
        verify: flags.verify,
        overwrite: flags.force,
        progress: flags.json ? false : undefined,
      });
      const seconds = (performance.now() - started) / 1000;
      if (flags.json) {
        printJson({
          source: summary.source,
          output: summary.output,
          tensors: summary.tensors,
          dtypes: summary.dtypes,
          total_size: summary.totalSize,
          total_parameters: summary.totalParameters,
          shards: summary.shards,
          copied: summary.copied,
          verified: summary.verified,
          remote_code: remote?.files.map((f) => f.name) ?? [],
          seconds: Number(seconds.toFixed(3)),
        });
        return;
      }
      console.log(
        `${summary.output}: ${summary.tensors} tensors (${
          summary.dtypes.join(", ")
        }) in ${summary.shards.length} ` +
          `shard${summary.shards.length === 1 ? "" : "s"}, ${formatBytes(summary.totalSize)}` +
          `${summary.verified ? ", verified" : ""}; copied ${["config.json", ...summary.copied].join(", ")}${
            remote
              ? ", added " + remote.files.map((f) => f.name).join(", ") + " (transformers remote code)"
              : ""
          } ` +
          `in ${formatDuration(seconds)}`,
      );
    }));
}
