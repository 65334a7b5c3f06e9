// Bindings to NCCL (libnccl.so.2) through Deno FFI: the unique id, communicator init/destroy/abort,
// sum all-reduce and broadcast of f32/bf16 buffers on a CUDA stream, groups, version and error strings.
// Opened lazily by `Nccl.open` (only a data-parallel run on several GPUs loads it).

import { CudaError } from "./errors.ts";
import { openCudaLibrary } from "./library.ts";

const H = "usize" as const; // an opaque handle (ncclComm_t, cudaStream_t) as a bigint
const P = "u64" as const; // a device pointer

/**
 * The environment every rank gets: NVLink SHARP (multicast) stays off, because the device tool's notes
 * say multicast can take a shared host's GPUs out of service. NCCL_NVLS_ENABLE is NCCL's own variable,
 * read by NCCL when a communicator is made; it is not harpe configuration.
 */
export const NCCL_MULTICAST_OFF: Readonly<Record<string, string>> = { NCCL_NVLS_ENABLE: "0" };

/** Bytes of an ncclUniqueId (NCCL_UNIQUE_ID_BYTES), passed by value to ncclCommInitRank. */
export const NCCL_UNIQUE_ID_BYTES = 128;
const UNIQUE_ID_STRUCT = { struct: Array.from({ length: NCCL_UNIQUE_ID_BYTES }, () => "u8" as const) };

const SYMBOLS = {
  ncclGetVersion: { parameters: ["buffer"], result: "i32" },
  ncclGetErrorString: { parameters: ["i32"], result: "pointer" },
  ncclGetUniqueId: { parameters: ["buffer"], result: "i32" },
  // Blocks until every rank has joined: run off the main thread so the event loop (signals, timers)
  // keeps going meanwhile. On that thread NCCL finds CUDA device 0's primary context, the one the
  // engine uses: each rank process sees one GPU (CUDA_VISIBLE_DEVICES).
  ncclCommInitRank: {
    parameters: ["buffer", "i32", UNIQUE_ID_STRUCT, "i32"],
    result: "i32",
    nonblocking: true,
  },
  ncclCommDestroy: { parameters: [H], result: "i32" },
  ncclCommAbort: { parameters: [H], result: "i32" },
  ncclCommGetAsyncError: { parameters: [H, "buffer"], result: "i32" },
  ncclAllReduce: { parameters: [P, P, "usize", "i32", "i32", H, H], result: "i32" },
  ncclBroadcast: { parameters: [P, P, "usize", "i32", "i32", H, H], result: "i32" },
  ncclGroupStart: { parameters: [], result: "i32" },
  ncclGroupEnd: { parameters: [], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** ncclResult_t names, by value (nccl.h). */
const RESULT_NAMES = [
  "ncclSuccess",
  "ncclUnhandledCudaError",
  "ncclSystemError",
  "ncclInternalError",
  "ncclInvalidArgument",
  "ncclInvalidUsage",
  "ncclRemoteError",
  "ncclInProgress",
] as const;

/** ncclDataType_t of the element types harpe reduces. */
const DATA_TYPE = { f32: 7, bf16: 9 } as const;
/** ncclRedOp_t ncclSum. */
const NCCL_SUM = 0;
/** NCCL encodes versions >= 2.9 as major * 10000 + minor * 100 + patch. */
const VERSION_MAJOR = 10000;
const VERSION_MINOR = 100;

/** Element types NCCL reduces for harpe. */
export type NcclDType = keyof typeof DATA_TYPE;

/** A buffer operation on a stream: `count` elements of `dtype` from `send` into `recv` (may alias). */
export interface NcclBuffers {
  send: bigint;
  recv: bigint;
  count: number;
  dtype: NcclDType;
  /** The CUDA stream the operation is ordered on (the engine's stream). */
  stream: bigint;
}

/**
 * The NCCL library.
 *
 * @example
 * ```ts
 * const nccl = Nccl.open();
 * const id = nccl.uniqueId(); // rank 0 makes it, every rank gets a copy
 * const comm = await nccl.initRank(id, { rank: 0, worldSize: 2 });
 * nccl.allReduceSum(comm, { send: ptr, recv: ptr, count: n, dtype: "f32", stream });
 * ```
 */
export class Nccl {
  private readonly out32 = new Int32Array(1);

  private constructor(readonly lib: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"]) {}

  /** Opens libnccl (in `libDir`, the CUDA folders, or the loader path); CudaUnavailableError if absent. */
  static open(options: { libDir?: string } = {}): Nccl {
    return new Nccl(openCudaLibrary("nccl", SYMBOLS, options).symbols);
  }

  /** Throws a CudaError naming `call` and NCCL's description unless `status` is ncclSuccess. */
  check(call: string, status: number): void {
    if (status === 0) return;
    const pointer = this.lib.ncclGetErrorString(status);
    const text = pointer ? new Deno.UnsafePointerView(pointer).getCString() : "";
    throw new CudaError(call, status, RESULT_NAMES[status] ?? "unknown NCCL result", text);
  }

  /** The library's version, e.g. "2.27.3". */
  version(): string {
    this.check("ncclGetVersion", this.lib.ncclGetVersion(this.out32));
    const code = this.out32[0];
    const major = Math.floor(code / VERSION_MAJOR);
    const minor = Math.floor((code % VERSION_MAJOR) / VERSION_MINOR);
    return `${major}.${minor}.${code % VERSION_MINOR}`;
  }

  /** A new unique id (made by rank 0 and handed to every other rank before `initRank`). */
  uniqueId(): Uint8Array {
    const id = new Uint8Array(NCCL_UNIQUE_ID_BYTES);
    this.check("ncclGetUniqueId", this.lib.ncclGetUniqueId(id));
    return id;
  }

  /** Joins the communicator of `id` as `rank` of `worldSize` on the current CUDA device; resolves
   * once every rank has joined. */
  async initRank(id: Uint8Array, options: { rank: number; worldSize: number }): Promise<bigint> {
    const comm = new BigUint64Array(1);
    this.check(
      "ncclCommInitRank",
      await this.lib.ncclCommInitRank(comm, options.worldSize, id, options.rank),
    );
    return comm[0];
  }

  /** Enqueues recv = sum over ranks of send. */
  allReduceSum(comm: bigint, b: NcclBuffers): void {
    this.check(
      "ncclAllReduce",
      this.lib.ncclAllReduce(b.send, b.recv, BigInt(b.count), DATA_TYPE[b.dtype], NCCL_SUM, comm, b.stream),
    );
  }

  /** Enqueues recv = send of rank `root` on every rank. */
  broadcast(comm: bigint, b: NcclBuffers & { root: number }): void {
    this.check(
      "ncclBroadcast",
      this.lib.ncclBroadcast(b.send, b.recv, BigInt(b.count), DATA_TYPE[b.dtype], b.root, comm, b.stream),
    );
  }

  /** Starts a group: the operations until `groupEnd` are launched together. */
  groupStart(): void {
    this.check("ncclGroupStart", this.lib.ncclGroupStart());
  }

  groupEnd(): void {
    this.check("ncclGroupEnd", this.lib.ncclGroupEnd());
  }

  /** Throws the communicator's asynchronous error (e.g. a peer that went away), if any. */
  checkAsync(comm: bigint): void {
    this.check("ncclCommGetAsyncError", this.lib.ncclCommGetAsyncError(comm, this.out32));
    this.check("ncclCommGetAsyncError (asynchronous error)", this.out32[0]);
  }

  /** Frees the communicator after its pending operations finished. */
  destroy(comm: bigint): void {
    this.check("ncclCommDestroy", this.lib.ncclCommDestroy(comm));
  }

  /** Frees the communicator at once, cancelling pending operations (after a failure). */
  abort(comm: bigint): void {
    this.check("ncclCommAbort", this.lib.ncclCommAbort(comm));
  }
}
