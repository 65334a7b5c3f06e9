// bench/train's --granularity option on the CPU engine with the tiny shape (2 layers, 4 query / 2 key
// heads, V 512): what the JSON records, that both paths train the same model, and the peer's absence.

import { run } from "../bench/train/main.ts";
import { ConfigError } from "../lib/errors.ts";
import { assert, assertAlmostEquals, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { withTempDir } from "./harness.ts";

/** One length of 16 tokens, one timed step, no warm-up: the first loss is that of the initial weights. */
const TINY = ["--device", "cpu", "--shape", "tiny", "--lengths", "16", "--steps", "1", "--warmup", "0"];

async function bench(dir: string, granularity: string, side: string) {
  const out = `${dir}/${granularity}.json`;
  await run([...TINY, "--side", side, "--granularity", granularity, "--out", out]);
  return JSON.parse(await Deno.readTextFile(out));
}

Deno.test("bench train: --granularity query gives each query head its group's base; kv is the default", async () => {
  await withTempDir(async (dir) => {
    const out = `${dir}/default.json`;
    await run([...TINY, "--side", "harpe", "--out", out]);
    const kv = JSON.parse(await Deno.readTextFile(out));
    const query = await bench(dir, "query", "both");
    assertEquals(kv.granularity, "kv");
    assertEquals(kv.head_bases, [1e6, 2.3e6]);
    assertEquals(query.granularity, "query");
    assertEquals(query.head_bases, [1e6, 1e6, 2.3e6, 2.3e6]);
    // Same weights, tokens and rotations through the other path: the initial loss agrees up to the
    // bf16 rounding of the separate rotated-key buffer (random init: near ln 512 = 6.24).
    const [lossKv, lossQuery] = [kv.harpe[0].loss, query.harpe[0].loss];
    assertAlmostEquals(lossKv, Math.log(512), 0.1);
    assertAlmostEquals(lossQuery, lossKv, 1e-3);
    // The query path holds H rotated keys (and their gradient) where kv rotates K keys in place.
    assert(query.harpe[0].estimate_bytes > kv.harpe[0].estimate_bytes, "query estimate above kv");
    assertEquals(query.peer, [{ t: 16, error: "kv only" }]);
    assertStringIncludes(query.peer_note, "--granularity kv");
  });
});

Deno.test("bench train: --granularity query with --side peer, or an unknown granularity, is refused", async () => {
  await assertRejects(() => run([...TINY, "--side", "peer", "--granularity", "query"]), ConfigError, "peer");
  await assertRejects(() => run([...TINY, "--granularity", "head"]), ConfigError, "kv or query");
});
