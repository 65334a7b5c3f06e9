// Per-op checks of the CUDA engine against the CPU engine, forward and backward, in f32 and in bf16
// (bf16-rounded inputs for both; f32 accumulation), on fresh random inputs each run. Sizes cover both
// the 16-byte vectorized paths (multiples of 8, aligned) and the scalar ones (odd sizes, offset views).
// GPU only.

import { IGNORE_INDEX } from "../lib/engine/engine.ts";
import { UnsupportedError } from "../lib/errors.ts";
import { assert, assertThrows } from "./assert.ts";
import { compareOp, cudaEngine, GPU_TEST, randint, randn } from "./cuda_compare.ts";
import { CudaEngine, DeviceMemoryError } from "../lib/engine/cuda/mod.ts";
import { CE_HELD_COLUMNS, CLUSTER_MIN_ARCH, prefetchPlan } from "../lib/engine/cuda/cross_entropy_plan.ts";

/** Relative tolerance (max |cuda - cpu| / max |cpu|) by mode: f32 arithmetic vs bf16-rounded outputs. */
const TOLERANCE = { f32: 1e-4, bf16: 2e-2 } as const;
const MODES = ["f32", "bf16"] as const;

function gpuTest(name: string, fn: (mode: "f32" | "bf16") => Promise<void>): void {
  for (const mode of MODES) Deno.test({ name: `cuda ${name} (${mode})`, ...GPU_TEST, fn: () => fn(mode) });
}

gpuTest("copy, add, scale, fill", async (mode) => {
  const n = 1003;
  await compareOp(mode, {
    x: { shape: [n], data: randn(n) },
    y: { shape: [n], kind: "f32", data: randn(n), check: true },
    a: { shape: [n], data: randn(n) },
    b: { shape: [n], kind: "f32", data: randn(n) },
    sum: { shape: [n], data: randn(n), check: true },
    filled: { shape: [3, 5], data: randn(15), check: true },
  }, (e, t) => {
    e.copy({ out: t.y, x: t.x });
    e.add({ out: t.sum, a: t.a, b: t.b });
    e.scale({ x: t.sum, alpha: -0.75 });
    e.scale({ x: e.view(t.sum, [n - 1], 1), alpha: 1.5 });
    e.fill({ out: t.filled, value: 1.25 });
  }, TOLERANCE[mode]);
});

gpuTest("matmul with transposes and accumulation", async (mode) => {
  const [m, n, p] = [37, 45, 29];
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      await compareOp(mode, {
        a: { shape: transA ? [p, m] : [m, p], data: randn(m * p) },
        b: { shape: transB ? [n, p] : [p, n], data: randn(p * n) },
        out: { shape: [m, n], kind: "f32", data: randn(m * n), check: true },
        outAct: { shape: [m, n], data: randn(m * n), check: true },
      }, (e, t) => {
        e.matmul({ out: t.out, a: t.a, b: t.b, transA, transB, alpha: 0.5, beta: 1 });
        e.matmul({ out: t.outAct, a: t.a, b: t.b, transA, transB });
      }, TOLERANCE[mode]);
    }
  }
});

gpuTest("bias add and bias gradient", async (mode) => {
  for (const [rows, x] of [[33, 70], [300, 64]]) {
    await compareOp(mode, {
      out: { shape: [rows, x], data: randn(rows * x), check: true },
      bias: { shape: [x], data: randn(x) },
      dout: { shape: [rows, x], data: randn(rows * x) },
      dbias: { shape: [x], kind: "f32", data: randn(x), check: true },
    }, (e, t) => {
      e.biasAdd({ out: t.out, bias: t.bias });
      e.biasBackward({ dbias: t.dbias, dout: t.dout });
    }, TOLERANCE[mode]);
  }
});

gpuTest("embedding forward and backward", async (mode) => {
  // more rows than tokens: repeated ids accumulate; c = 24 vectorized, c = 20 scalar
  for (const [n, v, c] of [[41, 13, 24], [17, 5, 20]]) {
    await compareOp(mode, {
      table: { shape: [v, c], data: randn(v * c) },
      tokens: { shape: [n], kind: "i32", data: randint(n, v) },
      out: { shape: [n, c], data: randn(n * c), check: true },
      dout: { shape: [n, c], data: randn(n * c) },
      dtable: { shape: [v, c], kind: "f32", data: randn(v * c), check: true },
    }, (e, t) => {
      e.embeddingForward({ out: t.out, table: t.table, tokens: t.tokens });
      e.embeddingBackward({ dtable: t.dtable, dout: t.dout, tokens: t.tokens });
    }, TOLERANCE[mode]);
  }
});

gpuTest("rmsnorm forward and backward (layer rows and q/k-norm rows)", async (mode) => {
  for (const [rows, x] of [[13, 80], [300, 16], [3, 2048], [7, 30]]) {
    await compareOp(mode, {
      x: { shape: [rows, x], data: randn(rows * x, 3) },
      weight: { shape: [x], data: randn(x) },
      out: { shape: [rows, x], data: randn(rows * x), check: true },
      rstd: { shape: [rows], kind: "f32", data: randn(rows), check: true },
      dout: { shape: [rows, x], data: randn(rows * x) },
      dx: { shape: [rows, x], data: randn(rows * x), check: true },
      dweight: { shape: [x], kind: "f32", data: randn(x), check: true },
    }, (e, t) => {
      e.rmsnormForward({ out: t.out, rstd: t.rstd, x: t.x, weight: t.weight, eps: 1e-5 });
      e.rmsnormBackward({
        dx: t.dx,
        dweight: t.dweight,
        dout: t.dout,
        x: t.x,
        weight: t.weight,
        rstd: t.rstd,
        accumulate: true,
      });
    }, TOLERANCE[mode]);
  }
});

gpuTest("per-head rope forward and backward (kv and query granularity, partial rotary)", async (mode) => {
  const rows = 11;
  // [Ho, Hx, D, R]: R/2 = 6 takes the scalar path, R/2 = 8 and 16 the 8-pair one.
  for (const [ho, hx, d, rotary] of [[4, 4, 16, 12], [8, 2, 16, 12], [4, 4, 32, 16], [8, 2, 32, 32]]) {
    const bases = Array.from({ length: ho }, () => 10 ** (4 + 3 * Math.random()));
    const invFreq = new Float32Array(ho * rotary / 2);
    bases.forEach((base, h) => {
      for (let i = 0; i < rotary / 2; i++) invFreq[h * rotary / 2 + i] = base ** (-2 * i / rotary);
    });
    await compareOp(mode, {
      x: { shape: [rows, hx, d], data: randn(rows * hx * d) },
      out: { shape: [rows, ho, d], data: randn(rows * ho * d), check: true },
      dout: { shape: [rows, ho, d], data: randn(rows * ho * d) },
      dx: { shape: [rows, hx, d], data: randn(rows * hx * d), check: true },
      invFreq: { shape: [ho, rotary / 2], kind: "f32", data: invFreq },
      positions: { shape: [rows], kind: "i32", data: randint(rows, 300_000) },
    }, (e, t) => {
      e.ropeForward({ out: t.out, x: t.x, invFreq: t.invFreq, positions: t.positions });
      e.ropeBackward({ dx: t.dx, dout: t.dout, invFreq: t.invFreq, positions: t.positions });
    }, TOLERANCE[mode]);
  }
});

gpuTest("causal GQA attention forward and backward", async (mode) => {
  for (const [b, t, h, hk, d] of [[2, 19, 4, 2, 16], [1, 40, 6, 3, 64], [1, 9, 2, 2, 96]]) {
    const q = b * t * h * d, kv = b * t * hk * d;
    await compareOp(mode, {
      q: { shape: [b, t, h, d], data: randn(q, 1.5) },
      k: { shape: [b, t, hk, d], data: randn(kv, 1.5) },
      v: { shape: [b, t, hk, d], data: randn(kv) },
      out: { shape: [b, t, h, d], data: randn(q), check: true },
      lse: { shape: [b, h, t], kind: "f32", data: randn(b * h * t), check: true },
      dout: { shape: [b, t, h, d], data: randn(q) },
      dq: { shape: [b, t, h, d], data: randn(q), check: true },
      dk: { shape: [b, t, hk, d], data: randn(kv), check: true },
      dv: { shape: [b, t, hk, d], data: randn(kv), check: true },
    }, (e, x) => {
      e.attentionForward({ out: x.out, lse: x.lse, q: x.q, k: x.k, v: x.v });
      e.attentionBackward({
        dq: x.dq,
        dk: x.dk,
        dv: x.dv,
        dout: x.dout,
        q: x.q,
        k: x.k,
        v: x.v,
        out: x.out,
        lse: x.lse,
      });
    }, TOLERANCE[mode]);
  }
});

gpuTest("swiglu forward and backward", async (mode) => {
  const n = 777;
  await compareOp(mode, {
    gate: { shape: [n], data: randn(n, 3) },
    up: { shape: [n], data: randn(n) },
    out: { shape: [n], data: randn(n), check: true },
    dout: { shape: [n], data: randn(n) },
    dgate: { shape: [n], data: randn(n), check: true },
    dup: { shape: [n], data: randn(n), check: true },
  }, (e, t) => {
    e.swigluForward({ out: t.out, gate: t.gate, up: t.up });
    e.swigluBackward({ dgate: t.dgate, dup: t.dup, dout: t.dout, gate: t.gate, up: t.up });
  }, TOLERANCE[mode]);
});

/** Compares the fused lm head + cross-entropy (losses with and without gradients, dhidden, dweight)
 * for hidden [N, C], weight [V, C] and the given targets. */
async function compareCrossEntropy(
  mode: "f32" | "bf16",
  [n, c, v]: readonly [number, number, number],
  targets: Int32Array,
  engine?: CudaEngine,
): Promise<void> {
  await compareOp(
    mode,
    {
      hidden: { shape: [n, c], data: randn(n * c) },
      weight: { shape: [v, c], data: randn(v * c) },
      targets: { shape: [n], kind: "i32", data: targets },
      losses: { shape: [n], kind: "f32", data: randn(n), check: true },
      dhidden: { shape: [n, c], data: randn(n * c), check: true },
      dweight: { shape: [v, c], kind: "f32", data: randn(v * c), check: true },
      lossesOnly: { shape: [n], kind: "f32", data: randn(n), check: true },
    },
    (e, t) => {
      e.crossEntropy({
        losses: t.losses,
        hidden: t.hidden,
        weight: t.weight,
        targets: t.targets,
        dhidden: t.dhidden,
        dweight: t.dweight,
        scale: 1 / 21,
      });
      e.crossEntropy({ losses: t.lossesOnly, hidden: t.hidden, weight: t.weight, targets: t.targets });
    },
    TOLERANCE[mode],
    engine,
  );
}

/** Targets at the edges of the prefetching kernels' slices for rows of `v` columns (the engine's plan
 * on this device; unaligned rows still get in-range targets): the held/overflow boundary and the
 * overflow columns of the first and the last block of a cluster, the last column of the first block and
 * the first of the last, and the last column of thread 0's sixth (last) overflow float4. */
async function sliceEdgeTargets(v: number): Promise<number[]> {
  const { info } = (await cudaEngine()).device;
  const plan = prefetchPlan(v, info.maxSharedMemoryPerBlock, { clusters: info.arch >= CLUSTER_MIN_ARCH });
  const slice = plan?.slice ?? v, last = ((plan?.cluster ?? 1) - 1) * slice;
  const sixth = CE_HELD_COLUMNS + 5 * 4 * 1024 + 3;
  return [CE_HELD_COLUMNS + 5, CE_HELD_COLUMNS, slice - 1, last + CE_HELD_COLUMNS + 5, last, sixth]
    .map((t) => Math.min(t, v - 1));
}

gpuTest("fused lm head + cross-entropy over row chunks, with ignored rows", async (mode) => {
  // Rows are padded to a multiple of 8 columns, so every V up to 8 full slices takes the prefetching
  // kernels; V % 4 != 0 (50, 40001, 45057, GPT-2's 50257, 57345, 151937, 458757) leaves up to 3 padding
  // columns in a row's last float4, masked by the kernel (targets V-1, and V-2, V-3, ... in the rows
  // after the slice edges: the last float4 and the one before).
  // Prefetching blocks hold 32768 columns in registers and up to 24576 more in one shared-memory buffer
  // (on sm_90; clusters of the fewest blocks whose slices hold a row): one block with 4, 7232, 8232,
  // 12288, 12292, 17492 (GPT-2), 23232 (threads 0-687 with a sixth overflow float4) and 24576 (every
  // thread's 6 overflow float4s) overflow columns: 32772, 40000, 41000, 45056, 45060, 50257, 56000,
  // 57344; clusters of 2 without overflow: 57345; of 2 with overflow: 98304; of 3 with overflow: 128256
  // (Llama-3, 42752 per block), 151936 (Qwen, 50648) and 151928 (the last block 4 columns short); of 4:
  // 200000; of 7: 360448 (the last block 24 columns short); of 8 full slices: 458752; 458756 and 458757
  // (unaligned, masked float4s): vectorized two-pass rows
  const shapes = [
    [23, 24, 50],
    [16, 32, 64],
    [13, 8, 40001],
    [13, 4, 45057],
    [13, 8, 50257],
    [14, 4, 56000],
    [14, 4, 57345],
    [14, 4, 151937],
    [9, 8, 32772],
    [9, 8, 40000],
    [10, 8, 41000],
    [9, 4, 45056],
    [9, 8, 45060],
    [11, 4, 57344],
    [9, 4, 98304],
    [9, 8, 128256],
    [11, 4, 151936],
    [10, 4, 151928],
    [9, 4, 200000],
    [9, 2, 360448],
    [11, 2, 458752],
    [5, 2, 458756],
    [13, 2, 458757],
  ] as const;
  for (const [n, c, v] of shapes) {
    const targets = randint(n, v);
    // the last logit, the first, and (vectorized, V > 4096) the first of a block's second 4-wide sweep
    targets[0] = v - 1;
    targets[1] = 0;
    targets[2] = Math.min(4 * 1024, v - 2);
    targets[3] = IGNORE_INDEX;
    targets[n - 1] = IGNORE_INDEX;
    (await sliceEdgeTargets(v)).forEach((t, i) => {
      if (4 + i < n - 1) targets[4 + i] = t;
    });
    // the rest: V-2, V-3, ... (the last float4 of a row and the one before it, when V % 4 != 0)
    for (let r = 10; r < n - 1; r++) targets[r] = v - 2 - (r - 10);
    await compareCrossEntropy(mode, [n, c, v], targets);
  }
});

let wholeChunkEngine: Promise<CudaEngine> | null = null;

gpuTest(
  "cross-entropy rows of the persistent prefetching kernels: more rows than resident blocks",
  async (mode) => {
    // One chunk of 300 rows: blocks (or clusters, from V = 57345 on sm_90) loop over rows (300 is not a
    // multiple of the grid); ignored rows first, in the middle of a block's rows (its copy skipped: the
    // rows on each side use the same overflow buffer, the next row's copy issued by the ignored row) and
    // in a run of two; with one block per SM, the row after the one in the middle has its target in the
    // overflow. One block
    // with overflow columns: 40000, 45056, 56000, 57344 (all 6 overflow float4s); clusters of 3 with
    // overflow: 128256, 151928 (the last block shorter); padded rows (V % 4 != 0): 40001, GPT-2's 50257
    // (one block).
    wholeChunkEngine ??= CudaEngine.open({ crossEntropyChunkRows: 1000 });
    const engine = await wholeChunkEngine;
    const sms = engine.device.info.multiprocessors;
    for (const v of [32000, 4100, 32768, 40000, 45056, 56000, 57344, 128256, 151928, 40001, 50257]) {
      const n = 300;
      const targets = randint(n, v);
      for (const r of [0, sms, sms + 1, 2 * sms + 5]) if (r < n) targets[r] = IGNORE_INDEX;
      if (2 * sms + 1 < n) targets[2 * sms + 1] = Math.min(CE_HELD_COLUMNS + 9, v - 1);
      targets[n - 2] = v - 1;
      targets[n - 3] = v - 3;
      targets[1] = 0;
      (await sliceEdgeTargets(v)).forEach((t, i) => targets[2 + 3 * i] = t);
      await compareCrossEntropy(mode, [n, 8, v], targets, engine);
    }
  },
);

gpuTest("sum of squares and AdamW", async (mode) => {
  const n = 5003;
  await compareOp(mode, {
    grad: { shape: [n], data: randn(n) },
    norm: { shape: [1], kind: "f32", data: new Float32Array([2.5]), check: true },
    param: { shape: [n], kind: "f32", data: randn(n), check: true },
    m: { shape: [n], kind: "f32", data: randn(n, 0.1), check: true },
    v: { shape: [n], kind: "f32", data: randn(n, 0.1).map(Math.abs), check: true },
  }, (e, t) => {
    e.sumSquares({ out: t.norm, x: t.grad, accumulate: true });
    e.adamw({
      param: t.param,
      grad: t.grad,
      m: t.m,
      v: t.v,
      lr: 1e-2,
      beta1: 0.9,
      beta2: 0.95,
      eps: 1e-8,
      weightDecay: 0.1,
      step: 3,
      gradScale: 0.5,
    });
  }, TOLERANCE[mode]);
});

Deno.test({
  name: "cuda refuses tensors of mixed dtypes and of other engines with a clear error",
  ...GPU_TEST,
  async fn() {
    const e = await cudaEngine();
    const a = e.alloc([4], "bf16"), b = e.alloc([4], "f32"), out = e.alloc([4], "bf16");
    assertThrows(() => e.swigluForward({ out, gate: a, up: b }), UnsupportedError, "share one dtype");
    const cpuLike = { shape: [4], dtype: "f32", size: 4 } as const;
    assertThrows(() => e.scale({ x: cpuLike, alpha: 2 }), UnsupportedError, "not a CUDA tensor");
    for (const t of [a, b, out]) e.free(t);
    assert(e.memoryStats().reserved > 0);
  },
});

Deno.test({
  name: "cuda: running out of device memory throws DeviceMemoryError with the sizes and what to change",
  ...GPU_TEST,
  async fn() {
    const e = await cudaEngine();
    const error = assertThrows(
      () => e.alloc([1024, 1024, 1024, 256], "f32"),
      DeviceMemoryError,
      "asked for 1024.00 GiB",
    );
    assert(error.message.includes("shorter sequence"), error.message);
    const x = e.alloc([16]);
    e.free(x);
  },
});
