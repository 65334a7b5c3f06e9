// Held-out loss: the mean next-token loss of a model over the first batches of a token file, packed
// in file order (no shuffling), so "before" and "after" numbers compare like with like.

import { PackedLoader, type TokenData, type TokenSource } from "../data/loader.ts";
import type { TrainableModel } from "./loop.ts";

/** Options for {@link evaluateLoss}. */
export interface EvaluateOptions {
  /** T: tokens per sequence. */
  seqLen: number;
  /** B: sequences per batch (default 1). */
  batch?: number;
  /** Batches to average over (default 1). */
  batches?: number;
  eosId: number;
}

/**
 * Mean loss over `batches` batches of `data`. Uses the model's forward+backward and clears the
 * gradients afterwards (the parameters are not changed).
 *
 * @example
 * ```ts
 * const loss = await evaluateLoss(model, heldOut, { seqLen: 256, batch: 2, batches: 4, eosId: 1 });
 * ```
 */
export async function evaluateLoss(
  model: TrainableModel,
  data: TokenData | TokenSource,
  options: EvaluateOptions,
): Promise<number> {
  const batch = options.batch ?? 1;
  const batches = options.batches ?? 1;
  const loader = new PackedLoader(data, {
    seqLen: options.seqLen,
    batch,
    seed: 0,
    eosId: options.eosId,
    shuffle: false,
  });
  let sum = 0;
  for (let i = 0; i < batches; i++) {
    const { inputs, targets } = loader.next();
    sum += await model.forwardBackward(inputs, targets, { batch, gradScale: 1 });
  }
  model.zeroGrads();
  return sum / batches;
}
