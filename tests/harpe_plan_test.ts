// Plans: YAML round trip (float64 bases exact), validation errors that name the file and field.

import { assertEquals, assertThrows } from "./assert.ts";
import { FileFormatError, ShapeError } from "../lib/errors.ts";
import { parsePlan, type Plan, stringifyPlan } from "../lib/harpe/mod.ts";
import { sha256Hex } from "../lib/util/hash.ts";

const PLAN: Plan = {
  format: 1,
  toolVersion: "0.1.0",
  schedule: "explicit",
  parameters: {},
  granularity: "kv",
  targetLength: 131072,
  headBases: [1022121.8898931267, 1e6 / 3, 5e6, 12345.678901234567],
  source: {
    checkpoint: "models/x",
    configSha256: "0123456789abcdef".repeat(4),
    numHeads: 8,
    numKvHeads: 4,
    rotaryDim: 128,
    ropeTheta: 10000,
    maxPositionEmbeddings: 4096,
  },
};

Deno.test("a plan survives YAML exactly, float64 bases included", () => {
  const text = stringifyPlan(PLAN);
  assertEquals(parsePlan(text), PLAN);
  assertEquals(parsePlan(text).headBases[1], 1e6 / 3);
});

Deno.test("bad plans name the file and the field", () => {
  const text = stringifyPlan(PLAN);
  const bad = text.replace("- 5000000\n", "- -3\n");
  assertThrows(
    () => parsePlan(bad, { file: "plan.yaml" }),
    FileFormatError,
    "plan.yaml: head_bases[2] must be a positive number",
  );
  assertThrows(
    () => parsePlan(text.replace("granularity: kv", "granularity: heads"), { file: "p.yaml" }),
    FileFormatError,
    'p.yaml: granularity must be "kv" or "query"',
  );
  assertThrows(
    () => parsePlan(text.replace(/config_sha256: \w+/, "config_sha256: xyz"), { file: "p.yaml" }),
    FileFormatError,
    "p.yaml: source.config_sha256 must be 64 hex digits",
  );
  assertThrows(
    () => parsePlan("head_bases: [1, 2", { file: "p.yaml" }),
    FileFormatError,
    "p.yaml: is not valid YAML",
  );
  assertThrows(() => parsePlan("[]", { file: "p.yaml" }), FileFormatError, "p.yaml: must be a mapping");
  // 3 bases for 4 key/value heads
  const short = text.replace("  - 12345.678901234567\n", "");
  assertThrows(() => parsePlan(short, { file: "p.yaml" }), ShapeError, "needs 4");
});

Deno.test("sha256Hex is SHA-256 as lowercase hex", async () => {
  assertEquals(
    await sha256Hex(new TextEncoder().encode("abc")),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
});
