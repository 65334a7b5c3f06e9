// The Communicator of a data-parallel run on CUDA devices: NCCL collectives on the engine's stream,
// after rank 0's unique id went round through the rendezvous.

import { CudaEngine, type CudaTensor } from "../engine/cuda/engine.ts";
import { Nccl, NCCL_MULTICAST_OFF, NCCL_UNIQUE_ID_BYTES, type NcclDType } from "../engine/cuda/ffi/nccl.ts";
import type { Engine, Tensor } from "../engine/engine.ts";
import { UnsupportedError } from "../errors.ts";
import type { Communicator } from "./communicator.ts";
import { exchangeId, removeRendezvousFile, type Rendezvous } from "./rendezvous.ts";

/** Options of {@link NcclCommunicator.create}. */
export interface NcclCommunicatorOptions {
  rank: number;
  worldSize: number;
  rendezvous: Rendezvous;
  /** Folder holding libnccl.so.2 when it is not in the usual places. */
  libDir?: string;
  /** How long to wait for the other ranks at the rendezvous. */
  timeoutMs?: number;
}

/**
 * NCCL over a CUDA engine's device and stream (one GPU per process).
 *
 * @example
 * ```ts
 * const engine = await CudaEngine.open();
 * const comm = await NcclCommunicator.create(engine, { rank, worldSize: 2, rendezvous: parseRendezvous("file:run/rdv") });
 * await comm.allReduceSum(grads);
 * ```
 */
export class NcclCommunicator implements Communicator {
  #scratch: Tensor | null = null;

  private constructor(
    readonly rank: number,
    readonly worldSize: number,
    private readonly nccl: Nccl,
    private readonly comm: bigint,
    private readonly engine: CudaEngine,
  ) {}

  /** Loads NCCL, exchanges the unique id and joins the group (resolves when every rank has joined). */
  static async create(engine: Engine, options: NcclCommunicatorOptions): Promise<NcclCommunicator> {
    if (!(engine instanceof CudaEngine)) {
      throw new UnsupportedError(
        `Training on several ranks runs on NCCL and needs device cuda, not ${engine.name}`,
        {
          field: "device",
          hint: "set device: cuda, or train on one process (without --gpus/--world-size)",
        },
      );
    }
    // Also for ranks that another launcher started (harpe's own sets it in their environment).
    for (const [name, value] of Object.entries(NCCL_MULTICAST_OFF)) Deno.env.set(name, value);
    const nccl = Nccl.open({ libDir: options.libDir });
    const id = await exchangeId(options.rendezvous, {
      rank: options.rank,
      worldSize: options.worldSize,
      id: options.rank === 0 ? nccl.uniqueId() : undefined,
      bytes: NCCL_UNIQUE_ID_BYTES,
      timeoutMs: options.timeoutMs,
    });
    const comm = await nccl.initRank(id, { rank: options.rank, worldSize: options.worldSize });
    if (options.rank === 0) await removeRendezvousFile(options.rendezvous);
    return new NcclCommunicator(options.rank, options.worldSize, nccl, comm, engine);
  }

  #buffers(tensor: Tensor): { send: bigint; recv: bigint; count: number; dtype: NcclDType; stream: bigint } {
    const t = tensor as CudaTensor;
    if (t.dtype !== "f32" && t.dtype !== "bf16") {
      throw new UnsupportedError(`NCCL collectives here take f32 or bf16 tensors, got ${t.dtype}`);
    }
    return {
      send: t.pointer,
      recv: t.pointer,
      count: t.size,
      dtype: t.dtype,
      stream: this.engine.device.stream,
    };
  }

  allReduceSum(tensor: Tensor): Promise<void> {
    this.nccl.allReduceSum(this.comm, this.#buffers(tensor));
    return Promise.resolve();
  }

  broadcast(tensor: Tensor, options: { root?: number } = {}): Promise<void> {
    this.nccl.broadcast(this.comm, { ...this.#buffers(tensor), root: options.root ?? 0 });
    return Promise.resolve();
  }

  /** An all-reduce of one element, waited for; also surfaces an asynchronous NCCL error. */
  async barrier(): Promise<void> {
    this.#scratch ??= this.engine.alloc([1]);
    await this.allReduceSum(this.#scratch);
    await this.engine.sync();
    this.nccl.checkAsync(this.comm);
  }

  abort(): void {
    this.nccl.abort(this.comm);
  }

  destroy(): void {
    if (this.#scratch) this.engine.free(this.#scratch);
    this.nccl.destroy(this.comm);
  }
}
