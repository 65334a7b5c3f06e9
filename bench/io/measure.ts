// Runs a command and measures its wall time and peak resident memory (via /usr/bin/time -v when
// present, else by polling VmHWM in /proc/<pid>/status).

/** Wall time and peak RSS of one command. */
export interface Measurement {
  seconds: number;
  peakRssBytes: number;
  code: number;
}

const GNU_TIME = "/usr/bin/time";
const POLL_INTERVAL_MS = 20;

async function hasGnuTime(): Promise<boolean> {
  try {
    return (await Deno.stat(GNU_TIME)).isFile;
  } catch {
    return false;
  }
}

async function readHighWaterMark(pid: number): Promise<number> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const kb = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
    return kb ? Number(kb) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Runs `command` with `args`, returning its wall time, peak RSS and exit code; stderr is kept only to
 * report a failure.
 *
 * @example
 * ```ts
 * const { seconds, peakRssBytes } = await measure("cp", ["-r", "a", "b"]);
 * ```
 */
export async function measure(command: string, args: string[]): Promise<Measurement> {
  const gnu = await hasGnuTime();
  const [program, argv] = gnu ? [GNU_TIME, ["-v", command, ...args]] : [command, args];
  const started = performance.now();
  const child = new Deno.Command(program, { args: argv, stdout: "null", stderr: "piped" }).spawn();
  let polledPeak = 0;
  const poll = gnu ? undefined : setInterval(async () => {
    polledPeak = Math.max(polledPeak, await readHighWaterMark(child.pid));
  }, POLL_INTERVAL_MS);
  const output = await child.output();
  const seconds = (performance.now() - started) / 1000;
  if (poll !== undefined) clearInterval(poll);
  const stderr = new TextDecoder().decode(output.stderr);
  if (output.code !== 0) throw new Error(`${command} ${args.join(" ")} failed (${output.code}): ${stderr}`);
  const maxKb = /Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)?.[1];
  return { seconds, peakRssBytes: gnu && maxKb ? Number(maxKb) * 1024 : polledPeak, code: output.code };
}
