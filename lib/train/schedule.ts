// Learning-rate schedule: linear warmup, then constant or cosine decay to a minimum.

/** Schedule settings (train.yaml `schedule` plus the peak lr and the run length). */
export interface ScheduleOptions {
  /** Peak learning rate, reached at the end of warmup. */
  lr: number;
  /** Steps of linear warmup from lr/warmup to lr (0 = none). */
  warmup: number;
  kind: "cosine" | "constant";
  /** Learning rate at the last step of a cosine schedule. */
  minLr: number;
  /** Total optimizer steps of the run. */
  totalSteps: number;
}

/**
 * The learning rate of optimizer step `step` (counted from 1): `lr * step / warmup` during warmup,
 * then `lr` (constant) or `minLr + (lr - minLr) * (1 + cos(pi * p)) / 2` with p going from 0 after
 * warmup to 1 at the last step (cosine).
 *
 * @example
 * ```ts
 * learningRate(1, { lr: 1e-3, warmup: 10, kind: "cosine", minLr: 1e-4, totalSteps: 100 }); // 1e-4
 * ```
 */
export function learningRate(step: number, options: ScheduleOptions): number {
  const { lr, warmup, kind, minLr, totalSteps } = options;
  if (step <= warmup) return (lr * step) / warmup;
  if (kind === "constant") return lr;
  const decaySteps = totalSteps - warmup;
  const progress = decaySteps > 0 ? Math.min(1, (step - warmup) / decaySteps) : 1;
  return minLr + (lr - minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
}
