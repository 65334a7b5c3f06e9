// Data parallelism over a Communicator: which sequences of the global batch each rank trains on, and
// the gradient (and loss) averaging after the local backward passes.
//
// A step's global batch is G = batch * grad_accum sequences: the next grad_accum loader batches of
// `batch` sequences each, in loader order, numbered 0..G-1. Every rank reads all of them (so the loader
// cursor stays global and identical on every rank, and a checkpoint resumes on any number of ranks),
// and trains on its contiguous share [rank * G/N, (rank + 1) * G/N), in micro-batches of
// gcd(batch, G/N) sequences (never more than `batch`, the micro-batch the memory was sized for).
// Each rank averages its micro-batch losses and gradients; the all-reduce sums over ranks and the
// result is scaled by 1/N, in f32: the mean over the same G sequences a single rank computes, up to the
// order of the float additions (or, with train.yaml grad_reduce_dtype: bf16, up to bf16 rounding).

import type { Engine, Tensor } from "../engine/engine.ts";
import { ConfigError } from "../errors.ts";
import type { Communicator } from "./communicator.ts";

/** What one rank trains on in each step. */
export interface RankShare {
  /** Sequences of the global batch (G = batch * grad_accum). */
  globalSequences: number;
  /** First sequence of this rank's share. */
  first: number;
  /** Sequences per local micro-batch. */
  microBatch: number;
  /** Local micro-batches per step (share / microBatch). */
  microSteps: number;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * This rank's share of each step's global batch; ConfigError when batch * grad_accum is not a
 * multiple of the number of ranks.
 *
 * @example
 * ```ts
 * rankShare({ batch: 4, gradAccum: 2 }, { rank: 1, worldSize: 2 });
 * // { globalSequences: 8, first: 4, microBatch: 4, microSteps: 1 }
 * ```
 */
export function rankShare(
  batch: { batch: number; gradAccum: number },
  ranks: { rank: number; worldSize: number },
): RankShare {
  const globalSequences = batch.batch * batch.gradAccum;
  if (globalSequences % ranks.worldSize !== 0) {
    throw new ConfigError(
      `batch * grad_accum (${batch.batch} * ${batch.gradAccum} = ${globalSequences}) sequences per step ` +
        `cannot be split evenly over ${ranks.worldSize} ranks`,
      {
        field: "grad_accum",
        expected: `a multiple of ${ranks.worldSize}`,
        actual: globalSequences,
        hint: `make batch * grad_accum a multiple of ${ranks.worldSize}`,
      },
    );
  }
  const share = globalSequences / ranks.worldSize;
  const microBatch = gcd(batch.batch, share);
  return { globalSequences, first: ranks.rank * share, microBatch, microSteps: share / microBatch };
}

/** One local micro-batch: `microBatch` sequences of T tokens. */
export interface MicroBatch {
  inputs: Int32Array; // [b, T]
  targets: Int32Array; // [b, T]
}

/**
 * Cuts this rank's micro-batches out of a step's global batch, given as the loader's batches in order
 * (each [batch, T]).
 *
 * @example
 * ```ts
 * const batches = Array.from({ length: gradAccum }, () => loader.next());
 * for (const micro of rankMicroBatches(batches, { share, seqLen: T })) await model.forwardBackward(...);
 * ```
 */
export function rankMicroBatches(
  batches: { inputs: Int32Array; targets: Int32Array }[],
  options: { share: RankShare; seqLen: number },
): MicroBatch[] {
  const { share, seqLen } = options;
  const sequence = (which: "inputs" | "targets", index: number, out: Int32Array, at: number) => {
    const perBatch = batches[0][which].length / seqLen;
    const source = batches[Math.floor(index / perBatch)][which];
    const row = index % perBatch;
    out.set(source.subarray(row * seqLen, (row + 1) * seqLen), at * seqLen);
  };
  const micro: MicroBatch[] = [];
  for (let m = 0; m < share.microSteps; m++) {
    const inputs = new Int32Array(share.microBatch * seqLen);
    const targets = new Int32Array(share.microBatch * seqLen);
    for (let s = 0; s < share.microBatch; s++) {
      const index = share.first + m * share.microBatch + s;
      sequence("inputs", index, inputs, s);
      sequence("targets", index, targets, s);
    }
    micro.push({ inputs, targets });
  }
  return micro;
}

/**
 * Averages gradients over ranks: all-reduce (sum) of `grads`, then scale by 1/worldSize, in f32.
 * With `wire` (a bf16 tensor of the gradients' size) the sum travels in bf16: grads are rounded into
 * it, summed there, and widened back before the f32 scaling. Returns the mean over ranks of
 * `localLoss` (through the one-element f32 tensor `scratch`).
 *
 * @example
 * ```ts
 * const loss = await averageOverRanks(communicator, { engine, grads, scratch, localLoss });
 * ```
 */
export async function averageOverRanks(
  communicator: Communicator,
  parts: { engine: Engine; grads: Tensor; scratch: Tensor; localLoss: number; wire?: Tensor },
): Promise<number> {
  const { engine } = parts;
  const inverse = 1 / communicator.worldSize;
  if (parts.wire) {
    engine.copy({ out: parts.wire, x: parts.grads });
    await communicator.allReduceSum(parts.wire);
    engine.copy({ out: parts.grads, x: parts.wire });
  } else {
    await communicator.allReduceSum(parts.grads);
  }
  engine.scale({ x: parts.grads, alpha: inverse });
  engine.upload(parts.scratch, new Float32Array([parts.localLoss]));
  await communicator.allReduceSum(parts.scratch);
  return (await engine.download(parts.scratch))[0] * inverse;
}
