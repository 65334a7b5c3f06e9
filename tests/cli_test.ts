// The command line's contract: --help works, unknown options are bad input (exit code 2).

import { assertEquals, assertStringIncludes } from "./assert.ts";
import { runHarpe } from "./harness.ts";

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
