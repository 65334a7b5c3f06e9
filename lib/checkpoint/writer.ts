// Writes a Hugging Face checkpoint directory atomically: config.json, weights split into shards by size
// (never splitting a tensor), the index, and the tokenizer/generation files copied from a source.

import { ConfigError, ShapeError } from "../errors.ts";
import { type DType, SafetensorsWriter, tensorByteLength, type TensorHeader } from "../safetensors/mod.ts";
import { writeDirectoryAtomically } from "../util/atomic.ts";
import { isFile } from "../util/files.ts";
import { Progress } from "../util/progress.ts";
import { INDEX_FILE, SINGLE_FILE } from "./shard_index.ts";

/** Largest shard when none is given: 5 GB, as Hugging Face's `max_shard_size="5GB"`. */
export const DEFAULT_SHARD_SIZE = 5_000_000_000;

/** Metadata every written shard carries (what transformers writes and expects). */
export const SHARD_METADATA: Readonly<Record<string, string>> = { format: "pt" };

/** Digits of the shard numbers in `model-00001-of-00004.safetensors`. */
const SHARD_NUMBER_DIGITS = 5;

/** Files copied alongside weights: tokenizer, generation config, chat template, HARPE plan and remote code. */
export const AUXILIARY_FILES: readonly string[] = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "added_tokens.json",
  "tokenizer.model",
  "vocab.json",
  "merges.txt",
  "generation_config.json",
  "chat_template.jinja",
  "chat_template.json",
  "harpe_plan.yaml",
  "modeling_harpe.py",
];

/** One tensor to write; `read` is called once, when its turn comes, so memory holds one tensor. */
export interface SourceTensor {
  name: string;
  dtype: DType;
  shape: number[];
  read: () => Promise<Uint8Array>;
  /**
   * Optional streaming form used instead of `read` when given: the bytes in order, in chunks (each may
   * reuse the previous one's buffer: it is written before the next is asked for).
   */
  chunks?: () => Iterable<Uint8Array>;
}

/** What to write: the raw config.json object and the tensors in checkpoint order. */
export interface CheckpointSource {
  config: Record<string, unknown>;
  tensors: SourceTensor[];
}

/** Options for {@link writeCheckpoint}. */
export interface WriteCheckpointOptions {
  /** Largest shard in bytes of tensor data (a larger tensor gets a shard of its own). */
  shardSize?: number;
  /** Replace an existing directory (only once the new one is complete). */
  overwrite?: boolean;
  /** Directory to copy {@link AUXILIARY_FILES} from (those present). */
  copyFilesFrom?: string;
  /** Progress bar on stderr: false = never; otherwise drawn when stderr is a terminal. */
  progress?: boolean;
}

/** One shard written. */
export interface WrittenShard {
  file: string;
  tensors: number;
  /** Bytes of tensor data in the shard. */
  bytes: number;
}

/** What a write produced. */
export interface WriteSummary {
  shards: WrittenShard[];
  /** Bytes of tensor data over all shards (the index's `total_size`). */
  totalSize: number;
  totalParameters: number;
  /** Auxiliary files copied. */
  copied: string[];
}

/** Yields `chunks`, calling `written` with each one's size once the consumer has taken it. */
function* counted(chunks: Iterable<Uint8Array>, written: (bytes: number) => void): Generator<Uint8Array> {
  for (const chunk of chunks) {
    yield chunk;
    written(chunk.byteLength);
  }
}

/** Writes one shard file: each tensor streamed from `chunks` or read whole; `written` counts bytes. */
async function writeShard(
  path: string,
  tensors: SourceTensor[],
  written: (bytes: number) => void,
): Promise<void> {
  const writer = await SafetensorsWriter.create(path, tensors, { metadata: { ...SHARD_METADATA } });
  try {
    for (const tensor of tensors) {
      if (tensor.chunks) {
        await writer.writeChunks(tensor.name, counted(tensor.chunks(), written));
      } else {
        const data = await tensor.read();
        await writer.write(tensor.name, data);
        written(data.byteLength);
      }
    }
    await writer.finish();
  } catch (error) {
    await writer.abort();
    throw error;
  }
}

/** A tensor's header and data size, checked for overflow. */
function sized(tensor: TensorHeader): TensorHeader & { bytes: number; elements: number } {
  const bytes = tensorByteLength(tensor.shape, tensor.dtype);
  if (bytes === undefined) {
    throw new ShapeError(`Tensor "${tensor.name}" with shape [${tensor.shape.join(", ")}] is too large`, {
      tensor: tensor.name,
      actual: tensor.shape,
    });
  }
  const elements = tensor.shape.reduce((a, b) => a * b, 1);
  return { name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, bytes, elements };
}

/**
 * Groups tensors into shards in order: a shard is closed when the next tensor would push it past
 * `shardSize` bytes; a tensor larger than `shardSize` gets a shard of its own.
 *
 * @example
 * ```ts
 * planShards([{ name: "a", dtype: "F32", shape: [4] }, { name: "b", dtype: "F32", shape: [4] }], 20).length; // 2
 * ```
 */
export function planShards<T extends TensorHeader>(tensors: T[], shardSize: number): T[][] {
  if (!Number.isSafeInteger(shardSize) || shardSize < 1) {
    throw new ConfigError(`Shard size must be a positive number of bytes, got ${shardSize}`, {
      field: "shardSize",
      actual: shardSize,
    });
  }
  const shards: T[][] = [];
  let current: T[] = [];
  let size = 0;
  for (const tensor of tensors) {
    const bytes = sized(tensor).bytes;
    if (current.length > 0 && size + bytes > shardSize) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(tensor);
    size += bytes;
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);
  return shards;
}

/** The HF name of shard `i` (0-based) of `n`. */
export function shardFileName(i: number, n: number): string {
  if (n === 1) return SINGLE_FILE;
  const pad = (k: number) => String(k).padStart(SHARD_NUMBER_DIGITS, "0");
  return `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
}

async function copyAuxiliaryFiles(from: string, to: string): Promise<string[]> {
  const copied: string[] = [];
  for (const name of AUXILIARY_FILES) {
    if (!await isFile(`${from}/${name}`)) continue;
    await Deno.copyFile(`${from}/${name}`, `${to}/${name}`);
    copied.push(name);
  }
  return copied;
}

function checkUniqueNames(tensors: SourceTensor[]): void {
  const seen = new Set<string>();
  for (const { name } of tensors) {
    if (seen.has(name)) {
      throw new ShapeError(`Tensor "${name}" is given twice`, { tensor: name, hint: "each tensor once" });
    }
    seen.add(name);
  }
}

/**
 * Writes the checkpoint files into the existing directory `dir` (not atomic by itself: see
 * {@link writeCheckpoint}). Tensors are read and written one at a time.
 *
 * @example
 * ```ts
 * await writeDirectoryAtomically("out", (tmp) => writeCheckpointFiles(tmp, source, { shardSize: 1e9 }));
 * ```
 */
export async function writeCheckpointFiles(
  dir: string,
  source: CheckpointSource,
  options: Omit<WriteCheckpointOptions, "overwrite"> = {},
): Promise<WriteSummary> {
  checkUniqueNames(source.tensors);
  const shards = planShards(source.tensors, options.shardSize ?? DEFAULT_SHARD_SIZE);
  const copied = options.copyFilesFrom ? await copyAuxiliaryFiles(options.copyFilesFrom, dir) : [];
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(source.config, null, 2) + "\n");
  const sizes = source.tensors.map(sized);
  const totalSize = sizes.reduce((sum, t) => sum + t.bytes, 0);
  const totalParameters = sizes.reduce((sum, t) => sum + t.elements, 0);
  const progress = new Progress("writing", totalSize, {
    bytes: true,
    ...(options.progress === false ? { enabled: false } : {}),
  });
  const written: WrittenShard[] = [];
  const weightMap: Record<string, string> = {};
  for (const [i, tensors] of shards.entries()) {
    const file = shardFileName(i, shards.length);
    let bytes = 0;
    await writeShard(`${dir}/${file}`, tensors, (n) => {
      bytes += n;
      progress.advance(n, file);
    });
    for (const tensor of tensors) weightMap[tensor.name] = file;
    written.push({ file, tensors: tensors.length, bytes });
  }
  progress.finish();
  if (shards.length > 1) {
    const sortedMap = Object.fromEntries(
      Object.entries(weightMap).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0),
    );
    const index = {
      metadata: { total_parameters: totalParameters, total_size: totalSize },
      weight_map: sortedMap,
    };
    await Deno.writeTextFile(`${dir}/${INDEX_FILE}`, JSON.stringify(index, null, 2) + "\n");
  }
  return { shards: written, totalSize, totalParameters, copied };
}

/**
 * Writes a HF-layout checkpoint directory atomically: config.json (the given raw object), shards named
 * model-0000i-of-0000N.safetensors (or model.safetensors when one shard), the index with
 * metadata.total_size and weight_map, {"format":"pt"} metadata in every shard. Tensors are pulled one at a
 * time from `source`, so memory stays bounded by the largest tensor. `dir` appears only when complete.
 *
 * @example
 * ```ts
 * const checkpoint = await Checkpoint.open("in");
 * await writeCheckpoint("out", {
 *   config: checkpoint.config.raw,
 *   tensors: [...checkpoint.tensors.values()].map((t) => ({ ...t, read: () => checkpoint.readBytes(t.name) })),
 * }, { shardSize: 2e9, copyFilesFrom: "in" });
 * ```
 */
export function writeCheckpoint(
  dir: string,
  source: CheckpointSource,
  options: WriteCheckpointOptions = {},
): Promise<WriteSummary> {
  return writeDirectoryAtomically(dir, (temporary) => writeCheckpointFiles(temporary, source, options), {
    overwrite: options.overwrite,
  });
}
