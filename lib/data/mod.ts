// Data for training: tokenizers, token files, the packing loader and its seeded RNG.

export { type Batch, type LoaderCursor, type LoaderOptions, PackedLoader, type TokenData } from "./loader.ts";
export { Rng, type RngState } from "./rng.ts";
export {
  readTokenFile,
  TOKEN_FILE_FORMAT,
  type TokenFile,
  type TokenFileInfo,
  U16_VOCAB_LIMIT,
  writeTokenFile,
} from "./token_file.ts";
export { type Tokenized, tokenizeFiles, type TokenizeOptions } from "./tokenize.ts";
export { loadTokenizer, type TextTokenizer } from "./tokenizer.ts";
