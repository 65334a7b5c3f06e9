// The resumable results store: one JSON line per finished cell in results.jsonl of the output folder,
// appended as soon as the cell is done, read back on the next run so finished cells are skipped.

import { FileFormatError } from "../errors.ts";
import { type Cell, cellKey } from "./grid.ts";

/** The stored result of one cell. */
export interface CellResult extends Cell {
  /** Settings that change the cell's content (part of its key). */
  variant: string;
  /** Passkey / NIAH: 0..1 (fraction of expected values found). Perplexity: mean NLL in nats. */
  score: number;
  /** Perplexity: tokens scored. */
  tokens?: number;
  /** Passkey / NIAH: prompt length in tokens, the expected values and the generated text. */
  promptTokens?: number;
  answers?: string[];
  output?: string;
  seconds: number;
}

/** File name of the store inside the output folder. */
export const RESULTS_FILE = "results.jsonl";

/**
 * Reads and appends cell results.
 *
 * @example
 * ```ts
 * const store = await ResultsStore.open("report");
 * if (!store.has(cell, "seed=1")) await store.append({ ...cell, variant: "seed=1", score: 1, seconds: 2 });
 * ```
 */
export class ResultsStore {
  #results = new Map<string, CellResult>();
  #encoder = new TextEncoder();

  private constructor(readonly dir: string, readonly path: string) {}

  /** Opens `dir`/results.jsonl (the folder is made at the first append). A torn last line (a run
   * killed mid-write) is dropped. */
  static async open(dir: string): Promise<ResultsStore> {
    const store = new ResultsStore(dir, `${dir}/${RESULTS_FILE}`);
    let text = "";
    try {
      text = await Deno.readTextFile(store.path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    const lines = text.split("\n");
    const torn = !text.endsWith("\n") && text.length > 0;
    for (let i = 0; i < lines.length; i++) {
      if (lines[i].trim() === "") continue;
      let record: CellResult;
      try {
        record = JSON.parse(lines[i]);
      } catch {
        if (torn && i === lines.length - 1) break;
        throw new FileFormatError(`${store.path}: line ${i + 1} is not valid JSON`, {
          file: store.path,
          hint: "remove the line or use another output folder",
        });
      }
      store.#results.set(cellKey(record, record.variant), record);
    }
    if (torn) await Deno.writeTextFile(store.path, lines.slice(0, -1).join("\n") + "\n");
    return store;
  }

  /** True when the cell is already finished with these settings. */
  has(cell: Cell, variant: string): boolean {
    return this.#results.has(cellKey(cell, variant));
  }

  /** The stored result of a cell, if any. */
  get(cell: Cell, variant: string): CellResult | undefined {
    return this.#results.get(cellKey(cell, variant));
  }

  /** Stores a finished cell: appended to the file at once, so a killed run loses at most this cell. */
  async append(result: CellResult): Promise<void> {
    await Deno.mkdir(this.dir, { recursive: true });
    await Deno.writeFile(this.path, this.#encoder.encode(JSON.stringify(result) + "\n"), { append: true });
    this.#results.set(cellKey(result, result.variant), result);
  }

  /** Every stored result. */
  all(): CellResult[] {
    return [...this.#results.values()];
  }
}
