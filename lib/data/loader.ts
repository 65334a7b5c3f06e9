// Packs the documents of a token file into training sequences: each epoch visits the documents in a
// seeded shuffled order, concatenates them with an EOS token after each one, and cuts the stream into
// windows of T+1 tokens (inputs = first T, targets = last T; consecutive windows share one token).
// Tokens are read from a TokenSource one run at a time, so a token file need not fit in memory.
// The cursor (epoch, document, offset, RNG state) is plain JSON, so a run resumes exactly.

import { ShapeError } from "../errors.ts";
import { Rng, type RngState } from "./rng.ts";
import { memoryTokenSource, READ_BUFFER_TOKENS, type TokenData, type TokenSource } from "./token_source.ts";

export type { TokenData, TokenSource };

/** Where the loader is in its data: enough to continue exactly where it stopped. */
export interface LoaderCursor {
  epoch: number;
  /** Index into this epoch's document order. */
  doc: number;
  /** Token offset in that document; offset == its length means its EOS token is next. */
  offset: number;
  /** The RNG state from which this epoch's document order was drawn. */
  rng: RngState;
}

/** Options for {@link PackedLoader}. */
export interface LoaderOptions {
  /** T: tokens per sequence (the training length). */
  seqLen: number;
  /** B: sequences per batch. */
  batch: number;
  /** Seeds the document order. */
  seed: number;
  /** Appended after every document. */
  eosId: number;
  /** Shuffle the document order every epoch (default true); false keeps file order. */
  shuffle?: boolean;
}

/** One batch: `targets[b, t] = inputs[b, t+1]` within the packed stream. */
export interface Batch {
  inputs: Int32Array; // [B, T]
  targets: Int32Array; // [B, T]
}

/**
 * Deterministic packing loader over a token file's documents.
 *
 * @example
 * ```ts
 * const data = await openTokenFile("data/train.tokens"); // or { tokens, docOffsets } in memory
 * const loader = new PackedLoader(data, { seqLen: 256, batch: 4, seed: 1, eosId: 1 });
 * const { inputs, targets } = loader.next(); // each [4 * 256]
 * const saved = loader.cursor();
 * const again = new PackedLoader(data, { seqLen: 256, batch: 4, seed: 1, eosId: 1 }, saved);
 * ```
 */
export class PackedLoader {
  readonly seqLen: number;
  readonly batch: number;
  #source: TokenSource;
  #eosId: number;
  #shuffle: boolean;
  #docCount: number;
  #rng: Rng;
  #epochRng: RngState;
  /** [docs] this epoch's document order: 4 bytes per document (a number[] takes 8). */
  #order = new Uint32Array(0);
  #epoch = 0;
  #doc = 0;
  #offset = 0;

  constructor(data: TokenData | TokenSource, options: LoaderOptions, cursor?: LoaderCursor) {
    const { seqLen, batch } = options;
    if (!Number.isInteger(seqLen) || seqLen < 1 || !Number.isInteger(batch) || batch < 1) {
      throw new ShapeError(`seq_len and batch must be positive integers, got ${seqLen} and ${batch}`);
    }
    this.#docCount = data.docOffsets.length - 1;
    if (this.#docCount < 1) {
      throw new ShapeError("The token file holds no documents", { hint: "tokenize some text first" });
    }
    this.seqLen = seqLen;
    this.batch = batch;
    this.#source = "read" in data ? data : memoryTokenSource(data);
    this.#eosId = options.eosId;
    this.#shuffle = options.shuffle ?? true;
    this.#rng = new Rng(options.seed);
    this.#epochRng = this.#rng.state();
    if (cursor) {
      this.#rng = Rng.fromState(cursor.rng);
      this.#startEpoch(cursor.epoch);
      if (
        cursor.doc < 0 || cursor.doc >= this.#docCount || cursor.offset < 0 ||
        cursor.offset > this.#docLength(this.#order[cursor.doc])
      ) {
        throw new ShapeError(`Loader cursor ${JSON.stringify(cursor)} does not fit this token file`, {
          hint: "resume with the token file the run started with",
        });
      }
      this.#doc = cursor.doc;
      this.#offset = cursor.offset;
    } else {
      this.#startEpoch(0);
    }
  }

  /** The position to save in a checkpoint (a copy). */
  cursor(): LoaderCursor {
    return { epoch: this.#epoch, doc: this.#doc, offset: this.#offset, rng: [...this.#epochRng] };
  }

  /** The next B sequences of T+1 packed tokens, as inputs and targets. */
  next(): Batch {
    const T = this.seqLen;
    const inputs = new Int32Array(this.batch * T);
    const targets = new Int32Array(this.batch * T);
    const window = new Int32Array(T + 1);
    for (let b = 0; b < this.batch; b++) {
      this.#take(window.subarray(0, T));
      window[T] = this.#peek();
      inputs.set(window.subarray(0, T), b * T);
      targets.set(window.subarray(1), b * T);
    }
    return { inputs, targets };
  }

  #docLength(doc: number): number {
    return this.#source.docOffsets[doc + 1] - this.#source.docOffsets[doc];
  }

  #startEpoch(epoch: number): void {
    this.#epoch = epoch;
    this.#epochRng = this.#rng.state();
    this.#order = new Uint32Array(this.#docCount);
    for (let i = 0; i < this.#docCount; i++) this.#order[i] = i;
    if (this.#shuffle) this.#rng.shuffle(this.#order);
    this.#doc = 0;
    this.#offset = 0;
  }

  /** Fills `out` with the next stream tokens and moves past them, copying a document run at a time. */
  #take(out: Int32Array): void {
    for (let at = 0; at < out.length;) {
      const doc = this.#order[this.#doc];
      const start = this.#source.docOffsets[doc];
      const length = this.#source.docOffsets[doc + 1] - start;
      if (this.#offset === length) {
        out[at++] = this.#eosId;
        this.#offset = 0;
        this.#doc++;
        if (this.#doc === this.#docCount) this.#startEpoch(this.#epoch + 1);
        continue;
      }
      const n = Math.min(out.length - at, length - this.#offset, READ_BUFFER_TOKENS);
      const from = start + this.#offset;
      out.set(this.#source.read(from, from + n, start + length), at);
      at += n;
      this.#offset += n;
    }
  }

  /** The next stream token, without moving past it. */
  #peek(): number {
    const doc = this.#order[this.#doc];
    const start = this.#source.docOffsets[doc];
    const length = this.#source.docOffsets[doc + 1] - start;
    if (this.#offset === length) return this.#eosId;
    const at = start + this.#offset;
    return this.#source.read(at, at + 1, start + length)[0];
  }
}
