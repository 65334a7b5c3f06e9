// Exact-match scorers (no model as judge): the passkey's first number must equal the key; a NIAH
// answer scores the fraction of expected values that appear verbatim in the generated text.

/**
 * 1 when the first run of digits in `output` equals `key`, else 0.
 *
 * @example
 * ```ts
 * scorePasskey(" 68491. Remember", "68491"); // 1
 * scorePasskey(" 684910", "68491");          // 0
 * ```
 */
export function scorePasskey(output: string, key: string): number {
  const match = /\d+/.exec(output);
  return match !== null && match[0] === key ? 1 : 0;
}

/**
 * The fraction (0..1) of `answers` found verbatim in `output` (RULER's string_match_all; case is
 * ignored, as RULER does). A value counts only as a whole token of text: "123" is not found in "41234".
 *
 * @example
 * ```ts
 * scoreAll("are 1234567 and 7654321.", ["1234567", "7654321"]); // 1
 * scoreAll("is 1234567.", ["1234567", "7654321"]);              // 0.5
 * ```
 */
export function scoreAll(output: string, answers: readonly string[]): number {
  if (answers.length === 0) return 0;
  const text = output.toLowerCase();
  const found = answers.filter((answer) => containsWhole(text, answer.toLowerCase())).length;
  return found / answers.length;
}

function isWordChar(char: string | undefined): boolean {
  return char !== undefined && /[0-9a-z]/.test(char);
}

function containsWhole(text: string, needle: string): boolean {
  for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + 1)) {
    if (!isWordChar(text[at - 1]) && !isWordChar(text[at + needle.length])) return true;
  }
  return false;
}
