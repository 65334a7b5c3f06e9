// Tests of lib/data: the seeded RNG, the packing loader (hand-packed streams, determinism, cursor
// restore), the tokenizer fixture through @huggingface/tokenizers, token files and `harpe tokenize`.

import { assert, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { listDir, PROJECT_ROOT, runHarpe, withTempDir } from "./harness.ts";
import { loadTokenizer, PackedLoader, readTokenFile, Rng, writeTokenFile } from "../lib/data/mod.ts";
import { FileFormatError, ShapeError } from "../lib/errors.ts";
import { writeSafetensors } from "../lib/safetensors/mod.ts";

const TOKENIZER = `${PROJECT_ROOT}fixtures/tiny/tokenizer.json`;

/** `harpe tokenize INPUTS --tokenizer TOKENIZER -o OUT [...extra]` as a subprocess. */
function tokenizeCli(inputs: string[], out: string, ...extra: string[]) {
  return runHarpe(["tokenize", ...inputs, "--tokenizer", TOKENIZER, "-o", out, ...extra]);
}

Deno.test("xoshiro128** matches the reference sequence for state [1, 2, 3, 4]", () => {
  const rng = Rng.fromState([1, 2, 3, 4]);
  // First outputs of the reference C implementation (hand-checked: rotl(2*5, 7)*9 = 11520, ...).
  assertEquals([rng.nextU32(), rng.nextU32(), rng.nextU32(), rng.nextU32()], [11520, 0, 5927040, 70819200]);
});

Deno.test("RNG state round-trips through JSON and continues the same sequence", () => {
  const a = new Rng(7);
  for (let i = 0; i < 10; i++) a.nextU32();
  const b = Rng.fromState(JSON.parse(JSON.stringify(a.state())));
  for (let i = 0; i < 100; i++) assertEquals(b.nextU32(), a.nextU32());
  assert(new Rng(7).nextU32() !== new Rng(8).nextU32(), "different seeds give different streams");
});

// Documents [10 11 12], [20], [30 31]; EOS = 1; file order: stream 10 11 12 1 20 1 30 31 1 10 11 ...
const DOCS = { tokens: new Uint16Array([10, 11, 12, 20, 30, 31]), docOffsets: [0, 3, 4, 6] };

Deno.test("loader packs documents with EOS and cuts overlapping T+1 windows (file order)", () => {
  const loader = new PackedLoader(DOCS, { seqLen: 3, batch: 2, seed: 0, eosId: 1, shuffle: false });
  const first = loader.next();
  assertEquals(Array.from(first.inputs), [10, 11, 12, 1, 20, 1]);
  assertEquals(Array.from(first.targets), [11, 12, 1, 20, 1, 30]);
  const second = loader.next();
  assertEquals(Array.from(second.inputs), [30, 31, 1, 10, 11, 12]);
  assertEquals(Array.from(second.targets), [31, 1, 10, 11, 12, 1]);
  assertEquals(loader.cursor().epoch, 1);
});

Deno.test("loader: every epoch visits every document once, in a seed-determined order", () => {
  const docs = {
    tokens: new Uint16Array(Array.from({ length: 40 }, (_, i) => 100 + i)),
    docOffsets: [] as number[],
  };
  for (let d = 0; d <= 20; d++) docs.docOffsets.push(d * 2);
  // Two tokens + EOS per document: 60 stream tokens per epoch = 20 sequences of T=3.
  const epochOf = (seed: number) => {
    const loader = new PackedLoader(docs, { seqLen: 3, batch: 1, seed, eosId: 1 });
    const seen: number[] = [];
    for (let i = 0; i < 20; i++) seen.push(...loader.next().inputs);
    return seen;
  };
  const a = epochOf(3);
  assertEquals(a, epochOf(3));
  assert(JSON.stringify(a) !== JSON.stringify(epochOf(4)), "another seed gives another order");
  const sorted = a.filter((t) => t !== 1).sort((x, y) => x - y);
  assertEquals(sorted, Array.from({ length: 40 }, (_, i) => 100 + i));
  for (let i = 0; i < a.length; i += 3) assertEquals(a[i + 1], a[i] + 1, "a document's tokens stay together");
});

Deno.test("loader cursor restores the exact continuation across epochs", () => {
  const options = { seqLen: 4, batch: 3, seed: 11, eosId: 1 };
  const loader = new PackedLoader(DOCS, options);
  for (let i = 0; i < 5; i++) loader.next();
  const cursor = JSON.parse(JSON.stringify(loader.cursor()));
  const expected = Array.from({ length: 6 }, () => Array.from(loader.next().inputs));
  const restored = new PackedLoader(DOCS, options, cursor);
  const actual = Array.from({ length: 6 }, () => Array.from(restored.next().inputs));
  assertEquals(actual, expected);
});

Deno.test("loader rejects a cursor that does not fit the data", () => {
  let error: unknown;
  try {
    new PackedLoader(DOCS, { seqLen: 4, batch: 1, seed: 1, eosId: 1 }, {
      epoch: 0,
      doc: 9,
      offset: 0,
      rng: [1, 2, 3, 4],
    });
  } catch (e) {
    error = e;
  }
  assert(error instanceof ShapeError, `expected ShapeError, got ${error}`);
});

Deno.test("tiny tokenizer fixture: loads in @huggingface/tokenizers, 512 tokens, round-trips corpus text", async () => {
  const tok = await loadTokenizer(TOKENIZER);
  assertEquals(tok.vocabSize, 512);
  assertEquals(tok.eosToken, "</s>");
  assertEquals(tok.eosId, 1);
  const text = (await Deno.readTextFile(`${PROJECT_ROOT}fixtures/corpus/1790_george_washington_n.txt`)).slice(
    0,
    3000,
  );
  const { Tokenizer } = await import("@huggingface/tokenizers");
  const raw = new Tokenizer(JSON.parse(await Deno.readTextFile(TOKENIZER)), {});
  const ids = tok.encode(text);
  assertEquals(raw.decode(ids), text);
  assert(
    ids.length < text.length / 2,
    `merges compress the text (${ids.length} tokens for ${text.length} chars)`,
  );
  assertEquals(raw.tokenize(" the"), ["Ġthe"]);
  assert(ids.every((id) => id >= 2 && id < 512), "no special tokens inside text");
});

Deno.test("token file round-trips and rejects an id outside the vocabulary", async () => {
  await withTempDir(async (dir) => {
    const meta = { tokenizer: "t.json", tokenizerSha256: "ab", vocabSize: 512, eosId: 1 };
    await writeTokenFile(`${dir}/a.tokens`, {
      tokens: new Uint32Array([5, 6, 7, 511]),
      docOffsets: [0, 1, 4],
    }, meta);
    const file = await readTokenFile(`${dir}/a.tokens`);
    assert(file.tokens instanceof Uint16Array, "vocab <= 65536 is stored as u16");
    assertEquals(Array.from(file.tokens), [5, 6, 7, 511]);
    assertEquals(Array.from(file.docOffsets), [0, 1, 4]);
    assertEquals(file.info.documents, 2);
    await writeTokenFile(`${dir}/b.tokens`, { tokens: new Uint32Array([5, 600]), docOffsets: [0, 2] }, {
      ...meta,
      vocabSize: 100,
    });
    await assertRejects(() => readTokenFile(`${dir}/b.tokens`), FileFormatError, "outside the vocabulary");
    await writeSafetensors(`${dir}/c.tokens`, [{
      name: "x",
      dtype: "U8",
      shape: [1],
      data: new Uint8Array(1),
    }]);
    await assertRejects(() => readTokenFile(`${dir}/c.tokens`), FileFormatError, "not a token file");
  });
});

Deno.test("harpe tokenize: text + JSONL into one token file whose documents match the tokenizer", async () => {
  await withTempDir(async (dir) => {
    const texts = ["Hello world.\nSecond line.", "The people of the United States", "", "Ünïcode ✓ text"];
    await Deno.writeTextFile(`${dir}/a.txt`, texts[0]);
    await Deno.writeTextFile(
      `${dir}/b.jsonl`,
      texts.slice(1).map((text) => JSON.stringify({ text, id: 1 })).join("\n"),
    );
    const result = await tokenizeCli([`${dir}/a.txt`, `${dir}/b.jsonl`], `${dir}/out.tokens`, "--json");
    assertEquals(result.code, 0, result.stderr);
    const summary = JSON.parse(result.stdout);
    assertEquals(summary.documents, 4);
    const file = await readTokenFile(`${dir}/out.tokens`);
    const tok = await loadTokenizer(TOKENIZER);
    const expected = texts.map((t) => tok.encode(t));
    for (let d = 0; d < texts.length; d++) {
      const ids = Array.from(file.tokens.subarray(file.docOffsets[d], file.docOffsets[d + 1]));
      assertEquals(ids, expected[d], `document ${d}`);
    }
    assertEquals(file.info.tokenizerSha256, tok.sha256);
    assertEquals(file.info.eosId, 1);
  });
});

Deno.test("harpe tokenize: a bad JSONL line is exit 2 naming file and line, and writes nothing", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/bad.jsonl`, '{"text": "fine"}\n{"text": oops}\n');
    const result = await tokenizeCli([`${dir}/bad.jsonl`], `${dir}/out.tokens`);
    assertEquals(result.code, 2);
    assertStringIncludes(result.stderr, "bad.jsonl:2");
    assertEquals(result.stderr.trim().split("\n").length, 1);
    await Deno.writeTextFile(`${dir}/notext.jsonl`, '{"text": "fine"}\n\n{"body": "x"}\n');
    const missing = await tokenizeCli([`${dir}/notext.jsonl`], `${dir}/out.tokens`);
    assertEquals(missing.code, 2);
    assertStringIncludes(missing.stderr, "notext.jsonl:3");
    assertStringIncludes(missing.stderr, '"text"');
    assertEquals(await listDir(dir), ["bad.jsonl", "notext.jsonl"]);
  });
});

Deno.test("harpe tokenize: an existing output needs --force; unknown file types are exit 2", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/a.md`, "# Title\n\nSome *Markdown* text.");
    await Deno.writeTextFile(`${dir}/out.tokens`, "keep me");
    const refused = await tokenizeCli([`${dir}/a.md`], `${dir}/out.tokens`);
    assertEquals(refused.code, 2);
    assertStringIncludes(refused.stderr, "--force");
    assertEquals(await Deno.readTextFile(`${dir}/out.tokens`), "keep me");
    const forced = await tokenizeCli([`${dir}/a.md`], `${dir}/out.tokens`, "--force");
    assertEquals(forced.code, 0, forced.stderr);
    const file = await readTokenFile(`${dir}/out.tokens`);
    const tok = await loadTokenizer(TOKENIZER);
    assertEquals(Array.from(file.tokens), tok.encode("# Title\n\nSome *Markdown* text."));
    await Deno.writeTextFile(`${dir}/a.csv`, "x,y");
    const csv = await tokenizeCli([`${dir}/a.csv`], `${dir}/c.tokens`);
    assertEquals(csv.code, 2);
    assertStringIncludes(csv.stderr, "unknown file type");
    assertEquals(await listDir(dir), ["a.csv", "a.md", "out.tokens"]);
  });
});

Deno.test("token file: writing a view of a larger array writes only the view", async () => {
  await withTempDir(async (dir) => {
    const backing = new Uint16Array([9, 9, 5, 6, 7, 9]);
    const meta = { tokenizer: "t.json", tokenizerSha256: "ab", vocabSize: 512, eosId: 1 };
    await writeTokenFile(`${dir}/v.tokens`, { tokens: backing.subarray(2, 5), docOffsets: [0, 3] }, meta);
    assertEquals(Array.from((await readTokenFile(`${dir}/v.tokens`)).tokens), [5, 6, 7]);
  });
});
