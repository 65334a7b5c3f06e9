// A progress line on stderr for long work, drawn only when stderr is a terminal (never in pipelines,
// never in --json mode), with rate and ETA.

/** Options for {@link Progress}. */
export interface ProgressOptions {
  /** Unit shown after the rate, e.g. "B", "tok", "tensors". */
  unit?: string;
  /** Format numbers as bytes (KiB, MiB, GiB). */
  bytes?: boolean;
  /** Draw even if stderr is not a terminal (false = decide from the terminal). */
  enabled?: boolean;
}

const REDRAW_INTERVAL_MS = 100;
const BAR_WIDTH = 24;

/** Formats a byte count with a binary unit, e.g. 1536 -> "1.5 KiB". */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Formats seconds as h:mm:ss or m:ss. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

/**
 * A progress bar: `advance(n)` as work is done, `finish()` at the end.
 *
 * @example
 * ```ts
 * const bar = new Progress("export", 1000, { bytes: true });
 * bar.advance(500);
 * bar.finish();
 * ```
 */
export class Progress {
  #done = 0;
  #started = performance.now();
  #lastDraw = 0;
  #enabled: boolean;
  #encoder = new TextEncoder();
  #extra = "";

  constructor(readonly label: string, readonly total: number, readonly options: ProgressOptions = {}) {
    this.#enabled = options.enabled ?? Deno.stderr.isTerminal();
  }

  /** Adds `amount` units of finished work and redraws (at most every 100 ms). */
  advance(amount: number, extra?: string): void {
    this.#done += amount;
    if (extra !== undefined) this.#extra = extra;
    this.#draw(false);
  }

  /** Sets the finished amount directly. */
  set(done: number, extra?: string): void {
    this.#done = done;
    if (extra !== undefined) this.#extra = extra;
    this.#draw(false);
  }

  /** Draws the final state and ends the line. */
  finish(): void {
    this.#draw(true);
    if (this.#enabled) Deno.stderr.writeSync(this.#encoder.encode("\n"));
  }

  #draw(force: boolean): void {
    if (!this.#enabled) return;
    const now = performance.now();
    if (!force && now - this.#lastDraw < REDRAW_INTERVAL_MS) return;
    this.#lastDraw = now;
    const elapsed = (now - this.#started) / 1000;
    const fraction = this.total > 0 ? Math.min(1, this.#done / this.total) : 0;
    const filled = Math.round(fraction * BAR_WIDTH);
    const bar = "#".repeat(filled) + "-".repeat(BAR_WIDTH - filled);
    const rate = elapsed > 0 ? this.#done / elapsed : 0;
    const eta = rate > 0 ? (this.total - this.#done) / rate : Infinity;
    const fmt = (n: number) => this.options.bytes ? formatBytes(n) : n.toFixed(0);
    const rateText = this.options.bytes
      ? `${formatBytes(rate)}/s`
      : `${rate.toFixed(1)} ${this.options.unit ?? ""}/s`;
    const line = `\r${this.label} [${bar}] ${fmt(this.#done)}/${fmt(this.total)} ${rateText} ETA ${
      formatDuration(eta)
    }${this.#extra ? " " + this.#extra : ""}\x1b[K`;
    Deno.stderr.writeSync(this.#encoder.encode(line));
  }
}
