// The classic passkey retrieval prompt (Mohtashami & Jaggi 2023): a number hidden at a depth inside
// repeated noise, asked for at the end; the answer is read by greedy decoding.

import type { Rng } from "../data/rng.ts";
import { randomNumber } from "./needles.ts";
import { noiseHaystack } from "./haystack.ts";
import type { PromptParts } from "./prompt.ts";

/** Digits of a passkey (the classic test uses 5). */
export const PASSKEY_DIGITS = 5;

/** The words around the passkey prompt. */
export const PASSKEY_PREFIX =
  "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. " +
  "I will quiz you about the important information there.\n";
export const PASSKEY_SUFFIX = "\nWhat is the pass key? The pass key is";

/** The sentence that carries the key. */
export function passkeyNeedle(key: string): string {
  return `The pass key is ${key}. Remember it. ${key} is the pass key.`;
}

/** A passkey prompt before fitting, and its answer. */
export interface PasskeyCase {
  parts: PromptParts;
  answer: string;
}

/**
 * A passkey case with a random key of `digits` digits at `depth` (0..1) of the noise.
 *
 * @example
 * ```ts
 * const { parts, answer } = passkeyCase(new Rng(7), 0.5);
 * const prompt = buildPrompt(codec, parts, 4096);
 * ```
 */
export function passkeyCase(rng: Rng, depth: number, options: { digits?: number } = {}): PasskeyCase {
  const answer = randomNumber(rng, options.digits ?? PASSKEY_DIGITS);
  return {
    parts: {
      prefix: PASSKEY_PREFIX,
      suffix: PASSKEY_SUFFIX,
      haystack: noiseHaystack(),
      needles: [{ text: passkeyNeedle(answer), depth }],
    },
    answer,
  };
}
