// The sharded checkpoint index (model.safetensors.index.json): which shard file holds each tensor.
// Read and validated here; written by writer.ts.

import { FileFormatError } from "../errors.ts";
import { readJsonObject } from "../util/files.ts";

/** File name of the index of a sharded checkpoint. */
export const INDEX_FILE = "model.safetensors.index.json";

/** File name of an unsharded checkpoint's weights. */
export const SINGLE_FILE = "model.safetensors";

/** A parsed index: tensor name -> shard file name (relative to the checkpoint directory). */
export interface ShardIndex {
  weightMap: Map<string, string>;
  /** The index's `metadata` object as found (e.g. total_size). */
  metadata: Record<string, unknown>;
}

/** A shard name must be a plain file name inside the checkpoint directory. */
function isPlainFileName(name: string): boolean {
  return name.length > 0 && !name.includes("/") && !name.includes("\\") && name !== "." && name !== "..";
}

/**
 * Reads and validates an index file: a JSON object whose `weight_map` maps tensor names to plain file
 * names. Throws FileFormatError naming the file and what is wrong.
 *
 * @example
 * ```ts
 * const { weightMap } = await readShardIndex("model/model.safetensors.index.json");
 * ```
 */
export async function readShardIndex(path: string): Promise<ShardIndex> {
  const hint = "re-save the checkpoint, or remove the index if the checkpoint is one model.safetensors";
  const bad = (problem: string) => new FileFormatError(`${path}: ${problem}`, { file: path, hint });
  const { weight_map: map, metadata } = await readJsonObject(path, { invalid: hint });
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    throw bad('"weight_map" must be an object mapping tensor names to shard files');
  }
  const weightMap = new Map<string, string>();
  for (const [name, file] of Object.entries(map)) {
    if (typeof file !== "string" || !isPlainFileName(file)) {
      throw bad(
        `"weight_map" maps tensor "${name}" to ${JSON.stringify(file)}, not a file name in the directory`,
      );
    }
    weightMap.set(name, file);
  }
  const meta = typeof metadata === "object" && metadata !== null && !Array.isArray(metadata)
    ? metadata as Record<string, unknown>
    : {};
  return { weightMap, metadata: meta };
}
