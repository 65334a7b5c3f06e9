// Text <-> token ids for evaluation prompts and generated answers: a Hugging Face tokenizer.json, or
// raw UTF-8 bytes as ids (for tiny test models that have no tokenizer).

import { Tokenizer } from "@huggingface/tokenizers";
import { ConfigError } from "../errors.ts";
import { loadTokenizer } from "../data/tokenizer.ts";

/** Encodes prompts and decodes generated ids. */
export interface TextCodec {
  /** Token ids of `text`, without special tokens. */
  encode(text: string): number[];
  /** Text of `ids`, special tokens skipped. */
  decode(ids: readonly number[]): string;
  /** Generation stops at this id when set. */
  eosId?: number;
  /** Where the codec came from: a tokenizer path or "bytes". */
  name: string;
}

/** Token ids a byte codec uses: one per byte value. */
export const BYTE_VOCAB = 256;

/**
 * The byte codec: every UTF-8 byte is one token id (0..255). Needs a vocabulary of at least 256.
 *
 * @example
 * ```ts
 * byteCodec().encode("Hi"); // [72, 105]
 * ```
 */
export function byteCodec(): TextCodec {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  return {
    encode: (text) => Array.from(encoder.encode(text)),
    decode: (ids) => decoder.decode(new Uint8Array(ids.filter((id) => id >= 0 && id < BYTE_VOCAB))),
    name: "bytes",
  };
}

/**
 * Loads a codec: `"bytes"` for {@link byteCodec}, else the path of a tokenizer.json (its
 * tokenizer_config.json beside it is read too; EOS from there).
 *
 * @example
 * ```ts
 * const codec = await loadCodec("fixtures/tiny/tokenizer.json");
 * codec.decode(codec.encode("The pass key is 123")); // "The pass key is 123"
 * ```
 */
export async function loadCodec(spec: string): Promise<TextCodec> {
  if (spec === "bytes") return byteCodec();
  const loaded = await loadTokenizer(spec);
  const json = JSON.parse(await Deno.readTextFile(spec));
  const slash = spec.lastIndexOf("/");
  const configPath = `${slash >= 0 ? spec.slice(0, slash + 1) : ""}tokenizer_config.json`;
  const config = await Deno.readTextFile(configPath).then(JSON.parse, () => ({}));
  const tokenizer = new Tokenizer(json, config);
  return {
    encode: loaded.encode,
    decode: (ids) => tokenizer.decode([...ids], { skip_special_tokens: true }),
    eosId: loaded.eosId,
    name: spec,
  };
}

/** Checks that every id a codec can produce fits the model's vocabulary. */
export function checkCodecFits(codec: TextCodec, vocabSize: number, probe: string): void {
  const ids = codec.encode(probe);
  const largest = Math.max(...ids, codec.eosId ?? 0);
  if (largest >= vocabSize) {
    throw new ConfigError(
      `Tokenizer "${codec.name}" produces id ${largest}, the model's vocabulary has ${vocabSize}`,
      {
        field: "tokenizer",
        expected: `< ${vocabSize}`,
        actual: largest,
        hint: "pass the checkpoint's own tokenizer with --tokenizer",
      },
    );
  }
}
