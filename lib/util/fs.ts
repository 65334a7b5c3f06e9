// Small file-system helpers shared by commands and the library.

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
