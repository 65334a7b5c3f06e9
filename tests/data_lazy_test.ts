// Tests of lazy token-file reading: batches drawn from a token file read by byte range are identical to
// the batches recorded from the whole-file loader (before the switch), and drawing them keeps RSS small.

import { assert, assertEquals, assertThrows } from "./assert.ts";
import { withTempDir } from "./harness.ts";
import {
  openTokenFile,
  PackedLoader,
  READ_BUFFER_TOKENS,
  readTokenFile,
  writeTokenFile,
} from "../lib/data/mod.ts";
import { FileFormatError } from "../lib/errors.ts";
import { SafetensorsWriter } from "../lib/safetensors/mod.ts";
import { sha256Hex } from "../lib/util/hash.ts";

/** A corpus of `docs` documents with pseudo-random lengths 0..maxLength-1 (empty ones included) and ids
 * below `vocab`, from a fixed linear congruential generator (independent of the loader's RNG). */
function corpus(
  docs: number,
  options: { maxLength: number; vocab: number },
): { tokens: Uint32Array; docOffsets: number[] } {
  let x = 12345;
  const next = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 8;
  const docOffsets = [0];
  for (let d = 0; d < docs; d++) docOffsets.push(docOffsets[d] + next() % options.maxLength);
  const tokens = Uint32Array.from({ length: docOffsets[docs] }, () => 2 + next() % (options.vocab - 2));
  return { tokens, docOffsets };
}

/** SHA-256 of `count` batches (inputs then targets of each) followed by the loader's final cursor. */
async function batchesDigest(loader: PackedLoader, count: number): Promise<string> {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const { inputs, targets } = loader.next();
    parts.push(new Uint8Array(inputs.buffer), new Uint8Array(targets.buffer));
  }
  parts.push(new TextEncoder().encode(JSON.stringify(loader.cursor())));
  const all = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.byteLength;
  }
  return await sha256Hex(all);
}

const CASES = [
  { vocab: 60000, docs: 50, maxLength: 40, seed: 1, seqLen: 7, batch: 3, batches: 60, shuffle: true },
  { vocab: 100000, docs: 30, maxLength: 300, seed: 2, seqLen: 64, batch: 2, batches: 40, shuffle: true },
  { vocab: 512, docs: 9, maxLength: 5, seed: 3, seqLen: 1, batch: 5, batches: 30, shuffle: true },
  { vocab: 70000, docs: 20, maxLength: 100, seed: 4, seqLen: 13, batch: 4, batches: 25, shuffle: false },
];

/** Digests of CASES (each: its batches from the start, then from a cursor saved after 17 batches),
 * recorded from the whole-file loader of commit 5da6c9e, before tokens were read by range. */
const RECORDED = [
  "0bd182688d06e108f443bd7a5ec01835b11e27563ce9babb2f8d849c4ad213b4",
  "834bf70b77b2f3c74ec928aa8b2eece4a84081d58d245656c9d35f55044ebc08",
  "316e8d6e133ea173eefb373b838b3c6dd99483331d2890cc76482a411b281949",
  "468b3e7ab4ede6c387937c704ffffc7303baf5c328b452b87d7335a0626b1ec6",
  "e9dfce2038c9cefd70a4f967472de6760a1645cdf8e629b5ea9a8d45b02cde08",
  "351b2c4e5f65d3cd23fd73a8dd5f8278ab649afbb112a9f6147dcad3d34ad516",
  "ee2aec33e088fb53284cf498f11277a84af16e7884413684cc78d5991f72c7c8",
  "06d7e7f4d5efd934d8b1dae147ecb1f7e362b2baa3ce5c977dd0de7e4a19d7be",
];

/** The digests of every case, with the loader reading tokens through `open`. */
async function digestsOf(
  dir: string,
  open: (path: string) => Promise<{ data: ConstructorParameters<typeof PackedLoader>[0]; close(): void }>,
): Promise<string[]> {
  const digests: string[] = [];
  for (const [i, c] of CASES.entries()) {
    const path = `${dir}/${i}.tokens`;
    await writeTokenFile(path, corpus(c.docs, c), {
      tokenizer: "t.json",
      tokenizerSha256: "ab",
      vocabSize: c.vocab,
      eosId: 1,
    });
    const { data, close } = await open(path);
    try {
      const options = { seqLen: c.seqLen, batch: c.batch, seed: c.seed, eosId: 1, shuffle: c.shuffle };
      digests.push(await batchesDigest(new PackedLoader(data, options), c.batches));
      const first = new PackedLoader(data, options);
      for (let b = 0; b < 17; b++) first.next();
      const cursor = JSON.parse(JSON.stringify(first.cursor()));
      digests.push(await batchesDigest(new PackedLoader(data, options, cursor), c.batches));
    } finally {
      close();
    }
  }
  return digests;
}

Deno.test("lazily read token file: batches and resumed batches bit-identical to the whole-file loader's", async () => {
  await withTempDir(async (dir) => {
    const lazy = await digestsOf(dir, async (path) => {
      const file = await openTokenFile(path);
      return { data: file, close: () => file.close() };
    });
    assertEquals(lazy, RECORDED);
    const inMemory = await digestsOf(
      dir,
      async (path) => ({ data: await readTokenFile(path), close: () => {} }),
    );
    assertEquals(inMemory, RECORDED);
  });
});

/** The first index where `a` and `b` differ, or -1 when they are equal (short failure messages). */
function firstDifference(a: Int32Array, b: Int32Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

Deno.test("lazily read token file: documents longer than the read buffer match the hand-packed stream", async () => {
  await withTempDir(async (dir) => {
    const lengths = [2 * READ_BUFFER_TOKENS + 123, 10, 0, READ_BUFFER_TOKENS + 7];
    const docOffsets = [0];
    for (const n of lengths) docOffsets.push(docOffsets[docOffsets.length - 1] + n);
    const tokens = Uint32Array.from({ length: docOffsets[lengths.length] }, (_, i) => 2 + (i * 7919) % 99990);
    await writeTokenFile(`${dir}/long.tokens`, { tokens, docOffsets }, {
      tokenizer: "t.json",
      tokenizerSha256: "ab",
      vocabSize: 100000,
      eosId: 1,
    });
    // File order with EOS after each document, three times (three epochs).
    const epoch: number[] = [];
    for (let d = 0; d < lengths.length; d++) {
      for (let i = docOffsets[d]; i < docOffsets[d + 1]; i++) epoch.push(tokens[i]);
      epoch.push(1);
    }
    const stream = Int32Array.from([...epoch, ...epoch, ...epoch]);
    const T = 50000;
    const file = await openTokenFile(`${dir}/long.tokens`);
    try {
      const loader = new PackedLoader(file, { seqLen: T, batch: 2, seed: 0, eosId: 1, shuffle: false });
      for (let b = 0; b < 5; b++) {
        const { inputs, targets } = loader.next();
        for (let s = 0; s < 2; s++) {
          const at = (b * 2 + s) * T;
          assertEquals(firstDifference(inputs.subarray(s * T, (s + 1) * T), stream.subarray(at, at + T)), -1);
          assertEquals(
            firstDifference(targets.subarray(s * T, (s + 1) * T), stream.subarray(at + 1, at + T + 1)),
            -1,
          );
        }
      }
    } finally {
      file.close();
    }
  });
});

Deno.test("lazily read token file: an id outside the vocabulary fails when its range is read", async () => {
  await withTempDir(async (dir) => {
    await writeTokenFile(`${dir}/bad.tokens`, {
      tokens: new Uint32Array([5, 6, 7, 600, 8]),
      docOffsets: [0, 3, 5],
    }, {
      tokenizer: "t.json",
      tokenizerSha256: "ab",
      vocabSize: 512,
      eosId: 1,
    });
    const file = await openTokenFile(`${dir}/bad.tokens`);
    try {
      const loader = new PackedLoader(file, { seqLen: 3, batch: 1, seed: 0, eosId: 1, shuffle: false });
      assertEquals(Array.from(loader.next().inputs), [5, 6, 7]);
      const error = assertThrows(
        () => loader.next(),
        FileFormatError,
        "token id 600 (token 3) is outside the vocabulary of 512",
      );
      assert(error instanceof FileFormatError);
    } finally {
      file.close();
    }
  });
});

/** 50 M u16 tokens (100 MB) in 50,000 documents of 1,000: twice the RSS bound below, and large enough
 * that reading the whole file (as the loader once did) would break it several times over. */
const BIG_TOKENS = 50_000_000;
const BIG_DOC_TOKENS = 1000;
/** Allowed RSS growth from opening the file to the end of drawing batches: a third of the file. The read
 * buffer (128 KiB), doc offsets and order (0.8 MB) stay far below it; most of what is measured is
 * uncollected garbage of the drawn batches (64 KiB each). */
const RSS_GROWTH_BOUND = 32 * 1024 * 1024;

Deno.test("lazily read token file: drawing batches from a 100 MB token file keeps RSS small", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/big.tokens`;
    const docs = BIG_TOKENS / BIG_DOC_TOKENS;
    const offsets = BigInt64Array.from({ length: docs + 1 }, (_, d) => BigInt(d * BIG_DOC_TOKENS));
    const writer = await SafetensorsWriter.create(path, [
      { name: "tokens", dtype: "U16", shape: [BIG_TOKENS] },
      { name: "doc_offsets", dtype: "I64", shape: [docs + 1] },
    ], {
      metadata: { format: "harpe-tokens", format_version: "1", vocab_size: "512", eos_id: "1" },
    });
    const chunk = Uint16Array.from({ length: 1 << 20 }, (_, i) => 2 + i % 510);
    const chunks = function* () {
      for (let at = 0; at < BIG_TOKENS; at += chunk.length) {
        yield new Uint8Array(chunk.buffer, 0, Math.min(chunk.length, BIG_TOKENS - at) * 2);
      }
    };
    await writer.writeChunks("tokens", chunks());
    await writer.write("doc_offsets", new Uint8Array(offsets.buffer));
    await writer.finish();

    // In a process of its own: `deno test --parallel` runs other modules in this process, whose
    // allocations would count in this one's RSS.
    const probe = new URL("./data_lazy_rss_probe.ts", import.meta.url).pathname;
    const run = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--cached-only", probe, path],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(run.stderr);
    assert(run.success, `the RSS probe failed: ${stderr}`);
    const { growth, tokens } = JSON.parse(new TextDecoder().decode(run.stdout));
    console.log(`RSS +${(growth / 2 ** 20).toFixed(1)} MiB over ${tokens} tokens drawn`);
    assert(
      growth < RSS_GROWTH_BOUND,
      `RSS grew by ${growth} bytes drawing batches, bound ${RSS_GROWTH_BOUND}`,
    );
  });
});
