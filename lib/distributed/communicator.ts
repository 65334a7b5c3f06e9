// The collective operations data-parallel training needs, independent of the transport: NCCL in
// production (nccl_communicator.ts); anything with the same contract can stand in (e.g. in tests).

import type { Tensor } from "../engine/engine.ts";

/**
 * One process's handle on a group of `worldSize` ranks that all run the same sequence of collective
 * calls. Operations are ordered with the engine's own ops on the tensors given (an op enqueued before
 * a collective is seen by it; a later download sees its result).
 *
 * @example
 * ```ts
 * await communicator.allReduceSum(model.grads); // every rank now holds the sum over ranks
 * engine.scale({ x: model.grads, alpha: 1 / communicator.worldSize });
 * ```
 */
export interface Communicator {
  /** This process's rank, 0 <= rank < worldSize (rank 0 writes checkpoints and the log). */
  readonly rank: number;
  readonly worldSize: number;
  /** Replaces `tensor` (f32 or bf16) on every rank with the elementwise sum over all ranks. */
  allReduceSum(tensor: Tensor): Promise<void>;
  /** Replaces `tensor` on every rank with rank `root`'s (default 0). */
  broadcast(tensor: Tensor, options?: { root?: number }): Promise<void>;
  /** Resolves once every rank has called it. */
  barrier(): Promise<void>;
  /** Tears the group down after a failure, without waiting for the other ranks. */
  abort(): void;
  /** Releases the group after the last collective (every rank calls it). */
  destroy(): void;
}
