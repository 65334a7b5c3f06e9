// Runs a command under GNU time and measures its wall time, peak resident memory, and the time the
// kernel then takes to flush what it wrote (`sync`), starting from a flushed page cache.

/** Wall time, flush time and peak RSS of one command. */
export interface Measurement {
  /** Wall time of the command itself. */
  seconds: number;
  /** Wall time of the `sync` right after it: writing its dirty pages to disk. */
  syncSeconds: number;
  peakRssBytes: number;
}

/** GNU time, for the peak RSS ("Maximum resident set size") of a child process. */
const GNU_TIME = "/usr/bin/time";

async function run(program: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(program, { args, stdout: "null", stderr: "piped" }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  if (output.code !== 0) throw new Error(`${program} ${args.join(" ")} failed (${output.code}): ${stderr}`);
  return stderr;
}

async function timed(body: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await body();
  return (performance.now() - started) / 1000;
}

/**
 * Flushes the page cache's dirty pages, runs `command` with `args` under GNU time, then flushes again;
 * returns the command's wall time, the flush time after it, and its peak RSS.
 *
 * @example
 * ```ts
 * const { seconds, syncSeconds, peakRssBytes } = await measure("cp", ["-r", "a", "b"]);
 * ```
 */
export async function measure(command: string, args: string[]): Promise<Measurement> {
  try {
    await Deno.stat(GNU_TIME);
  } catch {
    throw new Error(`${GNU_TIME} is needed to measure peak RSS (install the "time" package)`);
  }
  await run("sync", []);
  let stderr = "";
  const seconds = await timed(async () => stderr = await run(GNU_TIME, ["-v", command, ...args]));
  const syncSeconds = await timed(() => run("sync", []));
  const maxKb = /Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)?.[1];
  if (maxKb === undefined) throw new Error(`no peak RSS in the output of ${GNU_TIME}: ${stderr}`);
  return { seconds, syncSeconds, peakRssBytes: Number(maxKb) * 1024 };
}
