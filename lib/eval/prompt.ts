// Fits a needle prompt to a token budget: prefix, then as many haystack units as fit with the needles
// inserted at their depths, then the suffix (the question). Token counts come from the real codec.

import { ShapeError } from "../errors.ts";
import type { TextCodec } from "./codec.ts";
import type { Haystack } from "./haystack.ts";

/** A needle and where it goes: depth 0 = right after the prefix, 1 = right before the suffix. */
export interface PlacedNeedle {
  text: string;
  depth: number;
}

/** The pieces of a prompt before it is cut to length. */
export interface PromptParts {
  prefix: string;
  suffix: string;
  haystack: Haystack;
  needles: PlacedNeedle[];
}

/** A prompt that fits its budget. */
export interface BuiltPrompt {
  text: string;
  /** The prompt's token ids (what the model is given). */
  tokens: number[];
  /** How many haystack units it holds. */
  haystackUnits: number;
}

/** Attempts at trimming the haystack after the first estimate (token counts are nearly additive). */
const MAX_FIT_ROUNDS = 16;

/**
 * Joins prefix, `units` haystack units with the needles inserted, and suffix into one text. Needle i
 * goes before unit round(depth_i * units); needles at the same place keep their order.
 *
 * @example
 * ```ts
 * assemblePrompt({prefix: "P\n", suffix: "\nQ", haystack: noiseHaystack(),
 *   needles: [{text: "N.", depth: 1}]}, 1); // "P\n" + NOISE_UNIT + " N.\nQ"
 * ```
 */
export function assemblePrompt(parts: PromptParts, units: number): string {
  const slots = parts.needles.map((needle, order) => ({
    at: Math.round(Math.min(1, Math.max(0, needle.depth)) * units),
    order,
    text: needle.text,
  })).sort((a, b) => a.at - b.at || a.order - b.order);
  const pieces: string[] = [];
  let next = 0;
  for (let i = 0; i <= units; i++) {
    while (next < slots.length && slots[next].at === i) pieces.push(slots[next++].text);
    if (i < units) pieces.push(parts.haystack.unit(i));
  }
  return parts.prefix + pieces.join(parts.haystack.separator) + parts.suffix;
}

/**
 * Builds the longest prompt of `parts` whose token count is at most `budget`.
 * Throws ShapeError when even the prompt without haystack does not fit.
 *
 * @example
 * ```ts
 * const prompt = buildPrompt(byteCodec(), parts, 4000);
 * prompt.tokens.length <= 4000; // true
 * ```
 */
export function buildPrompt(codec: TextCodec, parts: PromptParts, budget: number): BuiltPrompt {
  const bare = codec.encode(assemblePrompt(parts, 0));
  if (bare.length > budget) {
    throw new ShapeError(
      `A context of ${budget} tokens is too short for this prompt: it needs ${bare.length} without filler`,
      {
        expected: `>= ${bare.length}`,
        actual: budget,
        hint: "evaluate at longer lengths",
      },
    );
  }
  const separatorTokens = codec.encode(parts.haystack.separator).length;
  let units = 0;
  let used = bare.length;
  for (;;) {
    const cost = codec.encode(parts.haystack.unit(units)).length + separatorTokens;
    if (used + cost > budget) break;
    used += cost;
    units++;
  }
  const average = units > 0 ? (used - bare.length) / units : 1;
  for (let round = 0; round < MAX_FIT_ROUNDS; round++) {
    const text = assemblePrompt(parts, units);
    const tokens = codec.encode(text);
    if (tokens.length <= budget) return { text, tokens, haystackUnits: units };
    units = Math.max(0, units - Math.max(1, Math.ceil((tokens.length - budget) / average)));
  }
  const text = assemblePrompt(parts, 0);
  return { text, tokens: bare, haystackUnits: 0 };
}
