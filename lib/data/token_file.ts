// Token files: safetensors holding `tokens` (u16 when the vocabulary fits, else u32) [N] with every
// document's tokens back to back, `doc_offsets` i64 [docs+1] (document d is tokens[off[d]:off[d+1]]),
// and metadata naming the tokenizer. EOS tokens are NOT stored: the loader appends one after every
// document, so a token file stays usable with any EOS convention. Opening reads only the header and
// `doc_offsets`; token ids are read by byte range on demand (openTokenFile), so corpora larger than
// memory work.

import { FileFormatError } from "../errors.ts";
import { SafetensorsFile, writeSafetensors } from "../safetensors/mod.ts";
import { READ_BUFFER_TOKENS, type TokenData, type TokenSource } from "./token_source.ts";

/** `format` metadata value of every token file. */
export const TOKEN_FILE_FORMAT = "harpe-tokens";
const TOKEN_FILE_VERSION = "1";
/** Largest vocabulary whose ids fit a u16 tensor. */
export const U16_VOCAB_LIMIT = 65536;

/** What a token file says about itself. */
export interface TokenFileInfo {
  /** tokenizer.json path as given when tokenizing. */
  tokenizer: string;
  /** Hex SHA-256 of that tokenizer.json. */
  tokenizerSha256: string;
  vocabSize: number;
  /** The EOS id the loader appends after every document. */
  eosId: number;
  documents: number;
  tokens: number;
}

/** A token file's contents. */
export interface TokenFile extends TokenData {
  info: TokenFileInfo;
}

/**
 * Writes a token file atomically.
 *
 * @example
 * ```ts
 * await writeTokenFile("data/train.tokens", { tokens: new Uint32Array([5, 6, 7]), docOffsets: [0, 2, 3] },
 *   { tokenizer: "tokenizer.json", tokenizerSha256: "ab..", vocabSize: 512, eosId: 1 });
 * ```
 */
export async function writeTokenFile(
  path: string,
  data: TokenData,
  info: Omit<TokenFileInfo, "documents" | "tokens">,
): Promise<void> {
  const small = info.vocabSize <= U16_VOCAB_LIMIT;
  const Ids = small ? Uint16Array : Uint32Array;
  const tokens = data.tokens instanceof Ids ? data.tokens : Ids.from(data.tokens);
  const offsets = BigInt64Array.from(Array.from(data.docOffsets, (n) => BigInt(n)));
  const documents = offsets.length - 1;
  await writeSafetensors(path, [
    {
      name: "tokens",
      dtype: small ? "U16" : "U32",
      shape: [tokens.length],
      data: new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength),
    },
    { name: "doc_offsets", dtype: "I64", shape: [offsets.length], data: new Uint8Array(offsets.buffer) },
  ], {
    metadata: {
      format: TOKEN_FILE_FORMAT,
      format_version: TOKEN_FILE_VERSION,
      tokenizer: info.tokenizer,
      tokenizer_sha256: info.tokenizerSha256,
      vocab_size: String(info.vocabSize),
      eos_id: String(info.eosId),
      eos_policy: "not stored; appended after every document when packing",
      documents: String(documents),
      tokens: String(tokens.length),
    },
  });
}

function bad(
  path: string,
  message: string,
  detail: { expected?: unknown; actual?: unknown } = {},
): FileFormatError {
  return new FileFormatError(`Token file "${path}": ${message}`, {
    file: path,
    ...detail,
    hint: "make it with harpe tokenize",
  });
}

function metadataInt(path: string, metadata: Record<string, string>, key: string): number {
  const value = Number(metadata[key]);
  if (metadata[key] === undefined || !Number.isInteger(value) || value < 0) {
    throw bad(path, `metadata "${key}" must be an integer >= 0`, { actual: metadata[key] });
  }
  return value;
}

/** Throws when an id of `ids` (tokens from `first` on) is outside the vocabulary. */
function checkIds(
  path: string,
  ids: Uint16Array | Uint32Array,
  options: { vocabSize: number; first: number },
): void {
  let max = 0;
  for (let i = 0; i < ids.length; i++) if (ids[i] > max) max = ids[i];
  if (max < options.vocabSize) return;
  const at = options.first + ids.indexOf(max);
  throw bad(path, `token id ${max} (token ${at}) is outside the vocabulary of ${options.vocabSize}`, {
    expected: `< ${options.vocabSize}`,
    actual: max,
  });
}

/**
 * An open token file: header, metadata and `doc_offsets` [docs+1] in memory; token ids read on demand
 * through one reusable buffer of READ_BUFFER_TOKENS ids, each checked against the vocabulary as it is
 * read. Close it when done.
 *
 * @example
 * ```ts
 * const file = await openTokenFile("data/train.tokens");
 * const firstDoc = file.read(file.docOffsets[0], file.docOffsets[1], file.docOffsets[1]);
 * file.close();
 * ```
 */
export class TokenFileReader implements TokenSource {
  #bytes: Uint8Array;
  #ids: Uint16Array | Uint32Array;
  #bufferStart = 0;
  #bufferEnd = 0;
  /** 2 for a U16 file, 4 for U32. */
  readonly bytesPerToken: number;

  constructor(
    readonly path: string,
    readonly info: TokenFileInfo,
    readonly docOffsets: Float64Array,
    private readonly file: SafetensorsFile,
  ) {
    const Ids = file.info("tokens").dtype === "U16" ? Uint16Array : Uint32Array;
    this.bytesPerToken = Ids.BYTES_PER_ELEMENT;
    const buffer = new ArrayBuffer(READ_BUFFER_TOKENS * Ids.BYTES_PER_ELEMENT);
    this.#bytes = new Uint8Array(buffer);
    this.#ids = new Ids(buffer);
  }

  /** Tokens [start, end) (at most READ_BUFFER_TOKENS), reading ahead up to `until`; see TokenSource. */
  read(start: number, end: number, until: number): Uint16Array | Uint32Array {
    if (start < this.#bufferStart || end > this.#bufferEnd) {
      const count = Math.min(Math.max(until, end), this.info.tokens) - start;
      if (end - start > READ_BUFFER_TOKENS || count < end - start || start < 0) {
        throw new RangeError(
          `Cannot read tokens [${start}, ${end}) of "${this.path}": at most ${READ_BUFFER_TOKENS} of its ${this.info.tokens} at a time`,
        );
      }
      const filled = Math.min(count, READ_BUFFER_TOKENS);
      const size = this.bytesPerToken;
      this.file.readInto("tokens", this.#bytes.subarray(0, filled * size), { start: start * size });
      checkIds(this.path, this.#ids.subarray(0, filled), { vocabSize: this.info.vocabSize, first: start });
      this.#bufferStart = start;
      this.#bufferEnd = start + filled;
    }
    return this.#ids.subarray(start - this.#bufferStart, end - this.#bufferStart);
  }

  /** Closes the file; later reads fail. */
  close(): void {
    this.file.close();
  }
}

/**
 * Opens and validates a token file, reading only its header and `doc_offsets`.
 *
 * @example
 * ```ts
 * const data = await openTokenFile("data/train.tokens");
 * const loader = new PackedLoader(data, { seqLen: 256, batch: 4, seed: 1, eosId: data.info.eosId });
 * ```
 */
export async function openTokenFile(path: string): Promise<TokenFileReader> {
  const file = await SafetensorsFile.open(path);
  try {
    const meta = file.metadata;
    if (meta.format !== TOKEN_FILE_FORMAT) {
      throw bad(path, `it is not a token file (metadata format is ${JSON.stringify(meta.format)})`, {
        expected: TOKEN_FILE_FORMAT,
        actual: meta.format,
      });
    }
    const vocabSize = metadataInt(path, meta, "vocab_size");
    const eosId = metadataInt(path, meta, "eos_id");
    const tokensInfo = file.info("tokens");
    const offsetsInfo = file.info("doc_offsets");
    if (!["U16", "U32"].includes(tokensInfo.dtype) || tokensInfo.shape.length !== 1) {
      throw bad(path, `"tokens" must be a 1-D U16 or U32 tensor`, {
        actual: `${tokensInfo.dtype} ${tokensInfo.shape}`,
      });
    }
    if (
      !["I64", "U64"].includes(offsetsInfo.dtype) || offsetsInfo.shape.length !== 1 ||
      offsetsInfo.shape[0] < 1
    ) {
      throw bad(path, `"doc_offsets" must be a non-empty 1-D I64 or U64 tensor`, {
        actual: `${offsetsInfo.dtype} ${offsetsInfo.shape}`,
      });
    }
    if (eosId >= vocabSize) {
      throw bad(path, `eos_id ${eosId} is outside the vocabulary of ${vocabSize}`, {
        expected: `< ${vocabSize}`,
        actual: eosId,
      });
    }
    const tokenCount = tokensInfo.shape[0];
    const raw = await file.readBytes("doc_offsets");
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const docOffsets = new Float64Array(offsetsInfo.shape[0]);
    for (let i = 0; i < docOffsets.length; i++) docOffsets[i] = Number(view.getBigUint64(i * 8, true));
    for (let i = 0; i < docOffsets.length; i++) {
      const previous = i === 0 ? 0 : docOffsets[i - 1];
      if (docOffsets[i] < previous || (i === 0 && docOffsets[0] !== 0)) {
        throw bad(
          path,
          `doc_offsets[${i}] = ${docOffsets[i]} breaks the order (must start at 0 and never decrease)`,
        );
      }
    }
    if (docOffsets[docOffsets.length - 1] !== tokenCount) {
      throw bad(
        path,
        `doc_offsets ends at ${docOffsets[docOffsets.length - 1]} but there are ${tokenCount} tokens`,
      );
    }
    const info = {
      tokenizer: meta.tokenizer ?? "",
      tokenizerSha256: meta.tokenizer_sha256 ?? "",
      vocabSize,
      eosId,
      documents: docOffsets.length - 1,
      tokens: tokenCount,
    };
    return new TokenFileReader(path, info, docOffsets, file);
  } catch (error) {
    file.close();
    throw error;
  }
}

/**
 * Reads and validates a whole token file (tokens in memory); training reads lazily with openTokenFile.
 *
 * @example
 * ```ts
 * const { tokens, docOffsets, info } = await readTokenFile("data/train.tokens");
 * ```
 */
export async function readTokenFile(path: string): Promise<TokenFile> {
  const reader = await openTokenFile(path);
  try {
    const { info, docOffsets } = reader;
    const Ids = reader.bytesPerToken === 2 ? Uint16Array : Uint32Array;
    const tokens = new Ids(info.tokens);
    for (let at = 0; at < info.tokens; at += READ_BUFFER_TOKENS) {
      const end = Math.min(at + READ_BUFFER_TOKENS, info.tokens);
      tokens.set(reader.read(at, end, end), at);
    }
    return { tokens, docOffsets, info };
  } finally {
    reader.close();
  }
}
