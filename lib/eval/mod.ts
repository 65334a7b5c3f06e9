// Evaluation's public API: greedy generation with a KV cache, sliding-window perplexity, passkey and
// the 8 NIAH tasks (prompt builders, scorers), the resumable grid runner, summaries and report files.

export { type DecodeOptions, DecodeSession, tokenLosses } from "../model/decode.ts";
export {
  argmax,
  DEFAULT_MAX_NEW_TOKENS,
  generateGreedy,
  type GenerateOptions,
  type Generation,
} from "./generate.ts";
export { byteCodec, loadCodec, type TextCodec } from "./codec.ts";
export { formatLength, parseLengths } from "./lengths.ts";
export {
  type Cell,
  cellKey,
  cellSeed,
  DEFAULT_DEPTHS,
  type EvalTask,
  gridCells,
  parseDepths,
} from "./grid.ts";
export { drawNeedles, type NeedleKind } from "./needles.ts";
export {
  DEFAULT_CORPUS_DIR,
  essayHaystack,
  type Haystack,
  needleHaystack,
  noiseHaystack,
  readCorpusSentences,
} from "./haystack.ts";
export {
  assemblePrompt,
  buildPrompt,
  type BuiltPrompt,
  type PlacedNeedle,
  type PromptParts,
} from "./prompt.ts";
export { PASSKEY_DIGITS, passkeyCase } from "./passkey.ts";
export { NIAH_SPECS, NIAH_TASKS, niahCase, type NiahTask, type NiahTaskSpec, parseNiahTask } from "./niah.ts";
export { scoreAll, scorePasskey } from "./scoring.ts";
export { DEFAULT_PPL_STRIDE, type PplWindow, slidingWindowNll, slidingWindows } from "./perplexity.ts";
export { type CellResult, RESULTS_FILE, ResultsStore } from "./results_store.ts";
export { DEFAULT_SAMPLES, type EvalOptions, type EvalRun, runEval } from "./run.ts";
export { averageTable, type PplPoint, pplPoints, type ScorePoint, scorePoints } from "./summary.ts";
export { type ReportInfo, type ReportPlotter, writeReport } from "./report.ts";
export { depthLabel, reportPlotter } from "./plots.ts";
