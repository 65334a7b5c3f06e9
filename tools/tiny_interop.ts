// Writes tmp/tiny_interop/ids.json for tools/tiny_interop.py: token ids of a few texts from the tiny
// tokenizer (through @huggingface/tokenizers) and the CPU engine's loss of fixtures/tiny on 64 tokens,
// which the Python side recomputes with Hugging Face tokenizers and transformers (float64).
//
//   deno run --allow-read --allow-write tools/tiny_interop.ts
//   python3 tools/tiny_interop.py      # on a machine with transformers (carry tmp/tiny_interop)

import { loadTokenizer } from "../lib/data/mod.ts";
import { openEngine } from "../lib/engine/open.ts";
import { loadModel } from "../lib/model/mod.ts";

const OUT = "tmp/tiny_interop";
const LOSS_TOKENS = 64;

const tokenizer = await loadTokenizer("fixtures/tiny/tokenizer.json");
const texts = [
  "Hello world! The people of the United States, in 1790.",
  Deno.readTextFileSync("fixtures/corpus/2019_donald_j_trump_r.txt").slice(0, 2000),
  "  Ünïcode ✓ — tabs\tand\nnewlines\n\n  spaces   ",
];
const ids = texts.map((text) => tokenizer.encode(text));
const sequence = Int32Array.from(ids[1].slice(0, LOSS_TOKENS + 1));
const engine = await openEngine("cpu");
const model = await loadModel(engine, "fixtures/tiny");
const loss = await model.forwardBackward(sequence.slice(0, LOSS_TOKENS), sequence.slice(1), { batch: 1 });
Deno.mkdirSync(OUT, { recursive: true });
Deno.writeTextFileSync(
  `${OUT}/ids.json`,
  JSON.stringify({ texts, ids, sequence: Array.from(sequence), loss }),
);
console.log(`loss ${loss}; ${ids.map((x) => x.length).join(", ")} tokens -> ${OUT}/ids.json`);
