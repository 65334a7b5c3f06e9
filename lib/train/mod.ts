// Training: train.yaml, the LR schedule, AdamW on the engine, the loop with its guard and logging,
// run checkpoints with exact resume, the memory estimate, and `train` tying them together.

export {
  loadTrainConfig,
  parseTrainConfig,
  type TrainConfig,
  type TrainConfigInput,
  trainConfigSchema,
} from "./config.ts";
export { evaluateLoss, type EvaluateOptions } from "./evaluate.ts";
export { type LogRecord, readLog, TrainLog } from "./log.ts";
export { type LoopContext, runTraining, type TrainableModel, TrainingDivergedError } from "./loop.ts";
export {
  checkMemoryFits,
  cudaAllocationBytes,
  estimateTrainingMemory,
  formatMemoryEstimate,
  type MemoryCapacity,
  memoryCapacity,
  type MemoryDevice,
  type MemoryEstimate,
  type MemoryLine,
  type MemoryRun,
  TrainingMemoryError,
} from "./memory.ts";
export { AdamW, type AdamWOptions, type AdamWState } from "./optimizer.ts";
export {
  CHECKPOINTS_DIR,
  findLatestCheckpoint,
  LATEST,
  loadRunState,
  saveRunCheckpoint,
  type TrainerState,
} from "./run_checkpoint.ts";
export { learningRate, type ScheduleOptions } from "./schedule.ts";
export { train, type TrainOptions, type TrainSummary } from "./train.ts";
