// Test helpers: run the CLI as a subprocess, make temporary directories, find the shared fixtures.

import { loadTokenizer, tokenizeFiles, writeTokenFile } from "../lib/data/mod.ts";

/** What a CLI run returned. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

const ROOT = new URL("../", import.meta.url).pathname;

/** The project root, ending with "/". */
export const PROJECT_ROOT = ROOT;

/**
 * `deno run` with the project's existing node_modules used as is. With the default ("auto") every
 * process takes a lock on node_modules, and test files running in parallel then print "Blocking
 * waiting for file lock" on stderr, which breaks the one-line-message assertions.
 */
export const DENO_RUN: readonly string[] = ["run", "--node-modules-dir=manual"];

/** The `deno` arguments that run `harpe ARGS...` with the same permissions as the `harpe` task. */
export function harpeDenoArgs(args: string[]): string[] {
  return [
    ...DENO_RUN,
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "--allow-ffi",
    `${ROOT}cli/main.ts`,
    ...args,
  ];
}

/** Runs `harpe ARGS...` with the same permissions as the `harpe` task and collects its output. */
export async function runHarpe(args: string[], options: { cwd?: string } = {}): Promise<RunResult> {
  const command = new Deno.Command(Deno.execPath(), {
    args: harpeDenoArgs(args),
    cwd: options.cwd ?? ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
  const output = await command.output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

/** Creates a temporary directory, runs `body` with it, and removes it afterwards. */
export async function withTempDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "harpe-test-" });
  try {
    return await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Lists the entries of a directory (names only, sorted). */
export async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

/**
 * Writes a token file of fixture corpus texts (fixtures/corpus/<name>) tokenized with the tiny model's
 * tokenizer: the training data of the end-to-end tests.
 */
export async function writeCorpusTokens(
  path: string,
  files: string[] = ["1790_george_washington_n.txt"],
): Promise<void> {
  const tokenizer = await loadTokenizer(`${ROOT}fixtures/tiny/tokenizer.json`);
  const data = await tokenizeFiles(files.map((f) => `${ROOT}fixtures/corpus/${f}`), tokenizer);
  await writeTokenFile(path, data, {
    tokenizer: "tiny",
    tokenizerSha256: tokenizer.sha256,
    vocabSize: tokenizer.vocabSize,
    eosId: tokenizer.eosId,
  });
}
