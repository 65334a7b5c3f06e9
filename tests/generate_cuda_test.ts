// KV-cached generation and evaluation on the CUDA engine (skipped where no CUDA device is found):
// cached logits equal the CUDA full forward, greedy tokens equal the CPU engine's, and the trained
// passkey fixture still retrieves its keys.

import { assert, assertEquals } from "./assert.ts";
import { withTempDir } from "./harness.ts";
import { hasCuda } from "../lib/engine/cuda/detect.ts";
import { openEngine } from "../lib/engine/open.ts";
import { CpuEngine } from "../lib/engine/cpu/mod.ts";
import { loadModel } from "../lib/model/load.ts";
import { DecodeSession } from "../lib/model/decode.ts";
import { generateGreedy } from "../lib/eval/generate.ts";
import { runEval } from "../lib/eval/run.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const CASES = [
  `${ROOT}fixtures/golden/llama_mha/checkpoint`,
  `${ROOT}fixtures/golden/llama_gqa_tied_bf16_sharded/checkpoint`,
  `${ROOT}fixtures/tiny`,
];

Deno.test({
  name: "CUDA: cached decoding equals the full forward and the CPU engine's greedy tokens",
  ignore: !hasCuda(),
  async fn() {
    const engine = await openEngine("cuda");
    try {
      for (const dir of CASES) {
        const model = await loadModel(engine, dir);
        const V = model.config.vocabSize;
        const tokens = Array.from({ length: 24 }, (_, i) => (i * 37 + 11) % V);
        const full = await model.forward(Int32Array.from(tokens));
        const session = DecodeSession.create(model, { maxTokens: tokens.length });
        const rows: [number, Float32Array][] = [[
          11,
          await session.prefill(Int32Array.from(tokens.slice(0, 12))),
        ]];
        for (let i = 12; i < tokens.length; i++) rows.push([i, await session.step(tokens[i])]);
        session.dispose();
        for (const [row, logits] of rows) {
          const ref = full.subarray(row * V, (row + 1) * V);
          let diff = 0, scale = 0;
          for (let j = 0; j < V; j++) {
            diff = Math.max(diff, Math.abs(logits[j] - ref[j]));
            scale = Math.max(scale, Math.abs(ref[j]));
          }
          assert(diff / scale < 1e-4, `${dir} row ${row}: relative error ${diff / scale}`);
        }
        const cpuModel = await loadModel(new CpuEngine(), dir);
        const prompt = tokens.slice(0, 9);
        const onCpu = await generateGreedy(cpuModel, prompt, { maxNewTokens: 16 });
        const onCuda = await generateGreedy(model, prompt, { maxNewTokens: 16 });
        assertEquals(onCuda.tokens, onCpu.tokens, dir);
        cpuModel.dispose();
        model.dispose();
      }
      for (const cacheDtype of ["f32", "bf16"] as const) {
        await withTempDir(async (dir) => {
          const run = await runEval([`${ROOT}fixtures/eval/passkey_tiny`], {
            task: "passkey",
            lengths: [256],
            depths: [0, 0.5, 1],
            samples: 4,
            passkeyDigits: 3,
            outDir: dir,
            engine,
            cacheDtype,
          });
          const mean = run.results.reduce((a, r) => a + r.score, 0) / run.results.length;
          assert(mean >= 0.8, `passkey on CUDA with a ${cacheDtype} cache: ${mean}`);
        });
      }
    } finally {
      engine.dispose();
    }
  },
});
