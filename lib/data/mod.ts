// Data for training: tokenizers, token files, the packing loader and its seeded RNG.

export { type Batch, type LoaderCursor, type LoaderOptions, PackedLoader } from "./loader.ts";
export { Rng, type RngState } from "./rng.ts";
export { memoryTokenSource, READ_BUFFER_TOKENS, type TokenData, type TokenSource } from "./token_source.ts";
export {
  openTokenFile,
  readTokenFile,
  TOKEN_FILE_FORMAT,
  type TokenFile,
  type TokenFileInfo,
  TokenFileReader,
  U16_VOCAB_LIMIT,
  writeTokenFile,
} from "./token_file.ts";
export { type Tokenized, tokenizeFiles, type TokenizeOptions } from "./tokenize.ts";
export { loadTokenizer, type TextTokenizer } from "./tokenizer.ts";
