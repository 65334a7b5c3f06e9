// log.jsonl of a training run: one JSON object per optimizer step, appended as the run goes. On
// resume the log is cut back to the checkpoint's step (lines written after it, or torn by a kill, go).

/** One line of log.jsonl. `loss` and `grad_norm` are null when not finite (the step was skipped). */
export interface LogRecord {
  step: number;
  loss: number | null;
  lr: number;
  grad_norm: number | null;
  /** Tokens trained on in this step (B * T * grad_accum). */
  tokens: number;
  tokens_per_s: number;
  /** Resident set size of the process, bytes. */
  rss_bytes: number;
  /** True when the guard skipped this step's update (non-finite loss or gradient norm). */
  skipped: boolean;
  /** Steps skipped so far in the run. */
  skipped_total: number;
}

/** Reads log.jsonl, keeping only well-formed lines (a torn last line is dropped). */
export async function readLog(path: string): Promise<LogRecord[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  const records: LogRecord[] = [];
  for (const line of text.split("\n")) {
    try {
      const value = JSON.parse(line);
      if (typeof value?.step === "number") records.push(value);
    } catch {
      // A torn line (the process was killed mid-write) is not part of the log.
    }
  }
  return records;
}

/**
 * The log file of a run.
 *
 * @example
 * ```ts
 * const log = await TrainLog.open("runs/a/log.jsonl", { keepThroughStep: 0 });
 * await log.append({ step: 1, loss: 6.2, lr: 1e-3, grad_norm: 1.1, tokens: 1024, tokens_per_s: 900,
 *   rss_bytes: 1e8, skipped: false, skipped_total: 0 });
 * ```
 */
export class TrainLog {
  private constructor(readonly path: string) {}

  /** Opens the log, keeping the records of steps <= `keepThroughStep` (0 = start empty). */
  static async open(path: string, options: { keepThroughStep: number }): Promise<TrainLog> {
    const kept = (await readLog(path)).filter((r) => r.step <= options.keepThroughStep);
    const text = kept.map((r) => JSON.stringify(r) + "\n").join("");
    const temporary = `${path}.tmp-${Deno.pid}`;
    await Deno.writeTextFile(temporary, text);
    await Deno.rename(temporary, path);
    return new TrainLog(path);
  }

  /** Appends one record as one line. */
  async append(record: LogRecord): Promise<void> {
    await Deno.writeTextFile(this.path, JSON.stringify(record) + "\n", { append: true });
  }
}
