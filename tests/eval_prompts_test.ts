// Evaluation building blocks on their own: length and depth parsing, needles, prompt fitting,
// passkey and NIAH prompts, scorers, sliding windows, CSV and the resumable results store.

import { assert, assertEquals, assertStringIncludes, assertThrows } from "./assert.ts";
import { withTempDir } from "./harness.ts";
import { ConfigError, FileFormatError, ShapeError } from "../lib/errors.ts";
import { Rng } from "../lib/data/rng.ts";
import { formatLength, parseLengths } from "../lib/eval/lengths.ts";
import { cellSeed, gridCells, parseDepths } from "../lib/eval/grid.ts";
import { byteCodec } from "../lib/eval/codec.ts";
import { drawNeedles, randomUuid } from "../lib/eval/needles.ts";
import { NOISE_UNIT, splitSentences } from "../lib/eval/haystack.ts";
import { assemblePrompt, buildPrompt } from "../lib/eval/prompt.ts";
import { PASSKEY_SUFFIX, passkeyCase } from "../lib/eval/passkey.ts";
import { NIAH_SPECS, NIAH_TASKS, niahCase } from "../lib/eval/niah.ts";
import { scoreAll, scorePasskey } from "../lib/eval/scoring.ts";
import { slidingWindows } from "../lib/eval/perplexity.ts";
import { toCsv } from "../lib/eval/csv.ts";
import { RESULTS_FILE, ResultsStore } from "../lib/eval/results_store.ts";

const SENTENCES = splitSentences(
  "The first sentence is about the weather today. The second one talks about the harvest in autumn. " +
    "A third sentence mentions the river that runs through the valley. Finally the fourth closes it all.",
);

Deno.test("parseLengths: ranges are powers of two, lists and units", () => {
  assertEquals(parseLengths("4k..32k"), [4096, 8192, 16384, 32768]);
  assertEquals(parseLengths("2k,4k,8k"), [2048, 4096, 8192]);
  assertEquals(parseLengths("32..128"), [32, 64, 128]);
  assertEquals(parseLengths("3000, 2k,2048"), [2048, 3000]);
  assertEquals(parseLengths("1m"), [1048576]);
  assertThrows(() => parseLengths("4k..3k"), ConfigError, "power of two");
  assertThrows(() => parseLengths("3k..8k"), ConfigError, "power of two");
  assertThrows(() => parseLengths("4kk"), ConfigError, "Cannot parse");
  assertThrows(() => parseLengths("2k,,4k"), ConfigError, "Empty");
  assertEquals(formatLength(131072), "128k");
  assertEquals(formatLength(100), "100");
});

Deno.test("parseDepths and the grid", () => {
  assertEquals(parseDepths("0%,50%,100%"), [0, 0.5, 1]);
  assertEquals(parseDepths("1,0.25,0"), [0, 0.25, 1]);
  assertThrows(() => parseDepths("1.5"), ConfigError, "depth");
  const cells = gridCells({
    checkpoints: ["a", "b"],
    tasks: ["passkey"],
    lengths: [64, 128],
    depths: [0, 1],
    samples: 3,
  });
  assertEquals(cells.length, 2 * 2 * 2 * 3);
  assertEquals(cells[0], { checkpoint: "a", task: "passkey", length: 64, depth: 0, sample: 0 });
  assertEquals(cellSeed(1, "t", 64, 0.5, 2), cellSeed(1, "t", 64, 0.5, 2));
  assert(cellSeed(1, "t", 64, 0.5, 2) !== cellSeed(1, "t", 64, 0.5, 3));
});

Deno.test("needles: distinct, well-formed, seeded", () => {
  const numbers = drawNeedles(new Rng(1), "numbers", 200);
  assertEquals(new Set(numbers).size, 200);
  assert(numbers.every((n) => /^[1-9]\d{6}$/.test(n)), "7-digit numbers");
  assertEquals(drawNeedles(new Rng(1), "numbers", 200), numbers);
  const words = drawNeedles(new Rng(2), "words", 500);
  assertEquals(new Set(words).size, 500);
  assert(words.every((w) => /^[a-z]+-[a-z]+$/.test(w)), "adjective-noun words");
  assert(
    /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(randomUuid(new Rng(3))),
  );
  const exclude = new Set(drawNeedles(new Rng(4), "words", 100));
  assert(drawNeedles(new Rng(4), "words", 100, exclude).every((w) => !exclude.has(w)), "exclude respected");
  assertThrows(() => drawNeedles(new Rng(5), "words", 20_000), ShapeError, "distinct");
});

Deno.test("assemblePrompt puts needles at their depth", () => {
  const parts = { prefix: "P|", suffix: "|Q", haystack: { unit: (i: number) => `u${i}`, separator: " " } };
  assertEquals(assemblePrompt({ ...parts, needles: [{ text: "N", depth: 0 }] }, 4), "P|N u0 u1 u2 u3|Q");
  assertEquals(assemblePrompt({ ...parts, needles: [{ text: "N", depth: 0.5 }] }, 4), "P|u0 u1 N u2 u3|Q");
  assertEquals(assemblePrompt({ ...parts, needles: [{ text: "N", depth: 1 }] }, 4), "P|u0 u1 u2 u3 N|Q");
  assertEquals(
    assemblePrompt({ ...parts, needles: [{ text: "A", depth: 0.75 }, { text: "B", depth: 0.25 }] }, 4),
    "P|u0 B u1 u2 A u3|Q",
  );
});

Deno.test("buildPrompt fills the budget without exceeding it", () => {
  const codec = byteCodec();
  for (const budget of [400, 1000, 4096]) {
    const { parts, answer } = passkeyCase(new Rng(budget), 0.5);
    const prompt = buildPrompt(codec, parts, budget);
    assert(prompt.tokens.length <= budget, `${prompt.tokens.length} <= ${budget}`);
    assert(prompt.tokens.length > budget - NOISE_UNIT.length - 2, `fills ${budget}: ${prompt.tokens.length}`);
    assertEquals(prompt.tokens, Array.from(new TextEncoder().encode(prompt.text)));
    assert(prompt.text.endsWith(PASSKEY_SUFFIX));
    assertEquals(prompt.text.split(`The pass key is ${answer}.`).length, 2, "key appears once");
  }
  assertThrows(() => buildPrompt(codec, passkeyCase(new Rng(1), 0).parts, 100), ShapeError, "too short");
});

Deno.test("passkey: key of the chosen digits near the chosen depth", () => {
  const codec = byteCodec();
  for (const depth of [0, 0.3, 1]) {
    const { parts, answer } = passkeyCase(new Rng(9), depth, { digits: 3 });
    assert(/^[1-9]\d\d$/.test(answer));
    const { text } = buildPrompt(codec, parts, 3000);
    const at = text.indexOf(`The pass key is ${answer}`);
    const body = text.length - parts.prefix.length - parts.suffix.length;
    const relative = (at - parts.prefix.length) / body;
    assert(Math.abs(relative - depth) < 0.1, `depth ${depth}: needle at ${relative}`);
  }
});

Deno.test("NIAH: every task's needles, answers and question", () => {
  const codec = byteCodec();
  for (const task of NIAH_TASKS) {
    const spec = NIAH_SPECS[task];
    const { parts, answers } = niahCase(task, new Rng(11), 0.5, SENTENCES);
    assertEquals(answers.length, spec.queries * spec.values, task);
    const { text } = buildPrompt(codec, parts, 6000);
    const noun = spec.valueKind;
    for (const answer of answers) {
      assertEquals(text.split(answer).length, 2, `${task}: answer ${answer} appears once`);
      assertStringIncludes(text, ` is: ${answer}.`);
    }
    assertStringIncludes(text, `What are all the special magic ${noun} for `);
    assert(text.endsWith("mentioned in the provided text are"), task);
    const needles = text.split(`One of the special magic ${noun} for `).length - 1;
    if (spec.haystack === "needles") assert(needles > 20, `${task}: haystack of needles (${needles})`);
    else assertEquals(needles, spec.keys * spec.values, `${task}: needle count`);
    if (spec.haystack === "noise") assertStringIncludes(text, NOISE_UNIT);
    if (spec.haystack === "essay") assertStringIncludes(text, "harvest in autumn");
    const asked = text.slice(text.lastIndexOf("What are all"));
    const answerKey = text.slice(0, text.indexOf(` is: ${answers[0]}.`)).split(" for ").pop()!;
    assertStringIncludes(asked, answerKey, `${task}: question names the key of the first answer`);
  }
  const a = niahCase("niah_multikey_3", new Rng(5), 0.5, SENTENCES);
  const b = niahCase("niah_multikey_3", new Rng(5), 0.5, SENTENCES);
  assertEquals(buildPrompt(codec, a.parts, 3000).text, buildPrompt(codec, b.parts, 3000).text, "seeded");
});

Deno.test("scorers: exact match only", () => {
  assertEquals(scorePasskey(" 68491. Remember it.", "68491"), 1);
  assertEquals(scorePasskey("68491", "68491"), 1);
  assertEquals(scorePasskey(" 684910", "68491"), 0);
  assertEquals(scorePasskey(" 12 then 68491", "68491"), 0);
  assertEquals(scorePasskey(" none", "68491"), 0);
  assertEquals(scoreAll(" 1234567 and 7654321.", ["1234567", "7654321"]), 1);
  assertEquals(scoreAll(" 1234567.", ["1234567", "7654321"]), 0.5);
  assertEquals(scoreAll(" 91234567", ["1234567"]), 0);
  assertEquals(scoreAll(" Tender-Moon", ["tender-moon"]), 1);
  assertEquals(scoreAll("anything", []), 0);
});

Deno.test("slidingWindows: every token scored once, context at most L", () => {
  assertEquals(slidingWindows(10, 6, 2), [
    { start: 0, end: 6, scoreFrom: 1 },
    { start: 2, end: 8, scoreFrom: 6 },
    { start: 4, end: 10, scoreFrom: 8 },
  ]);
  assertEquals(slidingWindows(5, 8, 256), [{ start: 0, end: 5, scoreFrom: 1 }]);
  for (const [n, length, stride] of [[1000, 64, 256], [1000, 512, 256], [777, 100, 7], [64, 64, 256]]) {
    const scored = new Array(n).fill(0);
    for (const w of slidingWindows(n, length, stride)) {
      assert(w.end - w.start <= length && w.scoreFrom > w.start);
      for (let i = w.scoreFrom; i < w.end; i++) scored[i]++;
      if (w.start > 0) assert(w.scoreFrom - w.start >= length - Math.min(stride, length / 2), "context kept");
    }
    assertEquals(scored, [0, ...new Array(n - 1).fill(1)], `n=${n} L=${length}`);
  }
});

Deno.test("toCsv quotes what needs quoting", () => {
  assertEquals(toCsv(["a", "b"], [["x,y", 1], ['say "hi"', null]]), 'a,b\n"x,y",1\n"say ""hi""",\n');
});

Deno.test("ResultsStore: appends, resumes, drops a torn last line", async () => {
  await withTempDir(async (dir) => {
    const cell = { checkpoint: "c", task: "passkey", length: 64, depth: 0.5, sample: 0 };
    const store = await ResultsStore.open(dir);
    assert(!store.has(cell, "seed=1"));
    await store.append({ ...cell, variant: "seed=1", score: 1, seconds: 0.1 });
    await Deno.writeTextFile(`${dir}/${RESULTS_FILE}`, '{"checkpoint": "c", "ta', { append: true });
    const again = await ResultsStore.open(dir);
    assert(again.has(cell, "seed=1"));
    assert(!again.has(cell, "seed=2"), "other settings are not reused");
    assert(!again.has({ ...cell, sample: 1 }, "seed=1"));
    assertEquals(again.all().length, 1);
    assert((await Deno.readTextFile(`${dir}/${RESULTS_FILE}`)).endsWith("}\n"), "torn line removed");
    await Deno.writeTextFile(`${dir}/${RESULTS_FILE}`, "garbage\n" + '{"a":1}\n');
    await ResultsStore.open(dir).then(
      () => assert(false, "should throw"),
      (e) => assert(e instanceof FileFormatError),
    );
  });
});
