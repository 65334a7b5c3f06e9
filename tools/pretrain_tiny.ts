// Pretrains the tiny fixture model briefly at its original context (64 tokens) on fixtures/corpus
// (without the demo's held-out file) and replaces fixtures/tiny/model.safetensors with the result, so
// the demo extends a model that has learned something. Seeded; takes minutes on the CPU.
//
//   deno run --allow-read --allow-write tools/pretrain_tiny.ts [--steps 600] [--work /tmp/tiny-pretrain]

import { Command } from "commander";
import { loadTokenizer, tokenizeFiles, writeTokenFile } from "../lib/data/mod.ts";
import { Checkpoint } from "../lib/checkpoint/mod.ts";
import { writeSafetensors } from "../lib/safetensors/mod.ts";
import { parseTrainConfig, train } from "../lib/train/mod.ts";

const TINY = "fixtures/tiny";
const CORPUS = "fixtures/corpus";
/** Kept out of pretraining: the demo measures its held-out loss on it. */
const HELD_OUT = "2019_donald_j_trump_r.txt";
const LOG_EVERY = 50;

const options = new Command("pretrain_tiny")
  .option("--steps <n>", "optimizer steps", "600")
  .option("--work <dir>", "scratch folder for the token file and the run", "/tmp/tiny-pretrain")
  .parse(Deno.args, { from: "user" })
  .opts();
const steps = Number(options.steps);
await Deno.remove(options.work, { recursive: true }).catch(() => {});
await Deno.mkdir(options.work, { recursive: true });
const tokenizer = await loadTokenizer(`${TINY}/tokenizer.json`);
const files = [...Deno.readDirSync(CORPUS)].map((e) => e.name).filter((n) =>
  n.endsWith(".txt") && n !== HELD_OUT
)
  .sort().map((n) => `${CORPUS}/${n}`);
const data = await tokenizeFiles(files, tokenizer);
await writeTokenFile(`${options.work}/train.tokens`, data, {
  tokenizer: `${TINY}/tokenizer.json`,
  tokenizerSha256: tokenizer.sha256,
  vocabSize: tokenizer.vocabSize,
  eosId: tokenizer.eosId,
});
const config = parseTrainConfig({
  model: TINY,
  data: `${options.work}/train.tokens`,
  out: `${options.work}/run`,
  seq_len: 64,
  batch: 16,
  steps,
  optimizer: { lr: 3e-3, betas: [0.9, 0.95], weight_decay: 0.1 },
  schedule: { kind: "cosine", warmup: Math.round(steps / 20), min_lr: 3e-4 },
  checkpoint: { every: steps },
  seed: 1,
});
const summary = await train(config, {
  onStep: (r) => {
    if (r.step % LOG_EVERY === 0 || r.step === 1) {
      console.log(`step ${r.step} loss ${r.loss?.toFixed(4)} ${r.tokens_per_s} tok/s`);
    }
  },
});
const checkpoint = await Checkpoint.open(summary.checkpoint);
const tensors = [];
for (const [name, info] of checkpoint.tensors) {
  tensors.push({ name, dtype: "F32" as const, shape: info.shape, data: await checkpoint.readBytes(name) });
}
checkpoint.close();
await writeSafetensors(`${TINY}/model.safetensors`, tensors, { metadata: { format: "pt" } });
console.log(`${steps} steps at 64 tokens -> ${TINY}/model.safetensors`);
