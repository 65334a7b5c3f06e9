// Haystacks that needles hide in: repeated noise sentences, real text (sentences of a corpus, e.g.
// fixtures/corpus), or other needles. Each is an endless sequence of text units, cut to length later.

import { PathError } from "../errors.ts";

/** A haystack: unit(i) is the i-th piece of filler text; pieces are joined with `separator`. */
export interface Haystack {
  unit(index: number): string;
  separator: string;
}

/** The noise of the classic passkey test and RULER's niah_single_1. */
export const NOISE_UNIT =
  "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

/** Where the bundled public-domain corpus lies (fixtures/corpus, relative to this file). */
export const DEFAULT_CORPUS_DIR = new URL("../../fixtures/corpus/", import.meta.url).pathname;

/** Sentences shorter than this are merged with the next one (headings, "Mr.", numbers). */
const MIN_SENTENCE_CHARS = 24;

/**
 * The repeated-noise haystack.
 *
 * @example
 * ```ts
 * noiseHaystack().unit(7); // "The grass is green. ..."
 * ```
 */
export function noiseHaystack(): Haystack {
  return { unit: () => NOISE_UNIT, separator: " " };
}

/** Splits text into sentences (whitespace collapsed), merging very short ones into the next. */
export function splitSentences(text: string): string[] {
  const pieces = text.replace(/\s+/g, " ").trim().split(/(?<=[.!?])\s+/);
  const out: string[] = [];
  let pending = "";
  for (const piece of pieces) {
    pending = pending ? `${pending} ${piece}` : piece;
    if (pending.length >= MIN_SENTENCE_CHARS) {
      out.push(pending);
      pending = "";
    }
  }
  if (pending) out.push(pending);
  return out;
}

/**
 * A real-text haystack: the corpus sentences in order, starting at sentence `start`, wrapping around
 * at the end of the corpus.
 *
 * @example
 * ```ts
 * const hay = essayHaystack(splitSentences("One sentence here. And another one here."), 1);
 * hay.unit(0); // "And another one here."
 * ```
 */
export function essayHaystack(sentences: readonly string[], start = 0): Haystack {
  if (sentences.length === 0) throw new RangeError("essayHaystack needs at least one sentence");
  return { unit: (i) => sentences[(start + i) % sentences.length], separator: " " };
}

/** A haystack of distractor needles: unit(i) is the i-th needle made by `make`. */
export function needleHaystack(make: (index: number) => string): Haystack {
  const cache: string[] = [];
  return {
    unit: (i) => {
      while (cache.length <= i) cache.push(make(cache.length));
      return cache[i];
    },
    separator: "\n",
  };
}

/**
 * Reads every .txt file of a folder (sorted by name) and returns their sentences, in order.
 *
 * @example
 * ```ts
 * const sentences = await readCorpusSentences(DEFAULT_CORPUS_DIR);
 * ```
 */
export async function readCorpusSentences(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && entry.name.endsWith(".txt")) names.push(entry.name);
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new PathError(`Haystack folder "${dir}" does not exist`, {
        file: dir,
        hint: "pass a folder of .txt files",
      });
    }
    throw error;
  }
  if (names.length === 0) {
    throw new PathError(`Haystack folder "${dir}" has no .txt files`, {
      file: dir,
      hint: "pass a folder of .txt files",
    });
  }
  const sentences: string[] = [];
  for (const name of names.sort()) {
    sentences.push(...splitSentences(await Deno.readTextFile(`${dir}/${name}`)));
  }
  return sentences;
}
