// Small file reads and queries shared across the project: whether a path exists or is a file, and a
// JSON file that must hold an object, each failing with a typed error that names the file.

import { FileFormatError, PathError } from "../errors.ts";

/**
 * True when something (file, directory or link) exists at `path`; other errors are thrown.
 *
 * @example
 * ```ts
 * if (await pathExists("out/model")) console.log("already there");
 * ```
 */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * True when `path` is a regular file; false when nothing is there or it is something else.
 *
 * @example
 * ```ts
 * if (await isFile("model/model.safetensors.index.json")) console.log("sharded");
 * ```
 */
export async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Hints appended to the errors of {@link readJsonObject}. */
export interface JsonFileHints {
  /** When the file does not exist. */
  missing?: string;
  /** When it is not JSON or not a JSON object. */
  invalid?: string;
}

/**
 * Reads a JSON file that must hold an object. Throws PathError (`"<path>" does not exist`) or
 * FileFormatError (`<path>: is not valid JSON (...)`, `<path>: must hold a JSON object`), with the hints.
 *
 * @example
 * ```ts
 * const raw = await readJsonObject("model/config.json", { missing: "a checkpoint holds config.json" });
 * ```
 */
export async function readJsonObject(
  path: string,
  hints: JsonFileHints = {},
): Promise<Record<string, unknown>> {
  const hint = (text: string | undefined) => text === undefined ? {} : { hint: text };
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new PathError(`"${path}" does not exist`, { file: path, ...hint(hints.missing) });
    }
    throw error;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new FileFormatError(`${path}: is not valid JSON (${(error as Error).message})`, {
      file: path,
      ...hint(hints.invalid),
    });
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new FileFormatError(`${path}: must hold a JSON object`, { file: path, ...hint(hints.invalid) });
  }
  return raw as Record<string, unknown>;
}
