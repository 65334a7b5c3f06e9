// Turns text files into token ids: .txt/.md files are one document each, .jsonl files hold one
// document per line in a `text` field. Used by `harpe tokenize`.

import { FileFormatError, PathError, UnsupportedError } from "../errors.ts";
import type { TextTokenizer } from "./tokenizer.ts";
import { U16_VOCAB_LIMIT } from "./token_file.ts";

const TEXT_EXTENSIONS = [".txt", ".text", ".md", ".markdown"];
const JSONL_EXTENSIONS = [".jsonl"];
const INITIAL_CAPACITY = 1 << 16;

/** Token ids of every document back to back, and the documents' start offsets ([docs+1]). */
export interface Tokenized {
  /** [N]; u16 when the tokenizer's vocabulary fits (half the memory), else u32. */
  tokens: Uint16Array | Uint32Array;
  docOffsets: number[]; // [docs+1]
  /** Input bytes read. */
  bytes: number;
}

/** Options for {@link tokenizeFiles}. */
export interface TokenizeOptions {
  /** Called after each document with the bytes read and tokens made so far. */
  onProgress?: (bytes: number, tokens: number) => void;
}

async function* jsonlLines(path: string): AsyncGenerator<{ line: string; number: number }> {
  const file = await Deno.open(path);
  const decoder = new TextDecoder();
  let pending = "";
  let number = 0;
  for await (const chunk of file.readable) {
    pending += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      yield { line: pending.slice(0, newline), number: ++number };
      pending = pending.slice(newline + 1);
    }
  }
  pending += decoder.decode();
  if (pending.length > 0) yield { line: pending, number: ++number };
}

function fileKind(path: string): "text" | "jsonl" {
  const lower = path.toLowerCase();
  if (JSONL_EXTENSIONS.some((e) => lower.endsWith(e))) return "jsonl";
  if (TEXT_EXTENSIONS.some((e) => lower.endsWith(e))) return "text";
  throw new UnsupportedError(`Cannot tokenize "${path}": unknown file type`, {
    file: path,
    hint: `use ${[...TEXT_EXTENSIONS, ...JSONL_EXTENSIONS].join(", ")}`,
  });
}

/** The document texts of one input file, in order, with how many bytes each took. */
async function* documents(path: string): AsyncGenerator<{ text: string; bytes: number }> {
  if (fileKind(path) === "jsonl") {
    const encoder = new TextEncoder();
    for await (const { line, number } of jsonlLines(path)) {
      const bytes = encoder.encode(line).length + 1;
      if (line.trim() === "") continue;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (error) {
        throw new FileFormatError(`${path}:${number}: not valid JSON (${(error as Error).message})`, {
          file: path,
          hint: "each line of a .jsonl file must be one JSON object",
        });
      }
      const text = (value as { text?: unknown } | null)?.text;
      if (typeof value !== "object" || value === null || typeof text !== "string") {
        throw new FileFormatError(`${path}:${number}: expected an object with a string "text" field`, {
          file: path,
          field: "text",
        });
      }
      yield { text, bytes };
    }
    return;
  }
  const data = await Deno.readFile(path);
  yield { text: new TextDecoder().decode(data), bytes: data.length };
}

/**
 * Tokenizes every document of `files` in order (no special tokens; the loader adds EOS).
 *
 * @example
 * ```ts
 * const tok = await loadTokenizer("tokenizer.json");
 * const { tokens, docOffsets } = await tokenizeFiles(["a.txt", "b.jsonl"], tok);
 * ```
 */
export async function tokenizeFiles(
  files: string[],
  tokenizer: TextTokenizer,
  options: TokenizeOptions = {},
): Promise<Tokenized> {
  for (const path of files) {
    fileKind(path);
    try {
      const info = await Deno.stat(path);
      if (!info.isFile) throw new PathError(`Input "${path}" is not a file`, { file: path });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new PathError(`Input "${path}" does not exist`, { file: path });
      }
      throw error;
    }
  }
  const Ids = tokenizer.vocabSize <= U16_VOCAB_LIMIT ? Uint16Array : Uint32Array;
  let tokens: Uint16Array | Uint32Array = new Ids(INITIAL_CAPACITY);
  let count = 0;
  let bytes = 0;
  const docOffsets = [0];
  for (const path of files) {
    for await (const doc of documents(path)) {
      const ids = tokenizer.encode(doc.text);
      if (count + ids.length > tokens.length) {
        const grown = new Ids(Math.max(tokens.length * 2, count + ids.length));
        grown.set(tokens.subarray(0, count));
        tokens = grown;
      }
      tokens.set(ids, count);
      count += ids.length;
      bytes += doc.bytes;
      docOffsets.push(count);
      options.onProgress?.(bytes, count);
    }
  }
  return { tokens: tokens.slice(0, count), docOffsets, bytes };
}
