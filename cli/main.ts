// The harpe command line: one subcommand per file in cli/, registered here.

import { Command, CommanderError } from "commander";
import { EXIT_BAD_INPUT, EXIT_OK } from "./run_action.ts";
import { VERSION } from "../lib/version.ts";
import { tokenizeCommand } from "./tokenize.ts";
import { trainCommand } from "./train.ts";
import { inspectCommand } from "./inspect.ts";
import { exportCommand } from "./export.ts";
import { verifyReferenceCommand } from "./verify_reference.ts";
import { evalCommand } from "./eval.ts";
import { generateCommand } from "./generate.ts";
import { planCommand } from "./plan.ts";
import { convertCommand } from "./convert.ts";

/** Builds the harpe program with every subcommand registered. */
export function buildProgram(): Command {
  const program = new Command("harpe")
    .description("Long context for pretrained language models with HARPE (per-head RoPE bases)")
    .version(VERSION)
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  program.addCommand(tokenizeCommand());
  program.addCommand(trainCommand());
  program.addCommand(inspectCommand());
  program.addCommand(exportCommand());
  program.addCommand(verifyReferenceCommand());
  program.addCommand(evalCommand());
  program.addCommand(generateCommand());
  program.addCommand(planCommand());
  program.addCommand(convertCommand());
  // addCommand does not pass these down: a subcommand's usage error (e.g. a missing required option)
  // must also end in exit code 2, not commander's own exit 1.
  for (const command of program.commands) {
    command.exitOverride().showHelpAfterError("(run with --help for usage)");
  }
  return program;
}

if (import.meta.main) {
  const program = buildProgram();
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
