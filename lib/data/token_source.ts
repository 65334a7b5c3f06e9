// Where the packing loader gets token ids from: a token file read by byte range (token_file.ts) or
// ids already in memory. Only `doc_offsets` [docs+1] must be in memory; tokens are read a run at a time.

/** Most tokens one {@link TokenSource.read} call may ask for: the file reader's buffer size
 * (256 KiB of u32 ids), few enough system calls and small enough to stay in the CPU cache. */
export const READ_BUFFER_TOKENS = 64 * 1024;

/** Token ids of every document, back to back, and where each document starts. */
export interface TokenData {
  /** [N] token ids of all documents, without EOS tokens between them. */
  tokens: Uint16Array | Uint32Array;
  /** [docs+1] start of each document in `tokens`; the last entry is N. */
  docOffsets: ArrayLike<number>;
}

/** Token ids read on demand. */
export interface TokenSource {
  /** [docs+1] start of each document; the last entry is N, the number of tokens. */
  readonly docOffsets: ArrayLike<number>;
  /**
   * Tokens [start, end) (at most READ_BUFFER_TOKENS of them), as a view valid until the next call.
   * May read ahead up to token `until` (>= end), so the next call for later tokens costs no read.
   */
  read(start: number, end: number, until: number): Uint16Array | Uint32Array;
}

/**
 * A source over ids already in memory (tests, small held-out sets).
 *
 * @example
 * ```ts
 * const source = memoryTokenSource({ tokens: new Uint16Array([5, 6, 7]), docOffsets: [0, 2, 3] });
 * source.read(1, 3, 3); // Uint16Array [6, 7]
 * ```
 */
export function memoryTokenSource(data: TokenData): TokenSource {
  return { docOffsets: data.docOffsets, read: (start, end) => data.tokens.subarray(start, end) };
}
