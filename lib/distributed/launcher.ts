// Starts and supervises the rank processes of a data-parallel run on one host: each line a rank
// prints is passed on with "[rank i] " in front; when one rank fails, the others are stopped
// (SIGTERM, then SIGKILL after a grace period) and the failure is reported with the rank's last
// error line. Ctrl-C (SIGINT) or SIGTERM to the launcher stops every rank the same way.

/** One rank process to start. */
export interface RankCommand {
  rank: number;
  command: string;
  args: string[];
  /** Added to the launcher's environment. */
  env?: Record<string, string>;
  cwd?: string;
}

/** How the ranks ended. */
export type SupervisionResult =
  | { ok: true }
  | {
    ok: false;
    /** The first rank that failed (-1 when the launcher itself was interrupted). */
    rank: number;
    code: number;
    signal: Deno.Signal | null;
    /** Its last non-empty line on stderr ("" if none). */
    error: string;
  };

/** Options of {@link superviseRanks}. */
export interface SuperviseOptions {
  /** Receives every output line, already prefixed (default: stdout/stderr of this process). */
  write?: (line: string, stream: "stdout" | "stderr") => void;
  /** Pass rank 0's stdout through without a prefix and drop the other ranks' stdout (for --json). */
  rawRank0Stdout?: boolean;
  /** Milliseconds between SIGTERM and SIGKILL when stopping ranks (default STOP_GRACE_MS). */
  graceMs?: number;
}

/** How long a rank may take to exit after SIGTERM before it is killed. */
export const STOP_GRACE_MS = 10_000;
/** Signals that make the launcher stop every rank. */
const STOP_SIGNALS: readonly Deno.Signal[] = ["SIGINT", "SIGTERM"];

function defaultWrite(line: string, stream: "stdout" | "stderr"): void {
  const bytes = new TextEncoder().encode(line + "\n");
  if (stream === "stdout") Deno.stdout.writeSync(bytes);
  else Deno.stderr.writeSync(bytes);
}

async function forEachLine(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  let pending = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    const lines = (pending + text).split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) onLine(line);
  }
  if (pending) onLine(pending);
}

/**
 * Starts every rank, passes their output on, and waits for all of them. Resolves with the first
 * failure (after stopping the other ranks), or ok when every rank exited with code 0.
 *
 * @example
 * ```ts
 * const result = await superviseRanks([0, 1].map((rank) => ({ rank, command: "harpe", args: [...] })));
 * if (!result.ok) console.error(`rank ${result.rank} failed: ${result.error}`);
 * ```
 */
export async function superviseRanks(
  ranks: RankCommand[],
  options: SuperviseOptions = {},
): Promise<SupervisionResult> {
  const write = options.write ?? defaultWrite;
  const graceMs = options.graceMs ?? STOP_GRACE_MS;
  let failure: SupervisionResult | null = null;
  const running = new Set<Deno.ChildProcess>();
  let stopTimer: ReturnType<typeof setTimeout> | undefined;

  const signalAll = (signal: Deno.Signal) => {
    for (const child of running) {
      try {
        child.kill(signal);
      } catch {
        // It exited meanwhile (its status is on the way).
      }
    }
  };
  const stopAll = () => {
    signalAll("SIGTERM");
    stopTimer ??= setTimeout(() => signalAll("SIGKILL"), graceMs);
  };
  const onSignal = () => {
    failure ??= { ok: false, rank: -1, code: 1, signal: null, error: "the launcher was interrupted" };
    stopAll();
  };
  for (const signal of STOP_SIGNALS) Deno.addSignalListener(signal, onSignal);

  try {
    const children = ranks.map((spec) => {
      try {
        const child = new Deno.Command(spec.command, {
          args: spec.args,
          env: spec.env,
          cwd: spec.cwd,
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        running.add(child);
        return { spec, child };
      } catch (error) {
        stopAll();
        throw error;
      }
    });
    await Promise.all(children.map(async ({ spec, child }) => {
      const prefix = `[rank ${spec.rank}] `;
      let lastError = "";
      const raw = options.rawRank0Stdout;
      const outputs = Promise.all([
        forEachLine(child.stdout, (line) => {
          if (!raw) write(prefix + line, "stdout");
          else if (spec.rank === 0) write(line, "stdout");
        }),
        forEachLine(child.stderr, (line) => {
          if (line.trim()) lastError = line.trim();
          write(prefix + line, "stderr");
        }),
      ]);
      const status = await child.status;
      await outputs;
      running.delete(child);
      if (!status.success && !failure) {
        failure = { ok: false, rank: spec.rank, code: status.code, signal: status.signal, error: lastError };
        stopAll();
      }
    }));
  } finally {
    clearTimeout(stopTimer);
    for (const signal of STOP_SIGNALS) Deno.removeSignalListener(signal, onSignal);
  }
  return failure ?? { ok: true };
}
