// Exports a checkpoint the Hugging Face way: re-sharded, optionally cast to another dtype, config dtype
// updated, tokenizer and generation files copied, written atomically and optionally verified.

import { UnsupportedError } from "../errors.ts";
import { castByteLength, castBytes, DEFAULT_CHUNK_BYTES, type DType } from "../safetensors/mod.ts";
import { ChunkPrefetcher, type PrefetchJob } from "../safetensors/prefetch.ts";
import { writeDirectoryAtomically } from "../util/atomic.ts";
import { Progress } from "../util/progress.ts";
import { Checkpoint, type CheckpointTensor } from "./checkpoint.ts";
import { type SourceTensor, writeCheckpointFiles, type WriteSummary } from "./writer.ts";

/** The dtypes a checkpoint can be written in. */
export type WeightDType = "F32" | "BF16" | "F16";

/** Weight dtypes by their config.json names (v5 `dtype`, v4 `torch_dtype`). */
export const CONFIG_DTYPE_NAMES: Readonly<Record<WeightDType, string>> = {
  F32: "float32",
  BF16: "bfloat16",
  F16: "float16",
};

/** Options for {@link exportCheckpoint}. */
export interface ExportOptions {
  /** Cast every tensor to this dtype (default: keep each tensor's stored dtype). */
  dtype?: WeightDType;
  /** Largest shard in bytes (default 5 GB). */
  shardSize?: number;
  /** Re-read every written tensor and compare it with the (cast) source before the output appears. */
  verify?: boolean;
  /** Replace an existing output directory. */
  overwrite?: boolean;
  /** Progress bars on stderr: false = never; otherwise when stderr is a terminal. */
  progress?: boolean;
  /** The config.json object to write instead of the source's (its dtype is still updated for `dtype`). */
  config?: Record<string, unknown>;
  /** Extra text files written into the output before it appears (e.g. transformers remote code). */
  files?: { name: string; text: string }[];
}

/** What an export wrote. */
export interface ExportSummary extends WriteSummary {
  source: string;
  output: string;
  tensors: number;
  /** The dtypes written (one entry unless the source mixes dtypes and no dtype was asked for). */
  dtypes: string[];
  verified: boolean;
}

/** The config with its dtype field(s) set to `dtype`, in whichever form(s) the source has (v4 if none). */
export function configWithDType(raw: Record<string, unknown>, dtype: WeightDType): Record<string, unknown> {
  const name = CONFIG_DTYPE_NAMES[dtype];
  const config = { ...raw };
  const v5 = "dtype" in config;
  const v4 = "torch_dtype" in config;
  if (v5) config.dtype = name;
  if (v4 || !v5) config.torch_dtype = name;
  return config;
}

/** Index of the first differing byte of two equally long arrays, or -1; compares 4 bytes at a time. */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const words = a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0 ? Math.floor(a.byteLength / 4) : 0;
  const wa = new Uint32Array(a.buffer, a.byteOffset, words);
  const wb = new Uint32Array(b.buffer, b.byteOffset, words);
  let i = 0;
  while (i < words && wa[i] === wb[i]) i++;
  for (let byte = i * 4; byte < a.byteLength; byte++) if (a[byte] !== b[byte]) return byte;
  return -1;
}

/** Largest growth of a chunk by a cast (BF16/F16 -> F32). */
const MAX_CAST_GROWTH = 2;

/** Casts `bytes` of a tensor stored as `from` to `cast` (into `out` when it fits); no cast: `bytes`. */
function castTo(
  cast: WeightDType | undefined,
  bytes: Uint8Array,
  options: { from: DType; out?: Uint8Array },
): Uint8Array {
  return cast ? castBytes(bytes, { from: options.from, to: cast }, { out: options.out }) : bytes;
}

/** The worker's job for a tensor: a plain copy or f32 -> bf16; other casts stay on this thread. */
function prefetchJob(info: CheckpointTensor, cast: WeightDType | undefined): PrefetchJob | undefined {
  const toBf16 = info.dtype === "F32" && cast === "BF16";
  if (!toBf16 && cast !== undefined && cast !== info.dtype) return undefined;
  return { path: info.file, offset: info.offset, byteLength: info.byteLength, toBf16 };
}

/**
 * The checkpoint's tensors as export sources, streamed in chunks: plain copies and f32 -> bf16 read and
 * cast ahead on a worker thread while this one writes, other casts through two reused buffers here.
 */
async function sourceTensors(
  checkpoint: Checkpoint,
  cast: WeightDType | undefined,
): Promise<{ tensors: SourceTensor[]; prefetch?: ChunkPrefetcher }> {
  const infos = [...checkpoint.tensors.values()];
  const jobs = infos.map((info) => prefetchJob(info, cast));
  const ahead = jobs.filter((job) => job !== undefined);
  const prefetch = ahead.length > 0
    ? await ChunkPrefetcher.start(ahead, { chunkBytes: DEFAULT_CHUNK_BYTES })
    : undefined;
  const buffer = new Uint8Array(DEFAULT_CHUNK_BYTES);
  const out = new Uint8Array(DEFAULT_CHUNK_BYTES * MAX_CAST_GROWTH);
  const tensors = infos.map((info, i) => {
    const index = ahead.indexOf(jobs[i]!);
    return {
      name: info.name,
      dtype: cast ?? info.dtype,
      shape: info.shape,
      read: async () => castTo(cast, await checkpoint.readBytes(info.name), { from: info.dtype }),
      chunks: prefetch && index >= 0 ? () => prefetch.chunks(index) : function* () {
        for (const chunk of checkpoint.readChunks(info.name, { buffer })) {
          yield castTo(cast, chunk, { from: info.dtype, out });
        }
      },
    };
  });
  return { tensors, prefetch };
}

/**
 * Re-reads every tensor written to `dir` and compares it, chunk by chunk, with the source's bytes (same
 * dtype) or with their cast to `cast`. Throws (a failure, not bad input) at the first difference.
 */
async function verifyOutput(
  dir: string,
  source: Checkpoint,
  cast: WeightDType | undefined,
  options: ExportOptions,
): Promise<void> {
  const output = await Checkpoint.open(dir);
  const buffer = new Uint8Array(DEFAULT_CHUNK_BYTES);
  const expected = new Uint8Array(DEFAULT_CHUNK_BYTES * MAX_CAST_GROWTH);
  const actual = new Uint8Array(DEFAULT_CHUNK_BYTES * MAX_CAST_GROWTH);
  try {
    const total = [...output.tensors.values()].reduce((sum, t) => sum + t.byteLength, 0);
    const progress = new Progress("verifying", total, {
      bytes: true,
      ...(options.progress === false ? { enabled: false } : {}),
    });
    for (const info of source.tensors.values()) {
      const dtype = cast ?? info.dtype;
      const written = output.info(info.name);
      if (
        written.dtype !== dtype ||
        written.byteLength !== castByteLength(info.byteLength, { from: info.dtype, to: dtype })
      ) {
        throw new Error(
          `verification failed: tensor "${info.name}" was written as ${written.dtype} with ` +
            `${written.byteLength} bytes, expected ${dtype}`,
        );
      }
      let at = 0;
      for (const chunk of source.readChunks(info.name, { buffer })) {
        const want = castTo(cast, chunk, { from: info.dtype, out: expected });
        const got = output.readInto(info.name, actual.subarray(0, want.byteLength), { start: at });
        const differs = firstDifference(got, want);
        if (differs >= 0) {
          throw new Error(
            `verification failed: tensor "${info.name}" in "${written.file}" differs from the source at ` +
              `byte ${at + differs}`,
          );
        }
        progress.advance(got.byteLength);
        at += got.byteLength;
      }
    }
    progress.finish();
  } finally {
    output.close();
  }
}

async function realPath(path: string): Promise<string | undefined> {
  try {
    return await Deno.realPath(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/**
 * Exports the checkpoint in `src` to the directory `dst`: tensors cast to `options.dtype` (if given) and
 * re-sharded by `options.shardSize`, config.json copied with its dtype updated, auxiliary files copied.
 * Streams tensor by tensor; `dst` appears only when complete (and verified, with `verify`).
 *
 * @example
 * ```ts
 * await exportCheckpoint("./run/latest", "./model-128k", { dtype: "BF16", shardSize: 5e9, verify: true });
 * ```
 */
export async function exportCheckpoint(
  src: string,
  dst: string,
  options: ExportOptions = {},
): Promise<ExportSummary> {
  const checkpoint = await Checkpoint.open(src);
  let stopPrefetch = () => {};
  try {
    const from = await realPath(checkpoint.dir);
    if (from !== undefined && from === await realPath(dst)) {
      throw new UnsupportedError(`Cannot export "${src}" onto itself`, {
        file: dst,
        hint: "choose another output directory",
      });
    }
    const cast = options.dtype;
    const { tensors, prefetch } = await sourceTensors(checkpoint, cast);
    stopPrefetch = () => prefetch?.close();
    const raw = options.config ?? checkpoint.config.raw;
    const config = options.dtype ? configWithDType(raw, options.dtype) : raw;
    const summary = await writeDirectoryAtomically(dst, async (temporary) => {
      const written = await writeCheckpointFiles(temporary, { config, tensors }, {
        shardSize: options.shardSize,
        copyFilesFrom: checkpoint.dir,
        progress: options.progress,
      });
      for (const file of options.files ?? []) {
        await Deno.writeTextFile(`${temporary}/${file.name}`, file.text);
      }
      if (options.verify) await verifyOutput(temporary, checkpoint, cast, options);
      return written;
    }, { overwrite: options.overwrite });
    return {
      ...summary,
      source: checkpoint.dir,
      output: dst,
      tensors: tensors.length,
      dtypes: [...new Set(tensors.map((t) => t.dtype))],
      verified: options.verify === true,
    };
  } finally {
    stopPrefetch();
    checkpoint.close();
  }
}
