// Hugging Face checkpoints: config.json (v4 and v5 forms), lazy single-file or sharded reading
// validated against the parameter table, atomic sharded writing, and export.

export * from "./model_config.ts";
export * from "./tensor_table.ts";
export { ARCHITECTURE_CLASSES, parseConfig, readConfig } from "./config.ts";
export { SUPPORTED_ROPE_TYPES } from "./rope_config.ts";
export { Checkpoint, type CheckpointTensor } from "./checkpoint.ts";
export { INDEX_FILE, SINGLE_FILE } from "./shard_index.ts";
export {
  AUXILIARY_FILES,
  type CheckpointSource,
  DEFAULT_SHARD_SIZE,
  planShards,
  shardFileName,
  type SourceTensor,
  writeCheckpoint,
  type WriteCheckpointOptions,
  type WriteSummary,
} from "./writer.ts";
export { exportCheckpoint, type ExportOptions, type ExportSummary, type WeightDType } from "./export.ts";
export { parseSize } from "./size.ts";
