// harpe's public library API: everything a program needs to plan, convert, train, evaluate and
// export HARPE checkpoints without the command line.

export * from "./lib/errors.ts";
export { VERSION } from "./lib/version.ts";
export * from "./lib/safetensors/mod.ts";
export * from "./lib/checkpoint/mod.ts";
export * from "./lib/engine/mod.ts";
export * from "./lib/model/mod.ts";
export * from "./lib/data/mod.ts";
export * from "./lib/train/mod.ts";
export * from "./lib/distributed/mod.ts";
export * from "./lib/eval/mod.ts";
export * from "./lib/harpe/mod.ts";
export * from "./lib/plot/mod.ts";
export { sha256Hex } from "./lib/util/hash.ts";
