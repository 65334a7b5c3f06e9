// Greedy decoding with a KV cache: the prompt is prefilled once, then one cached step per new token,
// taking the most likely token each time (ties: the lowest id), until EOS or the token limit.

import { ShapeError } from "../errors.ts";
import type { TensorDType } from "../engine/engine.ts";
import type { Model } from "../model/model.ts";
import { DecodeSession } from "../model/decode.ts";

/** Tokens `harpe generate` adds when --max-new-tokens is not given. */
export const DEFAULT_MAX_NEW_TOKENS = 32;

/** Options of {@link generateGreedy}. */
export interface GenerateOptions {
  maxNewTokens?: number;
  /** Stop after producing this id (it is not included in the result). */
  eosId?: number;
  /** KV cache storage of a new session (default f32; "bf16" halves its memory). */
  cacheDtype?: TensorDType;
  /** A session to reuse (reset first; it must hold prompt + maxNewTokens tokens): saves allocating a
   * cache per call when many prompts are answered in a row. Default: a new session, freed after. */
  session?: DecodeSession;
  /** Called with each new token as it is produced. */
  onToken?: (token: number) => void;
}

/** What greedy decoding produced. */
export interface Generation {
  /** The new tokens (without the prompt, without EOS). */
  tokens: number[];
  /** True when it stopped at EOS rather than at the token limit. */
  stoppedAtEos: boolean;
}

/**
 * Index of the largest value (the first one on ties).
 *
 * @example
 * ```ts
 * argmax(Float32Array.of(0.1, 3, 3)); // 1
 * ```
 */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/**
 * Greedy continuation of `prompt` with a KV cache.
 *
 * @example
 * ```ts
 * const { tokens } = await generateGreedy(model, codec.encode("The pass key is"), { maxNewTokens: 8 });
 * codec.decode(tokens);
 * ```
 */
export async function generateGreedy(
  model: Model,
  prompt: readonly number[],
  options: GenerateOptions = {},
): Promise<Generation> {
  const maxNewTokens = options.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
  if (prompt.length === 0) {
    throw new ShapeError("Cannot generate from an empty prompt", { hint: "give a prompt" });
  }
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) {
    throw new ShapeError(`maxNewTokens must be a non-negative integer, got ${maxNewTokens}`, {
      field: "max-new-tokens",
      actual: maxNewTokens,
    });
  }
  const tokens: number[] = [];
  if (maxNewTokens === 0) return { tokens, stoppedAtEos: false };
  const session = options.session ?? DecodeSession.create(model, {
    maxTokens: prompt.length + maxNewTokens,
    cacheDtype: options.cacheDtype,
  });
  session.reset();
  try {
    let logits = await session.prefill(Int32Array.from(prompt));
    for (;;) {
      const next = argmax(logits);
      if (next === options.eosId) return { tokens, stoppedAtEos: true };
      tokens.push(next);
      options.onToken?.(next);
      if (tokens.length === maxNewTokens) return { tokens, stoppedAtEos: false };
      logits = await session.step(next);
    }
  } finally {
    if (session !== options.session) session.dispose();
  }
}
