// The harpe command line: one subcommand per file in cli/, registered here. A run imports only the
// module of the command it names (with the library that command pulls in).

import { Command, CommanderError } from "commander";
import { EXIT_BAD_INPUT, EXIT_OK } from "./run_action.ts";
import { VERSION } from "../lib/version.ts";

/**
 * Every subcommand by name, in help order, each imported on demand: importing all of them up front
 * cost 0.2-0.4 s on every run. Add a command with one line here.
 */
const COMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  tokenize: async () => (await import("./tokenize.ts")).tokenizeCommand(),
  train: async () => (await import("./train.ts")).trainCommand(),
  inspect: async () => (await import("./inspect.ts")).inspectCommand(),
  export: async () => (await import("./export.ts")).exportCommand(),
  "verify-reference": async () => (await import("./verify_reference.ts")).verifyReferenceCommand(),
  eval: async () => (await import("./eval.ts")).evalCommand(),
  generate: async () => (await import("./generate.ts")).generateCommand(),
  plan: async () => (await import("./plan.ts")).planCommand(),
  convert: async () => (await import("./convert.ts")).convertCommand(),
};

/** Top-level options that print something without any subcommand. */
const VERSION_FLAGS: readonly string[] = ["--version", "-V"];

/**
 * The subcommands a run with `args` needs: the one named by its first argument; none for the version;
 * else all of them (for the program's help, `help <command>`, or an unknown command's error).
 *
 * @example
 * ```ts
 * commandsFor(["inspect", "./model"]); // ["inspect"]
 * ```
 */
export function commandsFor(args: string[]): string[] {
  const first = args[0];
  if (first !== undefined && Object.hasOwn(COMMANDS, first)) return [first];
  return first !== undefined && VERSION_FLAGS.includes(first) ? [] : Object.keys(COMMANDS);
}

/**
 * Builds the harpe program with the subcommands `names` registered (default: every one).
 *
 * @example
 * ```ts
 * await (await buildProgram(["inspect"])).parseAsync(["inspect", "./model"], { from: "user" });
 * ```
 */
export async function buildProgram(names: string[] = Object.keys(COMMANDS)): Promise<Command> {
  const program = new Command("harpe")
    .description("Long context for pretrained language models with HARPE (per-head RoPE bases)")
    .version(VERSION)
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  // One at a time: measured no slower than all at once (each dynamic import prepares its own graph).
  for (const name of names) program.addCommand(await COMMANDS[name]());
  // addCommand does not pass these down: a subcommand's usage error (e.g. a missing required option)
  // must also end in exit code 2, not commander's own exit 1.
  for (const command of program.commands) {
    command.exitOverride().showHelpAfterError("(run with --help for usage)");
  }
  return program;
}

if (import.meta.main) {
  const program = await buildProgram(commandsFor(Deno.args));
  try {
    await program.parseAsync(Deno.args, { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) {
      const ok = error.code === "commander.helpDisplayed" || error.code === "commander.version" ||
        error.code === "commander.help";
      Deno.exit(ok ? EXIT_OK : EXIT_BAD_INPUT);
    }
    throw error;
  }
}
