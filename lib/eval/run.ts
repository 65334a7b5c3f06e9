// Runs an evaluation grid over checkpoints: perplexity vs length, passkey, or the NIAH tasks. Every
// finished cell goes to results.jsonl at once (so a rerun skips it), with a progress line on stderr.

import { ConfigError, PathError, ShapeError } from "../errors.ts";
import type { Engine, TensorDType } from "../engine/engine.ts";
import { IGNORE_INDEX } from "../engine/engine.ts";
import { Rng } from "../data/rng.ts";
import { openTokenFile } from "../data/token_file.ts";
import { READ_BUFFER_TOKENS } from "../data/token_source.ts";
import { loadModel } from "../model/load.ts";
import type { Model } from "../model/model.ts";
import { DecodeSession, tokenLosses } from "../model/decode.ts";
import { Progress } from "../util/progress.ts";
import { checkCodecFits, loadCodec, type TextCodec } from "./codec.ts";
import { type Cell, cellSeed, DEFAULT_DEPTHS, type EvalTask, gridCells } from "./grid.ts";
import { DEFAULT_CORPUS_DIR, readCorpusSentences } from "./haystack.ts";
import { generateGreedy } from "./generate.ts";
import { NIAH_TASKS, niahCase, type NiahTask } from "./niah.ts";
import { PASSKEY_DIGITS, passkeyCase } from "./passkey.ts";
import { buildPrompt, type PromptParts } from "./prompt.ts";
import { type CellResult, ResultsStore } from "./results_store.ts";
import { scoreAll, scorePasskey } from "./scoring.ts";
import { DEFAULT_PPL_STRIDE, slidingWindowNll } from "./perplexity.ts";
import { formatLength } from "./lengths.ts";

/** Samples per cell when none are given. */
export const DEFAULT_SAMPLES = 4;
/** Tokens generated beyond the expected answer's own length (room for a leading space, punctuation). */
export const ANSWER_MARGIN_TOKENS = 8;

/** Settings of one evaluation run. */
export interface EvalOptions {
  task: EvalTask;
  /** Context lengths in tokens (prompt + answer fit in each). */
  lengths: number[];
  /** Output folder: results.jsonl (+ the report written by writeReport). */
  outDir: string;
  engine: Engine;
  /** Needle depths 0..1 (passkey, NIAH); default 0, 0.1, ..., 1. */
  depths?: number[];
  /** Samples per cell; for perplexity, texts of the data file. Default 4. */
  samples?: number;
  seed?: number;
  /** tokenizer.json path or "bytes"; default CHECKPOINT/tokenizer.json. */
  tokenizer?: string;
  /** Perplexity: the token file (lib/data format). */
  data?: string;
  /** Perplexity: tokens a window advances (default 256). */
  stride?: number;
  /** Perplexity: tokens per sample text (default: the largest length). */
  textTokens?: number;
  /** NIAH: which tasks (default all 8). */
  niahTasks?: NiahTask[];
  /** NIAH: folder of .txt files for the real-text haystack (default fixtures/corpus). */
  haystackDir?: string;
  /** Passkey: digits of the key (default 5). */
  passkeyDigits?: number;
  cacheDtype?: TensorDType;
  /** Draw a progress line (default: when stderr is a terminal). */
  progress?: boolean;
}

/** What a run did. */
export interface EvalRun {
  results: CellResult[];
  computed: number;
  skipped: number;
}

/** The task names a run covers: "ppl", "passkey", or the chosen NIAH tasks. */
export function runTasks(options: Pick<EvalOptions, "task" | "niahTasks">): string[] {
  return options.task === "niah" ? [...(options.niahTasks ?? NIAH_TASKS)] : [options.task];
}

/** The settings that change a cell's content: part of its key in results.jsonl. */
export function cellVariant(options: EvalOptions, checkpoint: string): string {
  const tokenizer = options.tokenizer ?? `${checkpoint}/tokenizer.json`;
  if (options.task === "ppl") {
    return `data=${options.data};stride=${options.stride ?? DEFAULT_PPL_STRIDE};text=${textTokens(options)}`;
  }
  const extra = options.task === "passkey"
    ? `digits=${options.passkeyDigits ?? PASSKEY_DIGITS}`
    : `haystack=${options.haystackDir ?? "default"}`;
  return `seed=${options.seed ?? 0};${extra};tok=${tokenizer};cache=${options.cacheDtype ?? "f32"}`;
}

function textTokens(options: EvalOptions): number {
  return options.textTokens ?? Math.max(...options.lengths);
}

/** Validates the options that do not need files. */
function checkOptions(checkpoints: string[], options: EvalOptions): void {
  if (checkpoints.length === 0) {
    throw new ConfigError("No checkpoint given", { hint: "pass one or more checkpoint folders" });
  }
  if (options.lengths.length === 0) {
    throw new ConfigError("No lengths given", { field: "lengths", hint: "e.g. --lengths 4k..128k" });
  }
  const samples = options.samples ?? DEFAULT_SAMPLES;
  if (!Number.isInteger(samples) || samples < 1) {
    throw new ConfigError(`--samples must be a positive integer, got ${samples}`, {
      field: "samples",
      actual: samples,
    });
  }
  if (options.task === "ppl" && !options.data) {
    throw new ConfigError("Perplexity needs a token file", {
      field: "data",
      hint: "pass --data TOKENS (made by harpe tokenize)",
    });
  }
  if (new Set(checkpoints).size !== checkpoints.length) {
    throw new ConfigError("A checkpoint is given twice", {
      actual: checkpoints,
      hint: "list each checkpoint once",
    });
  }
}

/** The evaluation text of perplexity: documents back to back with EOS after each, as training sees them;
 * only its first `count` tokens (all of it when shorter), read by range from the token file. */
async function readStream(path: string, count: number): Promise<{ tokens: Uint32Array; vocabSize: number }> {
  const file = await openTokenFile(path);
  try {
    const { docOffsets, info } = file;
    const out = new Uint32Array(Math.min(count, info.tokens + info.documents));
    let at = 0;
    for (let d = 0; d < info.documents && at < out.length; d++) {
      const end = docOffsets[d + 1];
      for (let from = docOffsets[d]; from < end && at < out.length;) {
        const to = Math.min(end, from + READ_BUFFER_TOKENS, from + out.length - at);
        out.set(file.read(from, to, end), at);
        at += to - from;
        from = to;
      }
      if (at < out.length) out[at++] = info.eosId;
    }
    return { tokens: out, vocabSize: info.vocabSize };
  } finally {
    file.close();
  }
}

/**
 * Evaluates every checkpoint on the grid of `options`, skipping cells already in
 * `options.outDir`/results.jsonl, and returns all results of the grid.
 *
 * @example
 * ```ts
 * const run = await runEval(["./orig", "./harpe"], { task: "passkey", lengths: [4096, 8192],
 *   outDir: "report", engine: new CpuEngine() });
 * ```
 */
export async function runEval(checkpoints: string[], options: EvalOptions): Promise<EvalRun> {
  checkOptions(checkpoints, options);
  const samples = options.samples ?? DEFAULT_SAMPLES;
  const depths = options.task === "ppl" ? [null] : options.depths ?? DEFAULT_DEPTHS;
  const store = await ResultsStore.open(options.outDir);
  const cells = gridCells({
    checkpoints,
    tasks: runTasks(options),
    lengths: options.lengths,
    depths,
    samples,
  });
  const pending = cells.filter((cell) => !store.has(cell, cellVariant(options, cell.checkpoint)));
  const computed = pending.length;
  const progress = new Progress(`eval ${options.task}`, cells.length, {
    unit: "cells",
    enabled: options.progress,
  });
  progress.set(cells.length - pending.length);
  const sentences = options.task === "niah"
    ? await readCorpusSentences(options.haystackDir ?? DEFAULT_CORPUS_DIR)
    : [];
  const stream = options.task === "ppl" && pending.length > 0
    ? await readStream(options.data!, samples * textTokens(options))
    : undefined;
  for (const checkpoint of checkpoints) {
    const mine = pending.filter((cell) => cell.checkpoint === checkpoint);
    if (mine.length === 0) continue;
    const model = await loadModel(options.engine, checkpoint);
    let session: DecodeSession | undefined;
    try {
      const codec = stream ? undefined : await openCodec(checkpoint, options.tokenizer);
      if (codec) checkCodecFits(codec, model.config.vocabSize, "The pass key is 0123456789. What is it?");
      if (stream && stream.vocabSize > model.config.vocabSize) {
        throw new ShapeError(
          `Token file "${options.data}" has a vocabulary of ${stream.vocabSize}, "${checkpoint}" only ${model.config.vocabSize}`,
          { file: options.data, hint: "tokenize the data with the checkpoint's tokenizer" },
        );
      }
      const variant = cellVariant(options, checkpoint);
      if (codec) {
        const maxTokens = Math.max(...mine.map((cell) => cell.length));
        session = DecodeSession.create(model, { maxTokens, cacheDtype: options.cacheDtype });
      }
      for (const cell of mine) {
        const label = `${checkpoint} ${cell.task} ${formatLength(cell.length)}`;
        progress.set(progress.total - pending.length, label);
        const started = performance.now();
        const result = codec
          ? await needleCell(model, { codec, session: session! }, cell, options, sentences)
          : await pplCell(
            model,
            cell,
            stream!.tokens,
            options,
            (done, total) =>
              progress.set(progress.total - pending.length, `${label} window ${done}/${total}`),
          );
        await store.append({ ...cell, variant, ...result, seconds: (performance.now() - started) / 1000 });
        pending.splice(pending.indexOf(cell), 1);
      }
    } finally {
      session?.dispose();
      model.dispose();
    }
  }
  progress.set(cells.length);
  progress.finish();
  const results = cells.map((cell) => store.get(cell, cellVariant(options, cell.checkpoint))!);
  return { results, computed, skipped: cells.length - computed };
}

async function openCodec(checkpoint: string, tokenizer: string | undefined): Promise<TextCodec> {
  const spec = tokenizer ?? `${checkpoint}/tokenizer.json`;
  try {
    return await loadCodec(spec);
  } catch (error) {
    if (error instanceof PathError && tokenizer === undefined) {
      throw new PathError(`Checkpoint "${checkpoint}" has no tokenizer.json`, {
        file: spec,
        hint: "pass --tokenizer PATH (or --tokenizer bytes for byte-level test models)",
      });
    }
    throw error;
  }
}

type CellScore = Pick<CellResult, "score" | "tokens" | "promptTokens" | "answers" | "output">;

async function pplCell(
  model: Model,
  cell: Cell,
  stream: Uint32Array,
  options: EvalOptions,
  onWindow: (done: number, total: number) => void,
): Promise<CellScore> {
  const size = textTokens(options);
  const start = cell.sample * size;
  if (start + size > stream.length) {
    throw new ConfigError(
      `The data has ${stream.length} tokens; sample ${cell.sample} needs tokens ${start}..${start + size}`,
      { file: options.data, hint: "use fewer --samples, a smaller --text-tokens, or more data" },
    );
  }
  const text = stream.subarray(start, start + size);
  const { nll, tokens } = await slidingWindowNll(text, cell.length, {
    stride: options.stride,
    onWindow,
    score: async (window, from) => {
      const targets = Int32Array.from(
        window,
        (_, i) => i + 1 >= from && i + 1 < window.length ? window[i + 1] : IGNORE_INDEX,
      );
      const losses = await tokenLosses(model, Int32Array.from(window), targets);
      let sum = 0;
      for (const loss of losses) sum += loss;
      return sum;
    },
  });
  return { score: nll / tokens, tokens };
}

async function needleCell(
  model: Model,
  { codec, session }: { codec: TextCodec; session: DecodeSession },
  cell: Cell,
  options: EvalOptions,
  sentences: string[],
): Promise<CellScore> {
  const depth = cell.depth ?? 0;
  const rng = new Rng(cellSeed(options.seed ?? 0, cell.task, cell.length, depth, cell.sample));
  let parts: PromptParts;
  let answers: string[];
  if (cell.task === "passkey") {
    const made = passkeyCase(rng, depth, { digits: options.passkeyDigits });
    parts = made.parts;
    answers = [made.answer];
  } else {
    ({ parts, answers } = niahCase(cell.task as NiahTask, rng, depth, sentences));
  }
  const maxNewTokens = codec.encode(" " + answers.join(", ")).length + ANSWER_MARGIN_TOKENS;
  const prompt = buildPrompt(codec, parts, cell.length - maxNewTokens);
  const { tokens } = await generateGreedy(model, prompt.tokens, {
    maxNewTokens,
    eosId: codec.eosId,
    session,
  });
  const output = codec.decode(tokens);
  const score = cell.task === "passkey" ? scorePasskey(output, answers[0]) : scoreAll(output, answers);
  return { score, promptTokens: prompt.tokens.length, answers, output };
}
