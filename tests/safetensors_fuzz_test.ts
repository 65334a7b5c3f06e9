// Seeded fuzzing of the reader: mutated header bytes, JSON fields, length prefixes and file sizes of
// valid files must each end in a read within the file's bounds or a FileFormatError, nothing else.

import { assert } from "./assert.ts";
import { withTempDir } from "./harness.ts";
import { randomBytes, rawSafetensors, seededRandom } from "./safetensors_files.ts";
import { FileFormatError } from "../lib/errors.ts";
import { SafetensorsFile } from "../lib/safetensors/mod.ts";

const SEED = 20261129;
const CASES = 1500;
const TIME_LIMIT_MS = 10_000;

type Json = Record<string, unknown>;
type Random = () => number;

/** Valid files to start from: header JSON and data. */
function baseFiles(random: Random): { header: Json; data: Uint8Array }[] {
  return [
    {
      header: {
        __metadata__: { format: "pt", source: "fuzz" },
        "w.f32": { dtype: "F32", shape: [2, 3], data_offsets: [0, 24] },
        "w.bf16": { dtype: "BF16", shape: [4], data_offsets: [24, 32] },
        "w.i64": { dtype: "I64", shape: [1, 1], data_offsets: [32, 40] },
        "w.e4m3": { dtype: "F8_E4M3", shape: [3], data_offsets: [40, 43] },
        "w.bool": { dtype: "BOOL", shape: [1], data_offsets: [43, 44] },
      },
      data: randomBytes(random, 44),
    },
    {
      header: {
        empty: { dtype: "F16", shape: [0, 7], data_offsets: [0, 0] },
        scalar: { dtype: "U32", shape: [], data_offsets: [0, 4] },
        f64: { dtype: "F64", shape: [2], data_offsets: [4, 20] },
      },
      data: randomBytes(random, 20),
    },
    { header: {}, data: new Uint8Array(0) },
  ];
}

const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)];
const int = (random: Random, n: number) => Math.floor(random() * n);

const WEIRD_VALUES: readonly unknown[] = [
  -1,
  0,
  1,
  3,
  1.5,
  -0.5,
  2 ** 31,
  2 ** 32 + 1,
  2 ** 53,
  2 ** 53 + 2,
  2 ** 64,
  1e308,
  "F32",
  "BF16",
  "F9",
  "",
  null,
  true,
  [],
  [0],
  [0, 0],
  [1, 2, 3],
  [-1, 4],
  [2 ** 53, 2 ** 53],
  {},
  { a: 1 },
  "x".repeat(300),
];

/** Changes one JSON field of one entry (dtype, shape, data_offsets, metadata, or the entry itself). */
function mutateJson(random: Random, header: Json): Json {
  const out = structuredClone(header);
  const names = Object.keys(out);
  if (names.length === 0 || random() < 0.1) {
    out[pick(random, ["new", "__metadata__", "w.f32"])] = pick(random, WEIRD_VALUES);
    return out;
  }
  const name = pick(random, names);
  const entry = out[name];
  if (typeof entry !== "object" || entry === null || random() < 0.1) {
    out[name] = pick(random, WEIRD_VALUES);
    return out;
  }
  const fields = Object.keys(entry as Json);
  const field = random() < 0.2 ? "extra" : pick(random, fields);
  const record = entry as Json;
  const value = record[field];
  if (Array.isArray(value) && value.length > 0 && random() < 0.6) {
    const copy = [...value];
    copy[int(random, copy.length)] = random() < 0.5 ? pick(random, WEIRD_VALUES) : int(random, 64);
    record[field] = copy;
  } else record[field] = pick(random, WEIRD_VALUES);
  return out;
}

/** One mutated file made from a valid one; which mutation is chosen by the generator. */
function mutate(random: Random, base: { header: Json; data: Uint8Array }): Uint8Array {
  const valid = rawSafetensors(base.header, base.data);
  const headerEnd = valid.byteLength - base.data.byteLength;
  switch (int(random, 6)) {
    case 0: { // overwrite a few bytes in the length prefix or header
      const out = valid.slice();
      for (let k = int(random, 4) + 1; k > 0; k--) out[int(random, headerEnd)] = int(random, 256);
      return out;
    }
    case 1: { // a different length prefix
      const out = valid.slice();
      const view = new DataView(out.buffer);
      const length = view.getBigUint64(0, true);
      const choices = [
        length + BigInt(int(random, 17) - 8),
        BigInt(int(random, out.byteLength + 16)),
        BigInt(int(random, 2 ** 30)) << BigInt(int(random, 34)),
        0xffffffffffffffffn - BigInt(int(random, 3)),
      ];
      const chosen = pick(random, choices);
      view.setBigUint64(0, chosen < 0n ? 0n : chosen, true);
      return out;
    }
    case 2: { // truncate or extend the file
      if (random() < 0.5) return valid.slice(0, int(random, valid.byteLength));
      const out = new Uint8Array(valid.byteLength + int(random, 32) + 1);
      out.set(valid);
      return out;
    }
    case 3: // a JSON field changed, length kept consistent so validation runs deep
      return rawSafetensors(mutateJson(random, base.header), base.data);
    case 4: { // characters inserted or deleted in the header text, length adjusted
      const text = JSON.stringify(base.header);
      const at = int(random, text.length + 1);
      const edited = random() < 0.5
        ? text.slice(0, at) + pick(random, ['"', "{", "}", ",", ":", "\\", "\u00e9", "0", "-", "]", " "]) +
          text.slice(at)
        : text.slice(0, at) + text.slice(at + 1 + int(random, 3));
      return rawSafetensors(edited, base.data);
    }
    default: { // a key duplicated textually
      const text = JSON.stringify(base.header);
      const keys = Object.keys(base.header);
      if (keys.length === 0) return rawSafetensors('{"a":1,"a":1}', base.data);
      const key = pick(random, keys);
      const dup = `${JSON.stringify(key)}:${JSON.stringify(base.header[key])},`;
      return rawSafetensors(`{${dup}${text.slice(1)}`, base.data);
    }
  }
}

Deno.test(`fuzz: ${CASES} mutated files each read within bounds or fail with FileFormatError`, async () => {
  const random = seededRandom(SEED);
  const bases = baseFiles(random);
  let accepted = 0;
  let rejected = 0;
  const t0 = performance.now();
  await withTempDir(async (dir) => {
    for (let i = 0; i < CASES; i++) {
      const bytes = mutate(random, pick(random, bases));
      const path = `${dir}/case-${i}.safetensors`;
      await Deno.writeFile(path, bytes);
      try {
        const file = await SafetensorsFile.open(path);
        try {
          for (const info of file.tensors.values()) {
            assert(
              info.offset >= 8 && info.offset + info.byteLength <= bytes.byteLength,
              `case ${i}: ${info.name} out of bounds`,
            );
            const raw = await file.readBytes(info.name);
            assert(raw.byteLength === info.byteLength, `case ${i}: ${info.name} read length`);
            const elements = info.shape.reduce((a, b) => a * b, 1);
            assert(
              (await file.readF32(info.name)).length === elements,
              `case ${i}: ${info.name} element count`,
            );
          }
        } finally {
          file.close();
        }
        accepted++;
      } catch (error) {
        if (!(error instanceof FileFormatError)) {
          throw new Error(
            `case ${i} (seed ${SEED}) threw ${(error as Error)?.name}: ${(error as Error)?.message}`,
          );
        }
        rejected++;
      }
      assert(performance.now() - t0 < TIME_LIMIT_MS, `fuzzing took over ${TIME_LIMIT_MS} ms at case ${i}`);
    }
  });
  assert(accepted > 0 && rejected > 0, `both outcomes occur (accepted ${accepted}, rejected ${rejected})`);
  assert(rejected > CASES / 2, `most mutations are rejected (accepted ${accepted}, rejected ${rejected})`);
});
