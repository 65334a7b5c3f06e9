// Trains the demo's byte-level BPE tokenizer on fixtures/corpus and writes fixtures/tiny/tokenizer.json
// and tokenizer_config.json (the GPT-2 scheme: bytes mapped to printable characters, GPT-2 split
// regex, merges learned greedily by pair frequency). Deterministic: same corpus -> same files.
//
//   deno run --allow-read --allow-write tools/train_bpe.ts [--vocab 512] [--out fixtures/tiny]

import { Command } from "commander";

const SPECIAL_TOKENS = ["<s>", "</s>"];
const DEFAULT_VOCAB = 512;
const BYTES = 256;
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const PAIR_KEY_BASE = 1 << 16;

/** GPT-2's map from each byte to a printable character (bytes that print as themselves keep their code). */
export function byteToUnicode(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const out: string[] = [];
  let extra = 0;
  for (let b = 0; b < BYTES; b++) out.push(String.fromCodePoint(printable(b) ? b : BYTES + extra++));
  return out;
}

interface Word {
  symbols: number[];
  count: number;
}

function countWords(texts: string[], firstByteId: number): Word[] {
  const counts = new Map<string, number>();
  const encoder = new TextEncoder();
  for (const text of texts) {
    for (const match of text.matchAll(GPT2_SPLIT)) counts.set(match[0], (counts.get(match[0]) ?? 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([piece, count]) => ({
    symbols: Array.from(encoder.encode(piece), (b) => firstByteId + b),
    count,
  }));
}

function bestPair(words: Word[]): { key: number; count: number } | null {
  const pairs = new Map<number, number>();
  for (const { symbols, count } of words) {
    for (let i = 0; i + 1 < symbols.length; i++) {
      const key = symbols[i] * PAIR_KEY_BASE + symbols[i + 1];
      pairs.set(key, (pairs.get(key) ?? 0) + count);
    }
  }
  let best: { key: number; count: number } | null = null;
  for (const [key, count] of pairs) {
    if (!best || count > best.count || (count === best.count && key < best.key)) best = { key, count };
  }
  return best;
}

function applyMerge(words: Word[], a: number, b: number, merged: number): void {
  for (const word of words) {
    const s = word.symbols;
    let w = 0;
    for (let r = 0; r < s.length; r++) {
      if (r + 1 < s.length && s[r] === a && s[r + 1] === b) {
        s[w++] = merged;
        r++;
      } else {
        s[w++] = s[r];
      }
    }
    s.length = w;
  }
}

/** Learns merges until the vocabulary (specials + 256 bytes + merges) has `vocabSize` entries. */
export function trainBpe(
  texts: string[],
  vocabSize: number,
): { vocab: string[]; merges: [string, string][] } {
  const byteChars = byteToUnicode();
  const vocab = [...SPECIAL_TOKENS, ...byteChars];
  const words = countWords(texts, SPECIAL_TOKENS.length);
  const merges: [string, string][] = [];
  while (vocab.length < vocabSize) {
    const best = bestPair(words);
    if (!best || best.count < 2) break;
    const a = Math.floor(best.key / PAIR_KEY_BASE);
    const b = best.key % PAIR_KEY_BASE;
    merges.push([vocab[a], vocab[b]]);
    vocab.push(vocab[a] + vocab[b]);
    applyMerge(words, a, b, vocab.length - 1);
  }
  return { vocab, merges };
}

/** The tokenizer.json object of a byte-level BPE with the given vocabulary and merges. */
export function tokenizerJson(vocab: string[], merges: [string, string][]): Record<string, unknown> {
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(vocab.map((token, id) => [token, id])),
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

if (import.meta.main) {
  const options = new Command("train_bpe")
    .option("--corpus <dir>", "folder of .txt files", "fixtures/corpus")
    .option("--vocab <n>", "vocabulary size", String(DEFAULT_VOCAB))
    .option("--out <dir>", "output folder", "fixtures/tiny")
    .parse(Deno.args, { from: "user" })
    .opts();
  const names = [...Deno.readDirSync(options.corpus)].map((e) => e.name).filter((n) => n.endsWith(".txt"))
    .sort();
  const texts = names.map((n) => Deno.readTextFileSync(`${options.corpus}/${n}`));
  const { vocab, merges } = trainBpe(texts, Number(options.vocab));
  Deno.mkdirSync(options.out, { recursive: true });
  Deno.writeTextFileSync(
    `${options.out}/tokenizer.json`,
    JSON.stringify(tokenizerJson(vocab, merges), null, 1) + "\n",
  );
  const config = {
    tokenizer_class: "PreTrainedTokenizerFast",
    bos_token: "<s>",
    eos_token: "</s>",
    add_bos_token: false,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
  };
  Deno.writeTextFileSync(`${options.out}/tokenizer_config.json`, JSON.stringify(config, null, 2) + "\n");
  console.log(
    `${names.length} files, vocabulary ${vocab.length} (${merges.length} merges) -> ${options.out}`,
  );
}
