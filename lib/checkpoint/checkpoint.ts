// A Hugging Face checkpoint directory opened lazily: config.json plus one model.safetensors or shards
// listed in model.safetensors.index.json. Opening reads only headers and checks every tensor's name and
// shape against the config; tensor data is read on demand.

import { FileFormatError, PathError } from "../errors.ts";
import { SafetensorsFile, type TensorInfo } from "../safetensors/mod.ts";
import { isFile } from "../util/files.ts";
import { readConfig } from "./config.ts";
import type { ModelConfig } from "./model_config.ts";
import { INDEX_FILE, readShardIndex, type ShardIndex, SINGLE_FILE } from "./shard_index.ts";
import { checkTensors, type StoredTensor } from "./validate.ts";

/** A tensor of a checkpoint: its safetensors info and the path of the shard holding it. */
export type CheckpointTensor = TensorInfo & { file: string };

/** Opens each shard once, closing every opened one if a later one fails. */
async function openShards(paths: string[]): Promise<Map<string, SafetensorsFile>> {
  const files = new Map<string, SafetensorsFile>();
  try {
    for (const path of paths) files.set(path, await SafetensorsFile.open(path));
  } catch (error) {
    for (const file of files.values()) file.close();
    throw error;
  }
  return files;
}

/** Every tensor of an indexed checkpoint, checked against the index in both directions. */
function indexedTensors(
  dir: string,
  files: Map<string, SafetensorsFile>,
  index: ShardIndex,
  indexPath: string,
) {
  const { weightMap } = index;
  const tensors = new Map<string, CheckpointTensor>();
  for (const [name, shard] of weightMap) {
    const file = files.get(`${dir}/${shard}`)!;
    const info = file.tensors.get(name);
    if (!info) {
      throw new FileFormatError(`${indexPath}: maps tensor "${name}" to "${shard}", which does not hold it`, {
        file: indexPath,
        tensor: name,
        hint: "the index does not match the shard files; re-save the checkpoint",
      });
    }
    tensors.set(name, { ...info, file: file.path });
  }
  for (const file of files.values()) {
    for (const name of file.tensors.keys()) {
      if (tensors.get(name)?.file === file.path) continue;
      throw new FileFormatError(
        `${indexPath}: does not map tensor "${name}" to "${file.path}", which holds it`,
        {
          file: indexPath,
          tensor: name,
          hint: "the index does not match the shard files; re-save the checkpoint",
        },
      );
    }
  }
  return tensors;
}

/**
 * A checkpoint directory, opened lazily and validated against its config.json.
 *
 * @example
 * ```ts
 * const checkpoint = await Checkpoint.open("./Llama-2-7b-hf");
 * const embedding = await checkpoint.readF32("model.embed_tokens.weight"); // [V, C]
 * checkpoint.close();
 * ```
 */
export class Checkpoint {
  private constructor(
    readonly dir: string,
    readonly config: ModelConfig,
    /** Every tensor -> its shard, in parameter-table order. */
    readonly tensors: Map<string, CheckpointTensor>,
    /** Shard paths in file-name order; one entry for an unsharded checkpoint. */
    readonly shards: string[],
    private readonly files: Map<string, SafetensorsFile>,
  ) {}

  /**
   * Opens `dir`: parses config.json and the safetensors headers (single file or sharded with an index)
   * and checks names and shapes. Throws PathError (no such directory or weights), FileFormatError
   * (malformed index or shard; index naming a missing shard or tensor), ShapeError (missing, unexpected or
   * wrongly shaped tensor) or the config errors of readConfig.
   */
  static async open(dir: string): Promise<Checkpoint> {
    const root = dir.length > 1 ? dir.replace(/\/+$/, "") : dir;
    let stat: Deno.FileInfo;
    try {
      stat = await Deno.stat(root);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new PathError(`Checkpoint directory "${root}" does not exist`, { file: root });
      }
      throw error;
    }
    if (!stat.isDirectory) {
      throw new PathError(`"${root}" is not a directory`, {
        file: root,
        hint: "give the checkpoint directory that holds config.json and the safetensors files",
      });
    }
    const config = await readConfig(root);
    const indexPath = `${root}/${INDEX_FILE}`;
    const sharded = !await isFile(`${root}/${SINGLE_FILE}`) && await isFile(indexPath);
    if (!sharded && !await isFile(`${root}/${SINGLE_FILE}`)) {
      throw new PathError(`"${root}" holds neither ${SINGLE_FILE} nor ${INDEX_FILE}`, {
        file: root,
        hint: "harpe reads safetensors checkpoints; save the model with safe_serialization",
      });
    }
    const index = sharded ? await readShardIndex(indexPath) : undefined;
    const shardPaths = index ? await shardPathsOf(root, index, indexPath) : [`${root}/${SINGLE_FILE}`];
    const files = await openShards(shardPaths);
    try {
      let tensors: Map<string, CheckpointTensor>;
      if (index) {
        tensors = indexedTensors(root, files, index, indexPath);
      } else {
        const file = files.get(shardPaths[0])!;
        tensors = new Map([...file.tensors].map(([name, info]) => [name, { ...info, file: file.path }]));
      }
      const stored = new Map<string, StoredTensor>(tensors);
      const specs = checkTensors(config, stored, { source: root });
      const ordered = new Map(specs.map((spec) => [spec.name, tensors.get(spec.name)!]));
      return new Checkpoint(root, config, ordered, shardPaths, files);
    } catch (error) {
      for (const file of files.values()) file.close();
      throw error;
    }
  }

  /** The tensor's info and shard; throws FileFormatError naming the checkpoint when absent. */
  info(name: string): CheckpointTensor {
    const tensor = this.tensors.get(name);
    if (!tensor) {
      throw new FileFormatError(`Checkpoint "${this.dir}" has no tensor "${name}"`, {
        file: this.dir,
        tensor: name,
      });
    }
    return tensor;
  }

  /** The tensor decoded to f32. */
  readF32(name: string): Promise<Float32Array> {
    return this.#file(name).readF32(name);
  }

  /** The tensor's raw little-endian bytes in its stored dtype (or a byte range of them). */
  readBytes(name: string, range?: { start: number; end: number }): Promise<Uint8Array> {
    return this.#file(name).readBytes(name, range);
  }

  /** The shard file holding the tensor. */
  #file(name: string): SafetensorsFile {
    return this.files.get(this.info(name).file)!;
  }

  /**
   * Fills `target` with the tensor's bytes from byte `options.start` (default 0) of its data, with a
   * synchronous read (see {@link SafetensorsFile.readInto}), into a buffer the caller reuses.
   *
   * @example
   * ```ts
   * const chunk = new Uint8Array(1 << 20);
   * checkpoint.readInto("lm_head.weight", chunk, { start: 0 });
   * ```
   */
  readInto(name: string, target: Uint8Array, options: { start?: number } = {}): Uint8Array {
    return this.#file(name).readInto(name, target, options);
  }

  /**
   * The tensor's bytes in order, in chunks through one reused buffer (see
   * {@link SafetensorsFile.readChunks}).
   *
   * @example
   * ```ts
   * for (const chunk of checkpoint.readChunks("lm_head.weight", { buffer: new Uint8Array(1 << 18) })) {
   *   total += chunk.byteLength;
   * }
   * ```
   */
  readChunks(
    name: string,
    options: { range?: { start: number; end: number }; buffer?: Uint8Array } = {},
  ): Generator<Uint8Array> {
    return this.#file(name).readChunks(name, options);
  }

  /** Closes every shard; later reads fail. */
  close(): void {
    for (const file of this.files.values()) file.close();
  }
}

/** The shard files an index names, each checked to exist, in file-name order. */
async function shardPathsOf(root: string, index: ShardIndex, indexPath: string): Promise<string[]> {
  const { weightMap } = index;
  const names = [...new Set(weightMap.values())].sort();
  if (names.length === 0) {
    throw new FileFormatError(`${indexPath}: "weight_map" is empty`, { file: indexPath });
  }
  for (const name of names) {
    if (!await isFile(`${root}/${name}`)) {
      const tensor = [...weightMap].find(([, shard]) => shard === name)![0];
      throw new FileFormatError(
        `${indexPath}: names shard "${name}" (for "${tensor}"), which does not exist`,
        {
          file: indexPath,
          tensor,
          expected: `${root}/${name}`,
          actual: "missing",
          hint: "copy the missing shard, or re-save the checkpoint",
        },
      );
    }
  }
  return names.map((name) => `${root}/${name}`);
}
