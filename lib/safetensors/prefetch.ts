// Reading (and f32 -> bf16 casting) tensor bytes on a worker thread into a shared ring of chunks while
// the caller writes the previous ones: overlaps a streamed export's reads and casts with its writes.

import { sharedMemory } from "./bf16_simd.ts";

/** A byte range of a file to stream, optionally rounded from f32 to bf16 on the way. */
export interface PrefetchJob {
  path: string;
  /** Absolute byte offset in the file. */
  offset: number;
  byteLength: number;
  /** Round f32 values to bf16 (the chunks then hold half the bytes). */
  toBf16: boolean;
}

/** Indices into the shared control words (Int32). */
export const REQUEST = 0;
export const JOB = 1;
export const PRODUCED = 2;
export const CONSUMED = 3;
export const FAILED = 4;
export const ERROR_LENGTH = 5;
export const CHUNK_LENGTHS = 6;
/** REQUEST value that stops the worker. */
export const STOP = -1;
/** Bytes of the error message area after the control words. */
export const ERROR_BYTES = 4096;

/** Ring slots: the worker may run this many chunks ahead of the writer. */
const DEFAULT_SLOTS = 4;
/** How long a waiting reader sleeps between checks that the worker is still there. */
const WAIT_SLICE_MS = 1000;
/** A worker that produces nothing for this long is taken as gone. */
const STALL_LIMIT_MS = 60_000;

/** What the worker is started with. */
export interface PrefetchInit {
  memory: WebAssembly.Memory;
  chunkBytes: number;
  slots: number;
  jobs: PrefetchJob[];
}

/** Room after the cast input for the kernel's whole-group reads. */
const KERNEL_SLACK_BYTES = 64;

/** Byte offsets of the shared memory's parts: control words, error text, `slots` chunks, cast input. */
function offsets(options: { chunkBytes: number; slots: number }) {
  const words = CHUNK_LENGTHS + options.slots;
  const errorAt = words * 4;
  const ringAt = errorAt + ERROR_BYTES;
  const inputAt = ringAt + options.chunkBytes * options.slots;
  return { words, errorAt, ringAt, inputAt, bytes: inputAt + options.chunkBytes + KERNEL_SLACK_BYTES };
}

/** Views of the shared memory's parts, and where the ring and the cast input start. */
export function layout(memory: WebAssembly.Memory, options: { chunkBytes: number; slots: number }) {
  const { words, errorAt, ringAt, inputAt } = offsets(options);
  const buffer = memory.buffer as SharedArrayBuffer;
  return {
    control: new Int32Array(buffer, 0, words),
    error: new Uint8Array(buffer, errorAt, ERROR_BYTES),
    ring: new Uint8Array(buffer, ringAt, options.chunkBytes * options.slots),
    input: new Uint8Array(buffer, inputAt, options.chunkBytes),
    ringAt,
    inputAt,
  };
}

/**
 * A worker thread streaming the byte ranges of `jobs`, one job at a time as asked for, in chunks of
 * `chunkBytes` (f32 -> bf16 jobs: chunks of `chunkBytes / 2`) through a ring of shared buffers.
 *
 * @example
 * ```ts
 * const prefetch = await ChunkPrefetcher.start([{ path: "a.safetensors", offset: 128, byteLength: 4096, toBf16: true }]);
 * for (const chunk of prefetch.chunks(0)) file.writeSync(chunk);
 * prefetch.close();
 * ```
 */
export class ChunkPrefetcher {
  #consumed = 0;
  #broken = false;

  private constructor(
    private readonly worker: Worker,
    private readonly jobs: PrefetchJob[],
    private readonly init: PrefetchInit,
    private readonly shared: ReturnType<typeof layout>,
  ) {}

  /** Starts the worker and resolves once it is waiting for requests. */
  static async start(
    jobs: PrefetchJob[],
    options: { chunkBytes: number; slots?: number },
  ): Promise<ChunkPrefetcher> {
    const slots = options.slots ?? DEFAULT_SLOTS;
    const { chunkBytes } = options;
    const memory = sharedMemory(offsets({ chunkBytes, slots }).bytes);
    const init: PrefetchInit = { memory, chunkBytes, slots, jobs };
    const worker = new Worker(new URL("./prefetch_worker.ts", import.meta.url), { type: "module" });
    try {
      await new Promise<void>((resolve, reject) => {
        worker.onmessage = () => resolve();
        worker.onerror = (event) => {
          event.preventDefault();
          reject(new Error(`the prefetch worker failed to start: ${event.message}`));
        };
        worker.postMessage(init);
      });
    } catch (error) {
      worker.terminate();
      throw error;
    }
    return new ChunkPrefetcher(worker, jobs, init, layout(memory, { chunkBytes, slots }));
  }

  /**
   * The chunks of job `index`, in order; each is valid until the next is asked for. Jobs must be taken
   * one at a time, each to its end.
   */
  *chunks(index: number): Generator<Uint8Array> {
    if (this.#broken) throw new Error("Cannot prefetch: an earlier job was left unfinished");
    const { control, ring } = this.shared;
    const { chunkBytes, slots } = this.init;
    const count = Math.ceil(this.jobs[index].byteLength / chunkBytes);
    Atomics.store(control, JOB, index);
    Atomics.add(control, REQUEST, 1);
    Atomics.notify(control, REQUEST);
    let taken = 0;
    try {
      for (; taken < count; taken++) {
        this.#awaitChunk();
        const slot = this.#consumed % slots;
        yield ring.subarray(slot * chunkBytes, slot * chunkBytes + control[CHUNK_LENGTHS + slot]);
        Atomics.store(control, CONSUMED, ++this.#consumed);
        Atomics.notify(control, CONSUMED);
      }
    } finally {
      if (taken < count) this.#broken = true;
    }
  }

  /** Blocks until the chunk after the consumed ones is there; throws what the worker failed with. */
  #awaitChunk(): void {
    const { control, error } = this.shared;
    const started = performance.now();
    for (;;) {
      if (Atomics.load(control, FAILED) !== 0) {
        this.#broken = true;
        const message = new TextDecoder().decode(error.subarray(0, control[ERROR_LENGTH]));
        throw new Error(`Reading tensor data failed: ${message}`);
      }
      if (Atomics.load(control, PRODUCED) > this.#consumed) return;
      if (performance.now() - started > STALL_LIMIT_MS) {
        this.#broken = true;
        throw new Error(`The prefetch worker produced nothing for ${STALL_LIMIT_MS / 1000} s`);
      }
      Atomics.wait(control, PRODUCED, this.#consumed, WAIT_SLICE_MS);
    }
  }

  /** Stops the worker. */
  close(): void {
    Atomics.store(this.shared.control, REQUEST, STOP);
    Atomics.notify(this.shared.control, REQUEST);
    Atomics.notify(this.shared.control, CONSUMED);
    this.worker.terminate();
  }
}
