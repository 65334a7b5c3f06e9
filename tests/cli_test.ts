// The command line's contract: --help works, unknown options are bad input (exit code 2), and a run loads
// only the command it names.

import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { runHarpe } from "./harness.ts";
import { buildProgram, commandsFor } from "../cli/main.ts";
import { VERSION } from "../lib/version.ts";

Deno.test("harpe --help exits 0 and lists the tool", async () => {
  const result = await runHarpe(["--help"]);
  assertEquals(result.code, 0);
  assertStringIncludes(result.stdout, "HARPE");
});

Deno.test("an unknown option is bad input: exit code 2", async () => {
  const result = await runHarpe(["--no-such-option"]);
  assertEquals(result.code, 2);
  assertStringIncludes(result.stderr, "unknown option");
});

Deno.test("a run loads only the command it names; every command routes to itself", async () => {
  const all = (await buildProgram()).commands.map((c) => c.name());
  assert(all.includes("inspect") && all.includes("export"), all.join(", "));
  for (const name of all) assertEquals(commandsFor([name, "--help"]), [name]);
  assertEquals(commandsFor([]), all);
  assertEquals(commandsFor(["--help"]), all);
  assertEquals(commandsFor(["help", "inspect"]), all);
  assertEquals(commandsFor(["no-such-command"]), all);
  assertEquals(commandsFor(["--version"]), []);
  assertEquals(commandsFor(["-V"]), []);
  const one = await buildProgram(["inspect"]);
  assertEquals(one.commands.map((c) => c.name()), ["inspect"]);
});

Deno.test("the help lists every command; a subcommand's help and usage errors work when loaded alone", async () => {
  const help = await runHarpe(["--help"]);
  assertEquals(help.code, 0);
  for (const name of (await buildProgram()).commands.map((c) => c.name())) {
    assertStringIncludes(help.stdout, `  ${name} `);
  }
  const inspect = await runHarpe(["inspect", "--help"]);
  assertEquals(inspect.code, 0);
  assertStringIncludes(inspect.stdout, "Usage: harpe inspect");
  const version = await runHarpe(["--version"]);
  assertEquals([version.code, version.stdout.trim()], [0, VERSION]);
  const unknown = await runHarpe(["no-such-command"]);
  assertEquals(unknown.code, 2);
  assertStringIncludes(unknown.stderr, "unknown command");
});
