// Tests of the training memory estimate (lib/train/memory.ts): a hand count for the tiny fixture on
// cuda, the estimate against the allocations the model and optimizer really make (counted through a
// wrapping engine), the engine constants it mirrors, and the refusal (library and CLI, exit 2).

import { assert, assertEquals, assertStringIncludes, assertThrows } from "./assert.ts";
import { listDir, PROJECT_ROOT, runHarpe, withTempDir, writeCorpusTokens } from "./harness.ts";
import { readConfig } from "../lib/checkpoint/config.ts";
import type { ModelConfig } from "../lib/checkpoint/model_config.ts";
import { CpuEngine } from "../lib/engine/cpu/mod.ts";
import { CROSS_ENTROPY_CHUNK_ROWS } from "../lib/engine/cpu/cross_entropy.ts";
import type { Engine, Tensor, TensorDType } from "../lib/engine/engine.ts";
import { CachingAllocator } from "../lib/engine/cuda/allocator.ts";
import { BLAS_WORKSPACE_BYTES } from "../lib/engine/cuda/device.ts";
import { LOGITS_CHUNK_BYTES } from "../lib/engine/cuda/engine.ts";
import { FLASH_HEAD_DIMS } from "../lib/engine/cuda/flash_attention.ts";
import type { Driver } from "../lib/engine/cuda/ffi/driver.ts";
import { hasCuda } from "../lib/engine/cuda/mod.ts";
import { Model } from "../lib/model/mod.ts";
import {
  AdamW,
  checkMemoryFits,
  cudaAllocationBytes,
  estimateTrainingMemory,
  type MemoryRun,
  TrainingMemoryError,
} from "../lib/train/mod.ts";
import {
  CPU_CROSS_ENTROPY_CHUNK_ROWS,
  CUDA_BLAS_WORKSPACE_BYTES,
  CUDA_FLASH_HEAD_DIMS,
  CUDA_LOGITS_CHUNK_BYTES,
} from "../lib/train/memory.ts";

const MIB = 2 ** 20;
/** AdamW settings of the measured training steps (their values do not change what is allocated). */
const ADAMW = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0 };
const tiny = await readConfig(`${PROJECT_ROOT}fixtures/tiny`);

/** Rounds like the CUDA caching allocator, written out: 512-byte units below 1 MiB, 2 MiB units above. */
function rounded(bytes: number): number {
  return bytes < MIB ? Math.max(512, Math.ceil(bytes / 512) * 512) : Math.ceil(bytes / (2 * MIB)) * (2 * MIB);
}

Deno.test("memory estimate: tiny fixture on cuda, bf16, checkpointing, B 2 x T 64 equals a hand count", () => {
  // tiny: V 512, C 64, F 176, L 2, H 4, K 2, D 16 (R 16), untied, no biases.
  assertEquals(
    [tiny.vocabSize, tiny.hiddenSize, tiny.intermediateSize, tiny.numLayers, tiny.numHeads, tiny.numKvHeads],
    [512, 64, 176, 2, 4, 2],
  );
  const N = 128;
  // P = embed 512*64 + 2 layers * (2 norms 64 + q 64*64 + k, v 32*64 each + o 64*64 + 3 * 176*64)
  //     + final norm 64 + head 512*64.
  const P = 32768 + 2 * (128 + 4096 + 2 * 2048 + 4096 + 3 * 11264) + 64 + 32768;
  assertEquals(P, 158016);
  const f32 = (n: number) => rounded(4 * n), bf16 = (n: number) => rounded(2 * n);
  const model = 4 * f32(P) + bf16(P) + f32(1) + f32(4 * 8) + f32(2 * 8); // params, grads, m, v; working; norm; rope
  const saved = 3 * bf16(N * 64) + 2 * bf16(N * 64) + 2 * f32(2 * 4 * 64); // inputs + final, att x 2, lse x 2
  const recompute = bf16(N * 64) + bf16(N * 32) + bf16(N * 64) + f32(N) + bf16(N * 32) + // q k ln1 rstd1 v
    bf16(N * 64) + bf16(N * 64) + f32(N) + 3 * bf16(N * 176); // mid ln2 rstd2 gate up act
  const scratch = bf16(N * 32) + 3 * bf16(N * 64) + 2 * bf16(N * 64) + bf16(N * 32) + 3 * bf16(N * 176);
  const head = bf16(N * 64) + 2 * f32(N) + 3 * f32(N); // lnf, rstdf + losses, tokens/positions/targets (i32)
  // Largest scratch: the cross-entropy chunk (all 128 rows): f32 logits + bf16 dlogits.
  const crossEntropy = f32(N * 512) + bf16(N * 512);
  const expected = model + saved + recompute + scratch + head + 32 * MIB + crossEntropy;
  const run: MemoryRun = { seqLen: 64, batch: 2, precision: "bf16", checkpointing: true, device: "cuda" };
  const estimate = estimateTrainingMemory(tiny, run);
  assertEquals(estimate.total, expected);
  const line = (start: string) => estimate.lines.find((l) => l.label.startsWith(start))?.bytes;
  assertEquals(line("parameters"), 4 * P);
  assertEquals(line("AdamW"), 8 * P);
  assertEquals(line("working weights"), 2 * P);
  assertEquals(line("attention LSE"), 2 * 4 * 2 * 64 * 4);
  assertEquals(line("lm-head"), crossEntropy);
  assertEquals(line("cuBLASLt"), 32 * MIB);
  // f32 on cuda: no working copy, activations 4 bytes, no bf16 dlogits.
  const f32Run = estimateTrainingMemory(tiny, { ...run, precision: "f32" });
  assertEquals(line("working weights") !== undefined, true);
  assertEquals(f32Run.lines.find((l) => l.label.startsWith("working")), undefined);
  assertEquals(f32Run.lines.find((l) => l.label.startsWith("lm-head"))?.bytes, f32(N * 512));
});

Deno.test("memory estimate: the 1.1B shape at 128k (bf16, checkpointing) by hand, and flash-attention scratch", () => {
  const config: ModelConfig = {
    ...tiny,
    vocabSize: 32000,
    hiddenSize: 2048,
    intermediateSize: 5632,
    numLayers: 22,
    numHeads: 32,
    numKvHeads: 4,
    headDim: 64,
    rope: { ...tiny.rope, rotaryDim: 64 },
  };
  const T = 131072;
  const estimate = estimateTrainingMemory(config, {
    seqLen: T,
    batch: 1,
    precision: "bf16",
    checkpointing: true,
    device: "cuda",
  });
  const line = (start: string) => estimate.lines.find((l) => l.label.startsWith(start))?.bytes;
  // Parameters: 2 * 32000*2048 + 22 * (2*2048 + 2048*2048*2 + 256*2048*2 + 3 * 5632*2048) + 2048.
  const P = 2 * 65536000 + 22 * (4096 + 8388608 + 1048576 + 34603008) + 2048;
  assertEquals(P, 1100048384);
  assertEquals(line("parameters"), 4 * P);
  // Saved: per layer input [T, C] and attention output [T, H*D] in bf16.
  assertEquals(line("saved per layer"), 22 * (2 * T * 2048 + 2 * T * 2048));
  // Flash backward: f32 dQ [T, H, D] + delta [T, H], each rounded to 2 MiB.
  assertEquals(line("flash-attention"), rounded(4 * T * 2048) + rounded(4 * T * 32));
  // Chunk rows: floor(256 MiB / (32000 * 4)) = 2097.
  assertEquals(line("lm-head"), rounded(4 * 2097 * 32000) + rounded(2 * 2097 * 32000));
  // The sum is what issue 6 targets (at most 60 GiB at 128k).
  assert(estimate.total < 60 * 2 ** 30, `estimate ${estimate.total} below 60 GiB`);
});

/** Wraps the CPU engine, counting live allocations with the CUDA engine's element sizes and rounding. */
function countingEngine(): { engine: Engine; live: () => number; peak: () => number } {
  const inner = new CpuEngine();
  const sizes = new Map<Tensor, number>();
  const bytesPer: Record<TensorDType, number> = { f32: 4, bf16: 2, i32: 4 };
  let live = 0, peak = 0;
  const engine = new Proxy(inner, {
    get(target, key, receiver) {
      if (key === "alloc") {
        return (shape: readonly number[], dtype: TensorDType = "f32") => {
          const t = target.alloc(shape, dtype);
          const bytes = rounded(Math.max(1, t.size * bytesPer[dtype]));
          sizes.set(t, bytes);
          live += bytes;
          peak = Math.max(peak, live);
          return t;
        };
      }
      if (key === "free") {
        return (t: Tensor) => {
          live -= sizes.get(t) ?? 0;
          sizes.delete(t);
          target.free(t);
        };
      }
      const value = Reflect.get(target, key, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { engine, live: () => live, peak: () => peak };
}

Deno.test("memory estimate: persistent part equals what Model + AdamW allocate (kv, query granularity, q/k norm)", async () => {
  const variants: [string, ModelConfig][] = [
    ["tiny", tiny],
    ["query granularity", {
      ...tiny,
      rope: { ...tiny.rope, type: "harpe", harpe: { headBases: [1e4, 2e4, 4e4, 8e4], granularity: "query" } },
    }],
    ["q/k norm", { ...tiny, qkNorm: true }],
  ];
  for (const [name, config] of variants) {
    for (const checkpointing of [true, false]) {
      for (const precision of ["bf16", "f32"] as const) {
        const { engine, peak } = countingEngine();
        const model = Model.create(engine, config, { precision, checkpointing });
        const optimizer = new AdamW(
          engine,
          model.layout,
          { params: model.params, grads: model.grads },
          ADAMW,
        );
        const B = 2, T = 8;
        const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 7) % config.vocabSize);
        await model.forwardBackward(tokens, tokens, { batch: B });
        optimizer.step({ lr: 1e-3, step: 1 });
        const run: MemoryRun = { seqLen: T, batch: B, precision, checkpointing, device: "cuda" };
        const estimate = estimateTrainingMemory(config, run);
        const transient = Math.max(...estimate.lines.filter((l) => l.transient).map((l) => l.bytes));
        assertEquals(
          estimate.total - transient - CUDA_BLAS_WORKSPACE_BYTES,
          peak(),
          `${name}, checkpointing ${checkpointing}, ${precision}`,
        );
      }
    }
  }
});

Deno.test("memory estimate: mirrored engine constants equal the engines' own", () => {
  assertEquals(CUDA_BLAS_WORKSPACE_BYTES, BLAS_WORKSPACE_BYTES);
  assertEquals(CUDA_LOGITS_CHUNK_BYTES, LOGITS_CHUNK_BYTES);
  assertEquals([...CUDA_FLASH_HEAD_DIMS], [...FLASH_HEAD_DIMS]);
  assertEquals(CPU_CROSS_ENTROPY_CHUNK_ROWS, CROSS_ENTROPY_CHUNK_ROWS);
  // The allocator's rounding, through a driver that only records the sizes it is asked for.
  const asked: number[] = [];
  const driver = { memAlloc: (bytes: number) => BigInt(asked.push(bytes) * 4096) } as unknown as Driver;
  const allocator = new CachingAllocator(driver);
  const requests = [1, 511, 512, 513, MIB - 1, MIB, MIB + 1, 3 * MIB, 300_000_000];
  for (const bytes of requests) allocator.alloc(bytes);
  assertEquals(asked, requests.map(cudaAllocationBytes));
  assertEquals(requests.map(cudaAllocationBytes), requests.map(rounded));
});

Deno.test("memory estimate: refusal names what to change; only the applicable remedies", () => {
  const run: MemoryRun = { seqLen: 4096, batch: 4, precision: "f32", checkpointing: false, device: "cuda" };
  const estimate = estimateTrainingMemory(tiny, { ...run, seqLen: 65536 });
  const capacity = { name: "fake GPU", total: 2 ** 30, available: 2 ** 30 };
  const error = assertThrows(
    () => checkMemoryFits(estimate, { ...run, seqLen: 65536 }, { capacity }),
    TrainingMemoryError,
  );
  assertStringIncludes(error.message, "only 1.00 GiB is available on fake GPU");
  for (
    const remedy of [
      "shorter seq_len (now 65536)",
      "smaller batch (now 4",
      "precision: bf16",
      "activation_checkpointing: true",
    ]
  ) {
    assertStringIncludes(error.message, remedy);
  }
  const lean = { ...run, seqLen: 1 << 20, batch: 1, precision: "bf16" as const, checkpointing: true };
  const leanError = assertThrows(
    () => checkMemoryFits(estimateTrainingMemory(tiny, lean), lean, { capacity }),
    TrainingMemoryError,
  );
  assert(!leanError.message.includes("batch") && !leanError.message.includes("bf16"), leanError.message);
  // Fits: no error; unknown capacity: no error.
  checkMemoryFits(estimateTrainingMemory(tiny, run), run, { capacity });
  checkMemoryFits(estimate, run, { capacity: { name: "host RAM" } });
});

Deno.test({
  name: "memory estimate on cuda: equals the allocator's high-water mark of a real pass (GPU only)",
  ignore: !hasCuda(),
  async fn() {
    const { CudaEngine } = await import("../lib/engine/cuda/mod.ts");
    const engine = await CudaEngine.open();
    // Head dim 64: bf16 goes through the flash kernels (dQ f32 accumulator), f32 through the simple ones.
    const config: ModelConfig = {
      ...tiny,
      hiddenSize: 256,
      intermediateSize: 512,
      headDim: 64,
      vocabSize: 1000,
      rope: { ...tiny.rope, rotaryDim: 64 },
    };
    const B = 2, T = 256;
    const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 31) % config.vocabSize);
    try {
      for (const precision of ["bf16", "f32"] as const) {
        for (const checkpointing of [true, false]) {
          const allocator = engine.device.allocator;
          const before = allocator.inUse; // the workspace and what earlier rounds left
          allocator.peak = before;
          const model = Model.create(engine, config, { precision, checkpointing });
          const optimizer = new AdamW(
            engine,
            model.layout,
            { params: model.params, grads: model.grads },
            ADAMW,
          );
          await model.forwardBackward(tokens, tokens, { batch: B });
          optimizer.step({ lr: 1e-3, step: 1 });
          await engine.sync();
          const estimate = estimateTrainingMemory(config, {
            seqLen: T,
            batch: B,
            precision,
            checkpointing,
            device: "cuda",
          });
          assertEquals(
            allocator.peak - before,
            estimate.total - CUDA_BLAS_WORKSPACE_BYTES,
            `${precision}, checkpointing ${checkpointing}`,
          );
          model.dispose();
          engine.free(optimizer.m);
          engine.free(optimizer.v);
        }
      }
    } finally {
      engine.dispose();
    }
  },
});

Deno.test("harpe train: prints the estimate; refuses with exit 2 under a 1 GiB memory_limit, writing nothing", async () => {
  await withTempDir(async (dir) => {
    await writeCorpusTokens(`${dir}/train.tokens`);
    await Deno.writeTextFile(
      `${dir}/train.yaml`,
      `model: ${PROJECT_ROOT}fixtures/tiny\ndata: train.tokens\nout: run\nseq_len: 32\nsteps: 1\noptimizer: {lr: 0.001}\n`,
    );
    const ok = await runHarpe(["train", "--config", `${dir}/train.yaml`, "--activation-checkpointing"]);
    assertEquals(ok.code, 0, ok.stderr);
    assertStringIncludes(ok.stderr, "memory: will use");
    assertStringIncludes(ok.stderr, "recompute working set (one layer)");
    const refused = await runHarpe([
      "train",
      "--config",
      `${dir}/train.yaml`,
      "--out",
      `${dir}/big`,
      "--seq-len",
      "131072",
      "--memory-limit",
      "1GiB",
    ]);
    assertEquals(refused.code, 2, refused.stderr);
    const message = refused.stderr.trim().split("\n").at(-1) ?? "";
    assert(message.startsWith("harpe train: Training needs "), message);
    assertStringIncludes(message, "but memory_limit is 1.00 GiB");
    assertStringIncludes(message, "shorter seq_len (now 131072)");
    assertStringIncludes(message, "activation_checkpointing: true");
    assertEquals((await listDir(dir)).includes("big"), false);
  });
});
