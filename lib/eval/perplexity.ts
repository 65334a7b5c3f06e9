// Sliding-window perplexity. For a context length L and a text of N tokens, windows of at most L
// tokens advance by S tokens (S = min(stride, floor(L/2)), stride 256 as in the paper): the first
// window [0, min(L, N)) scores tokens 1..end-1; each later window ends S tokens further (or at N),
// starts L tokens before its end, and scores only its new tokens. So every token 1..N-1 is scored
// exactly once, by a forward over at most L tokens, with at least L - S tokens of context once past
// the first window. ppl(L) = exp(sum of NLL / tokens scored), over every sample text.

import { ShapeError } from "../errors.ts";

/** The paper's window stride (tokens a window advances). */
export const DEFAULT_PPL_STRIDE = 256;

/** One forward of the sliding-window method: tokens [start, end) of the text, scoring [scoreFrom, end). */
export interface PplWindow {
  start: number;
  end: number;
  /** First scored position (>= start + 1): token i is predicted from tokens start..i-1. */
  scoreFrom: number;
}

/** The step between windows for a context length: min(stride, floor(L/2)). */
export function windowStep(length: number, stride: number): number {
  return Math.max(1, Math.min(stride, Math.floor(length / 2)));
}

/**
 * The windows that score a text of `textLength` tokens with contexts of at most `length` tokens.
 *
 * @example
 * ```ts
 * slidingWindows(10, 6, 2);
 * // [{start: 0, end: 6, scoreFrom: 1}, {start: 2, end: 8, scoreFrom: 6}, {start: 4, end: 10, scoreFrom: 8}]
 * ```
 */
export function slidingWindows(textLength: number, length: number, stride: number): PplWindow[] {
  if (!Number.isInteger(stride) || stride < 1) {
    throw new ShapeError(`Perplexity stride must be a positive integer, got ${stride}`, {
      field: "stride",
      actual: stride,
    });
  }
  if (textLength < 2) return [];
  const step = windowStep(length, stride);
  let end = Math.min(length, textLength);
  const windows: PplWindow[] = [{ start: 0, end, scoreFrom: 1 }];
  while (end < textLength) {
    const next = Math.min(end + step, textLength);
    windows.push({ start: Math.max(0, next - length), end: next, scoreFrom: end });
    end = next;
  }
  return windows;
}

/** Sum of NLL (nats) over tokens scored, and how many. */
export interface NllSum {
  nll: number;
  tokens: number;
}

/**
 * Scores a text with the sliding-window method, given `score(window tokens, first scored index within
 * the window)` returning the window's NLL sum. `onWindow` reports progress (windows done, total).
 *
 * @example
 * ```ts
 * const { nll, tokens } = await slidingWindowNll(text, 4096, { stride: 256, score: (w, from) => model.nll(w, from) });
 * Math.exp(nll / tokens); // perplexity
 * ```
 */
export async function slidingWindowNll(
  text: ArrayLike<number>,
  length: number,
  options: {
    stride?: number;
    score: (window: number[], from: number) => Promise<number>;
    onWindow?: (done: number, total: number) => void;
  },
): Promise<NllSum> {
  const windows = slidingWindows(text.length, length, options.stride ?? DEFAULT_PPL_STRIDE);
  let nll = 0;
  let tokens = 0;
  for (let i = 0; i < windows.length; i++) {
    const { start, end, scoreFrom } = windows[i];
    const window = Array.from({ length: end - start }, (_, j) => text[start + j]);
    nll += await options.score(window, scoreFrom - start);
    tokens += end - scoreFrom;
    options.onWindow?.(i + 1, windows.length);
  }
  return { nll, tokens };
}
