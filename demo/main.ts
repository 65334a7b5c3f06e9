// `deno task demo`: the whole harpe job on the bundled fixtures, on the CPU, in under a minute:
// tokenize fixtures/corpus -> plan -> convert -> held-out loss -> train at 4x the tiny model's context
// -> export bf16 -> held-out loss. Everything is written under ./out/demo (replaced on each run).

import { Command } from "commander";
import { exportCheckpoint, readConfig } from "../lib/checkpoint/mod.ts";
import { convertCheckpoint, makePlan, type ScheduleName, stringifyPlan } from "../lib/harpe/mod.ts";
import { loadTokenizer, readTokenFile, tokenizeFiles, writeTokenFile } from "../lib/data/mod.ts";
import { openEngine } from "../lib/engine/open.ts";
import { PathError } from "../lib/errors.ts";
import { reportError } from "../cli/run_action.ts";
import { loadModel } from "../lib/model/mod.ts";
import { evaluateLoss, parseTrainConfig, train } from "../lib/train/mod.ts";
import type { TokenFile } from "../lib/data/mod.ts";
import { pathExists } from "../lib/util/files.ts";
import { sha256Hex } from "../lib/util/hash.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const TINY = `${ROOT}fixtures/tiny`;
const CORPUS = `${ROOT}fixtures/corpus`;
/** The corpus file kept out of training, for the before/after loss. */
const HELD_OUT = "2019_donald_j_trump_r.txt";
/** Marks a folder as the demo's own, so a rerun may replace it. */
const MARKER = "harpe-demo.json";
/** Target length = this many times the tiny model's original context (64). */
const CONTEXT_FACTOR = 4;
/** The base schedule of the plan: `auto` picks the range from the model and target length. */
const SCHEDULE: ScheduleName = "auto";
const DEFAULT_STEPS = 40;
const BATCH = 4;
const EVAL_BATCHES = 4;
const LOG_EVERY = 10;

async function prepareOutput(out: string): Promise<void> {
  if (await pathExists(out)) {
    if (!await pathExists(`${out}/${MARKER}`)) {
      throw new PathError(`"${out}" exists and was not made by the demo`, {
        file: out,
        hint: "pass another --out",
      });
    }
    await Deno.remove(out, { recursive: true });
  }
  await Deno.mkdir(`${out}/data`, { recursive: true });
  await Deno.writeTextFile(`${out}/${MARKER}`, JSON.stringify({ made_by: "deno task demo" }) + "\n");
}

async function tokenize(files: string[], out: string): Promise<TokenFile> {
  const tokenizer = await loadTokenizer(`${TINY}/tokenizer.json`);
  const data = await tokenizeFiles(files, tokenizer);
  await writeTokenFile(out, data, {
    tokenizer: "fixtures/tiny/tokenizer.json",
    tokenizerSha256: tokenizer.sha256,
    vocabSize: tokenizer.vocabSize,
    eosId: tokenizer.eosId,
  });
  return await readTokenFile(out);
}

/** Mean loss over the first EVAL_BATCHES * BATCH * evalLength held-out tokens, in sequences of seqLen. */
async function heldOutLoss(
  modelDir: string,
  data: TokenFile,
  lengths: { seqLen: number; evalLength: number },
): Promise<number> {
  const engine = await openEngine("cpu");
  try {
    const model = await loadModel(engine, modelDir);
    const batch = BATCH * lengths.evalLength / lengths.seqLen;
    return await evaluateLoss(model, data, {
      seqLen: lengths.seqLen,
      batch,
      batches: EVAL_BATCHES,
      eosId: data.info.eosId,
    });
  } finally {
    engine.dispose();
  }
}

async function main(options: { out: string; steps: number }): Promise<void> {
  const { out, steps } = options;
  const started = performance.now();
  const config = await readConfig(TINY);
  const original = config.maxPositionEmbeddings;
  const seqLen = original * CONTEXT_FACTOR;
  console.log(
    `harpe demo: the tiny Llama in fixtures/tiny (pretrained at ${original} tokens) -> HARPE at ${seqLen} ` +
      `tokens, on the CPU; output in ${out}/`,
  );
  await prepareOutput(out);

  const names = [...Deno.readDirSync(CORPUS)].map((e) => e.name).filter((n) => n.endsWith(".txt")).sort();
  const trainFiles = names.filter((n) => n !== HELD_OUT).map((n) => `${CORPUS}/${n}`);
  const trainData = await tokenize(trainFiles, `${out}/data/train.tokens`);
  const evalData = await tokenize([`${CORPUS}/${HELD_OUT}`], `${out}/data/heldout.tokens`);
  console.log(
    `[1/5] tokenize: ${trainFiles.length} files -> ${out}/data/train.tokens (${trainData.info.tokens} tokens); ` +
      `held out ${HELD_OUT} -> ${out}/data/heldout.tokens (${evalData.info.tokens} tokens)`,
  );

  const plan = makePlan(config, {
    schedule: SCHEDULE,
    targetLength: seqLen,
    checkpoint: TINY,
    configSha256: await sha256Hex(await Deno.readFile(`${TINY}/config.json`)),
  });
  await Deno.writeTextFile(`${out}/plan.yaml`, stringifyPlan(plan));
  const converted = `${out}/model-harpe`;
  await convertCheckpoint(TINY, converted, { plan });
  console.log(
    `[2/5] plan (${SCHEDULE}, target ${seqLen}): key-head bases ${plan.headBases.join(", ")} (original ` +
      `${config.rope.theta}) -> ${out}/plan.yaml; convert -> ${converted}`,
  );

  const tokens = EVAL_BATCHES * BATCH * seqLen;
  const short = await heldOutLoss(TINY, evalData, { seqLen: original, evalLength: seqLen });
  const plain = await heldOutLoss(TINY, evalData, { seqLen, evalLength: seqLen });
  const before = await heldOutLoss(converted, evalData, { seqLen, evalLength: seqLen });
  console.log(
    `[3/5] held-out loss before training (${tokens} tokens): ${before.toFixed(4)} HARPE at ${seqLen}; ` +
      `original model: ${plain.toFixed(4)} at ${seqLen}, ${short.toFixed(4)} at ${original}`,
  );

  const trainConfig = parseTrainConfig({
    model: converted,
    data: `${out}/data/train.tokens`,
    out: `${out}/run`,
    seq_len: seqLen,
    batch: BATCH,
    steps,
    optimizer: { lr: 1e-3, betas: [0.9, 0.95], weight_decay: 0.1 },
    schedule: { kind: "cosine", warmup: Math.max(1, Math.round(steps / 10)), min_lr: 1e-4 },
    grad_clip: 1.0,
    checkpoint: { every: Math.max(1, Math.ceil(steps / 2)) },
    seed: 0,
  });
  let first: number | null = null;
  let last: number | null = null;
  const summary = await train(trainConfig, {
    onStep: (r) => {
      first ??= r.loss;
      last = r.loss;
      if (r.step % LOG_EVERY === 0 || r.step === steps) {
        const lr = r.lr.toExponential(2);
        console.log(
          `      step ${r.step}/${steps}  loss ${r.loss?.toFixed(4)}  lr ${lr}  ${r.tokens_per_s} tok/s`,
        );
      }
    },
  });
  console.log(
    `[4/5] train: ${steps} steps at ${seqLen} tokens -> ${summary.runDir} (log.jsonl, checkpoints/, latest)`,
  );

  const exported = `${out}/export`;
  await exportCheckpoint(`${summary.runDir}/latest`, exported, { dtype: "BF16", progress: false });
  const after = await heldOutLoss(exported, evalData, { seqLen, evalLength: seqLen });
  console.log(`[5/5] export: bf16 -> ${exported}`);

  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const firstLoss = (first as number | null)?.toFixed(4);
  const lastLoss = (last as number | null)?.toFixed(4);
  console.log("");
  console.log(
    `held-out loss at ${seqLen} tokens: ${before.toFixed(4)} before -> ${after.toFixed(4)} after training ` +
      `(exported bf16 weights; the original model: ${plain.toFixed(4)})`,
  );
  console.log(`training loss: ${firstLoss} at step 1 -> ${lastLoss} at step ${steps}`);
  console.log(
    `written under ${out}/: data/ (token files), plan.yaml, model-harpe/ (converted), ` +
      `run/ (train.yaml, log.jsonl, checkpoints/, latest), export/ (bf16)`,
  );
  console.log(`done in ${seconds} s`);
}

if (import.meta.main) {
  const options = new Command("demo")
    .description("Run the harpe pipeline on the bundled tiny model and corpus (CPU)")
    .option("--out <dir>", "output folder (replaced if the demo made it)", "out/demo")
    .option("--steps <n>", "training steps", String(DEFAULT_STEPS))
    .parse(Deno.args, { from: "user" })
    .opts();
  try {
    await main({ out: options.out, steps: Number(options.steps) });
  } catch (error) {
    Deno.exit(reportError("demo", error));
  }
}
