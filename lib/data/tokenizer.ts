// Loads a Hugging Face tokenizer.json (with tokenizer_config.json beside it, if present) through
// @huggingface/tokenizers and exposes what tokenizing needs: encode, vocabulary size, EOS id, and the
// file's SHA-256 so token files can name the exact tokenizer they were made with.

import { Tokenizer } from "@huggingface/tokenizers";
import { ConfigError, FileFormatError, PathError } from "../errors.ts";
import { sha256Hex } from "../util/hash.ts";

/** EOS token names tried, in order, when tokenizer_config.json does not name one. */
const EOS_CANDIDATES = ["</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>", "<|im_end|>"];

/** A loaded tokenizer. */
export interface TextTokenizer {
  /** Token ids of `text`, without special tokens (no BOS/EOS added). */
  encode(text: string): number[];
  /** Largest token id + 1, including added tokens. */
  vocabSize: number;
  eosId: number;
  eosToken: string;
  /** Path of tokenizer.json as given. */
  path: string;
  /** Hex SHA-256 of tokenizer.json's bytes. */
  sha256: string;
}

async function readJson(path: string, what: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new PathError(`${what} "${path}" does not exist`, { file: path });
    }
    throw error;
  }
  try {
    const value = JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new SyntaxError("not an object");
    }
    return value;
  } catch (error) {
    throw new FileFormatError(`${what} "${path}" is not a JSON object: ${(error as Error).message}`, {
      file: path,
    });
  }
}

function tokenName(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (
    typeof value === "object" && value !== null &&
    typeof (value as { content?: unknown }).content === "string"
  ) {
    return (value as { content: string }).content;
  }
  return undefined;
}

/**
 * Loads `tokenizer.json` (and `tokenizer_config.json` from the same folder when it exists).
 * The EOS token is `eos_token` of tokenizer_config.json, else the first of </s>, <|endoftext|>, ...
 * found in the vocabulary.
 *
 * @example
 * ```ts
 * const tok = await loadTokenizer("fixtures/tiny/tokenizer.json");
 * const ids = tok.encode("Hello world");
 * ```
 */
export async function loadTokenizer(path: string): Promise<TextTokenizer> {
  const json = await readJson(path, "Tokenizer file");
  const bytes = await Deno.readFile(path);
  const slash = path.lastIndexOf("/");
  const configPath = `${slash >= 0 ? path.slice(0, slash + 1) : ""}tokenizer_config.json`;
  let config: Record<string, unknown> = {};
  try {
    await Deno.stat(configPath);
    config = await readJson(configPath, "Tokenizer config");
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(json, config);
  } catch (error) {
    throw new FileFormatError(`Cannot load tokenizer "${path}": ${(error as Error).message}`, { file: path });
  }
  const vocab = tokenizer.get_vocab(true);
  let vocabSize = 0;
  for (const id of vocab.values()) vocabSize = Math.max(vocabSize, id + 1);
  const named = tokenName(config.eos_token);
  const eosToken = named ?? EOS_CANDIDATES.find((t) => tokenizer.token_to_id(t) !== undefined);
  const eosId = eosToken === undefined ? undefined : tokenizer.token_to_id(eosToken);
  if (eosToken === undefined || eosId === undefined) {
    throw new ConfigError(`Tokenizer "${path}" has no end-of-sequence token`, {
      file: path,
      field: "eos_token",
      hint: `set "eos_token" in ${configPath}`,
    });
  }
  return {
    encode: (text) => tokenizer.encode(text, { add_special_tokens: false }).ids,
    vocabSize,
    eosId,
    eosToken,
    path,
    sha256: await sha256Hex(bytes),
  };
}
