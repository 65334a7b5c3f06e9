// Shared wiring for every command: turns thrown errors into exit codes (2 for bad input with a
// one-line message, 1 for failures) and prints results as text or as JSON.

import { isInputError } from "../lib/errors.ts";

/** Exit codes of every harpe command. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_BAD_INPUT = 2;

/** Prints a value as pretty JSON on stdout (the `--json` form of every command). */
export function printJson(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}

/** Prints the error the way the CLI reports it and returns the exit code it maps to. */
export function reportError(command: string, error: unknown): number {
  if (isInputError(error)) {
    console.error(`harpe ${command}: ${error.message}`);
    return EXIT_BAD_INPUT;
  }
  if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.PermissionDenied) {
    console.error(`harpe ${command}: ${(error as Error).message}`);
    return EXIT_BAD_INPUT;
  }
  const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
  console.error(`harpe ${command}: failed: ${message}`);
  return EXIT_FAILURE;
}

/**
 * Wraps a command's action: runs it, and exits with 2 on bad input, 1 on any other error.
 *
 * @example
 * ```ts
 * program.command("inspect").action(runAction("inspect", async (dir: string) => { ... }));
 * ```
 */
export function runAction<A extends unknown[]>(
  command: string,
  action: (...args: A) => Promise<void> | void,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (error) {
      Deno.exit(reportError(command, error));
    }
  };
}
