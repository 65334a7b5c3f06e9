// Atomic output: files and directories are written under a temporary name beside the target and
// renamed into place only when complete, so a crash or a bad input never leaves half-written output.

import { PathError } from "../errors.ts";
import { pathExists } from "./files.ts";

function temporaryName(target: string): string {
  const slash = target.lastIndexOf("/");
  const dir = slash >= 0 ? target.slice(0, slash + 1) : "";
  const base = slash >= 0 ? target.slice(slash + 1) : target;
  const nonce = crypto.getRandomValues(new Uint32Array(1))[0].toString(16);
  return `${dir}.${base}.tmp-${Deno.pid}-${nonce}`;
}

/** Options for {@link writeDirectoryAtomically}. */
export interface AtomicDirectoryOptions {
  /** Replace an existing directory at the target (it is removed only after the new one is complete). */
  overwrite?: boolean;
}

/**
 * Builds a directory under a temporary name and renames it to `target` when `build` resolves.
 * If `build` throws, the temporary directory is removed and `target` is untouched.
 *
 * @example
 * ```ts
 * await writeDirectoryAtomically("out/model", async (dir) => {
 *   await Deno.writeTextFile(`${dir}/config.json`, "{}");
 * });
 * ```
 */
export async function writeDirectoryAtomically<T>(
  target: string,
  build: (temporaryDir: string) => Promise<T>,
  options: AtomicDirectoryOptions = {},
): Promise<T> {
  if (!options.overwrite && await pathExists(target)) {
    throw new PathError(`Output "${target}" already exists`, {
      file: target,
      hint: "choose another output path or pass --force to replace it",
    });
  }
  const temporary = temporaryName(target);
  await Deno.mkdir(temporary, { recursive: true });
  try {
    const result = await build(temporary);
    if (await pathExists(target)) await Deno.remove(target, { recursive: true });
    await Deno.rename(temporary, target);
    return result;
  } catch (error) {
    await Deno.remove(temporary, { recursive: true }).catch(() => {});
    throw error;
  }
}

/**
 * Writes a file under a temporary name and renames it to `target` when `write` resolves.
 * `write` receives the temporary path.
 */
export async function writeFileAtomically<T>(
  target: string,
  write: (temporaryPath: string) => Promise<T>,
): Promise<T> {
  const temporary = temporaryName(target);
  try {
    const result = await write(temporary);
    await Deno.rename(temporary, target);
    return result;
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
}

/** Writes text to `target` atomically. */
export function writeTextFileAtomically(target: string, text: string): Promise<void> {
  return writeFileAtomically(target, (path) => Deno.writeTextFile(path, text));
}
