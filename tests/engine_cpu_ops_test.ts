// The CPU engine's ops against float64 naive references (forward) and finite differences of those
// references (backward), on fresh random inputs each run (the seed is printed on failure).

import { CpuEngine } from "../lib/engine/cpu/mod.ts";
import { IGNORE_INDEX, type Tensor } from "../lib/engine/engine.ts";
import { ShapeError } from "../lib/errors.ts";
import { assert, assertAlmostEquals, assertEquals, assertThrows } from "./assert.ts";
import {
  finiteDifference,
  makeRandom,
  randomArray,
  refAttention,
  refCrossEntropy,
  refMatmul,
  refRmsnorm,
  refRope,
  relativeError,
} from "./engine_cpu_reference.ts";

const FORWARD_TOLERANCE = 1e-5;
const BACKWARD_TOLERANCE = 1e-4;

const engine = new CpuEngine();
const random = makeRandom();
const rand = random.next;

function put(shape: number[], values: ArrayLike<number>): Tensor {
  const t = engine.alloc(shape);
  engine.upload(t, Float32Array.from(values));
  return t;
}

function ints(values: number[]): Tensor {
  const t = engine.alloc([values.length], "i32");
  engine.upload(t, Int32Array.from(values));
  return t;
}

async function get(t: Tensor): Promise<Float64Array> {
  return Float64Array.from(await engine.download(t));
}

function close(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tolerance: number,
  what: string,
): void {
  const error = relativeError(actual, expected);
  assert(error <= tolerance, `${what}: relative error ${error} > ${tolerance} (seed ${random.seed})`);
}

/** Rounds to f32 so the f64 reference sees exactly what the engine sees. */
function f32(values: Float64Array): Float64Array {
  return Float64Array.from(Float32Array.from(values));
}

Deno.test("matmul: every transpose, alpha and beta against float64", async () => {
  const [m, n, p] = [7, 9, 13];
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      const a = f32(randomArray(rand, m * p)),
        b = f32(randomArray(rand, p * n)),
        c = f32(randomArray(rand, m * n));
      const out = put([m, n], c);
      engine.matmul({
        out,
        a: put(transA ? [p, m] : [m, p], a),
        b: put(transB ? [n, p] : [p, n], b),
        transA,
        transB,
        alpha: 0.5,
        beta: 1,
      });
      const expected = refMatmul(a, b, m, n, p, transA, transB).map((x, i) => 0.5 * x + c[i]);
      close(await get(out), expected, FORWARD_TOLERANCE, `matmul transA=${transA} transB=${transB}`);
    }
  }
});

Deno.test("matmul: beta 0 ignores the old output, shapes are checked", async () => {
  const out = put([2, 2], [NaN, NaN, NaN, NaN]);
  engine.matmul({ out, a: put([2, 1], [1, 2]), b: put([1, 2], [3, 4]) });
  assertEquals([...await get(out)], [3, 4, 6, 8]);
  assertThrows(
    () => engine.matmul({ out, a: put([2, 3], new Float32Array(6)), b: put([2, 2], [1, 2, 3, 4]) }),
    ShapeError,
  );
  const x = put([2, 2], [1, 2, 3, 4]);
  assertThrows(
    () => engine.matmul({ out: x, a: x, b: put([2, 2], [1, 0, 0, 1]) }),
    ShapeError,
    "shares memory",
  );
});

Deno.test("add, scale, fill, copy, view, bias add and bias backward", async () => {
  const a = put([2, 3], [1, 2, 3, 4, 5, 6]), b = put([2, 3], [10, 20, 30, 40, 50, 60]);
  const out = engine.alloc([2, 3]);
  engine.add({ out, a, b });
  assertEquals([...await get(out)], [11, 22, 33, 44, 55, 66]);
  engine.scale({ x: out, alpha: 2 });
  engine.biasAdd({ out, bias: put([3], [1, 2, 3]) });
  assertEquals([...await get(out)], [23, 46, 69, 89, 112, 135]);
  const dbias = put([3], [1, 1, 1]);
  engine.biasBackward({ dbias, dout: a });
  assertEquals([...await get(dbias)], [6, 8, 10]);
  const row = engine.view(out, [3], 3);
  engine.fill({ out: row, value: 0.5 });
  assertEquals([...await get(out)], [23, 46, 69, 0.5, 0.5, 0.5]);
  assertThrows(() => engine.view(out, [4], 3), ShapeError);
  // bf16 keeps 8 significant bits, rounding to nearest even.
  const half = engine.alloc([4], "bf16");
  engine.copy({ out: half, x: put([4], [1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -7, -3.14159]) });
  assertEquals([...await get(half)], [1, 1 + 2 ** -6, 1 + 2 ** -7, -3.140625]);
  // bf16 compute: inputs as stored, outputs rounded to bf16.
  engine.add({ out: half, a: half, b: half });
  assertEquals([...await get(half)], [2, 2 + 2 ** -5, 2 + 2 ** -6, -6.28125]);
  const sum = engine.alloc([1], "bf16");
  engine.matmul({ out: sum, a: put([1, 2], [1, 2 ** -9]), b: put([2, 1], [1, 1]) });
  assertEquals([...await get(sum)], [1]);
  assertThrows(() => engine.add({ out, a: ints([1, 2, 3, 4, 5, 6]), b }), ShapeError, "float");
});

Deno.test("embedding forward and backward", async () => {
  const [v, c] = [5, 3];
  const table = randomArray(rand, v * c);
  const tokens = [4, 0, 4, 2];
  const out = engine.alloc([4, c]);
  engine.embeddingForward({ out, table: put([v, c], table), tokens: ints(tokens) });
  close(
    await get(out),
    f32(Float64Array.from(tokens.flatMap((t) => [...table.subarray(t * c, t * c + c)]))),
    0,
    "fwd",
  );
  const dout = randomArray(rand, 4 * c);
  const dtable = put([v, c], new Float32Array(v * c).fill(1));
  engine.embeddingBackward({ dtable, dout: put([4, c], dout), tokens: ints(tokens) });
  const expected = new Float64Array(v * c).fill(1);
  tokens.forEach((t, n) => {
    for (let j = 0; j < c; j++) expected[t * c + j] += dout[n * c + j];
  });
  close(await get(dtable), expected, FORWARD_TOLERANCE, "bwd");
  assertThrows(
    () => engine.embeddingForward({ out, table: put([v, c], table), tokens: ints([0, 1, 5, 2]) }),
    ShapeError,
  );
});

Deno.test("rmsnorm forward, and backward against finite differences (dx accumulates)", async () => {
  const [rows, width, eps] = [5, 8, 1e-5];
  const x = f32(randomArray(rand, rows * width, 2)), w = f32(randomArray(rand, width));
  const out = engine.alloc([rows, width]), rstd = engine.alloc([rows]);
  const xt = put([rows, width], x), wt = put([width], w);
  engine.rmsnormForward({ out, rstd, x: xt, weight: wt, eps });
  close(await get(out), refRmsnorm(x, w, eps), FORWARD_TOLERANCE, "forward");
  const dout = randomArray(rand, rows * width);
  const base = randomArray(rand, rows * width);
  const dx = put([rows, width], base), dw = put([width], new Float32Array(width).fill(2));
  engine.rmsnormBackward({
    dx,
    dweight: dw,
    dout: put([rows, width], dout),
    x: xt,
    weight: wt,
    rstd,
    accumulate: true,
  });
  const f = ([xi, wi]: Float64Array[]) => refRmsnorm(xi, wi, eps);
  const gx = finiteDifference(f, [x, w], dout, 0).map((g, i) => g + base[i]);
  const gw = finiteDifference(f, [x, w], dout, 1).map((g) => g + 2);
  close(await get(dx), gx, BACKWARD_TOLERANCE, "dx");
  close(await get(dw), gw, BACKWARD_TOLERANCE, "dweight");
});

Deno.test("rope forward and backward: per-head bases, shared heads, partial rotary", async () => {
  for (const [hx, ho, d, rotary] of [[3, 3, 8, 8], [2, 6, 8, 4]]) {
    const rows = 4;
    const positions = [0, 5, 17, 1000];
    const bases = Array.from({ length: ho }, (_, h) => 10 ** (2 + h));
    const half = rotary / 2;
    const inv = bases.flatMap((b) => Array.from({ length: half }, (_, i) => Math.pow(b, (-2 * i) / rotary)));
    const x = f32(randomArray(rand, rows * hx * d));
    const xt = put([rows, hx, d], x), invFreq = put([ho, half], inv), pos = ints(positions);
    const out = engine.alloc([rows, ho, d]);
    engine.ropeForward({ out, x: xt, invFreq, positions: pos });
    const ref = (inputs: Float64Array[]) => refRope(inputs[0], positions, bases, { hx, d, rotary });
    close(await get(out), ref([x]), FORWARD_TOLERANCE, `forward ${hx}->${ho}`);
    const dout = randomArray(rand, rows * ho * d);
    const dx = engine.alloc([rows, hx, d]);
    engine.ropeBackward({ dx, dout: put([rows, ho, d], dout), invFreq, positions: pos });
    close(await get(dx), finiteDifference(ref, [x], dout, 0), BACKWARD_TOLERANCE, `backward ${hx}->${ho}`);
  }
});

Deno.test("rope in place when heads match", async () => {
  const x = put([1, 1, 4], [1, 2, 3, 4]);
  engine.ropeForward({ out: x, x, invFreq: put([1, 2], [1, 0.5]), positions: ints([2]) });
  const expected = refRope(Float64Array.from([1, 2, 3, 4]), [2], [4], { hx: 1, d: 4, rotary: 4 });
  close(await get(x), expected, FORWARD_TOLERANCE, "in place");
});

Deno.test("attention forward (with lse) and backward: causal, GQA, separate key and value heads", async () => {
  for (const dims of [{ b: 2, t: 5, h: 2, hk: 2, hv: 2, d: 4 }, { b: 1, t: 6, h: 4, hk: 4, hv: 2, d: 4 }]) {
    const { b, t, h, hk, hv, d } = dims;
    const q = f32(randomArray(rand, b * t * h * d, 2));
    const k = f32(randomArray(rand, b * t * hk * d, 2));
    const v = f32(randomArray(rand, b * t * hv * d));
    const [qt, kt, vt] = [put([b, t, h, d], q), put([b, t, hk, d], k), put([b, t, hv, d], v)];
    const out = engine.alloc([b, t, h, d]), lse = engine.alloc([b, h, t]);
    engine.attentionForward({ out, lse, q: qt, k: kt, v: vt });
    const ref = refAttention(q, k, v, dims);
    close(await get(out), ref.out, FORWARD_TOLERANCE, "out");
    close(await get(lse), ref.lse, FORWARD_TOLERANCE, "lse");
    const dout = randomArray(rand, b * t * h * d);
    const dq = engine.alloc([b, t, h, d]), dk = engine.alloc([b, t, hk, d]), dv = engine.alloc([b, t, hv, d]);
    engine.attentionBackward({ dq, dk, dv, dout: put([b, t, h, d], dout), q: qt, k: kt, v: vt, out, lse });
    const f = (inputs: Float64Array[]) => refAttention(inputs[0], inputs[1], inputs[2], dims).out;
    for (const [i, name, got] of [[0, "dq", dq], [1, "dk", dk], [2, "dv", dv]] as const) {
      close(
        await get(got),
        finiteDifference(f, [q, k, v], dout, i),
        BACKWARD_TOLERANCE,
        `${name} ${JSON.stringify(dims)}`,
      );
    }
  }
});

Deno.test("swiglu forward and backward", async () => {
  const n = 12;
  const gate = f32(randomArray(rand, n, 4)), up = f32(randomArray(rand, n));
  const out = engine.alloc([n]);
  const [gt, ut] = [put([n], gate), put([n], up)];
  engine.swigluForward({ out, gate: gt, up: ut });
  const f = ([g, u]: Float64Array[]) => g.map((x, i) => (x / (1 + Math.exp(-x))) * u[i]);
  close(await get(out), f([gate, up]), FORWARD_TOLERANCE, "forward");
  const dout = randomArray(rand, n);
  const dgate = engine.alloc([n]), dup = engine.alloc([n]);
  engine.swigluBackward({ dgate, dup, dout: put([n], dout), gate: gt, up: ut });
  close(await get(dgate), finiteDifference(f, [gate, up], dout, 0), BACKWARD_TOLERANCE, "dgate");
  close(await get(dup), finiteDifference(f, [gate, up], dout, 1), BACKWARD_TOLERANCE, "dup");
});

Deno.test("cross-entropy: losses, ignored rows, chunking, dhidden and accumulated dweight", async () => {
  const [n, c, v] = [70, 4, 6];
  const hidden = f32(randomArray(rand, n * c, 2)), weight = f32(randomArray(rand, v * c, 2));
  const targets = Array.from(
    { length: n },
    (_, i) => (i % 9 === 0 ? IGNORE_INDEX : Math.floor(((rand() + 1) / 2) * v)),
  );
  const losses = engine.alloc([n]), dhidden = engine.alloc([n, c]);
  const dweight = put([v, c], new Float32Array(v * c).fill(1));
  const [ht, wt, tt] = [put([n, c], hidden), put([v, c], weight), ints(targets)];
  engine.crossEntropy({ losses, hidden: ht, weight: wt, targets: tt, dhidden, dweight, scale: 0.25 });
  const f = ([h, w]: Float64Array[]) => refCrossEntropy(h, w, targets, c);
  close(await get(losses), f([hidden, weight]), FORWARD_TOLERANCE, "losses");
  const dloss = new Float64Array(n).fill(0.25);
  close(await get(dhidden), finiteDifference(f, [hidden, weight], dloss, 0), BACKWARD_TOLERANCE, "dhidden");
  const gw = finiteDifference(f, [hidden, weight], dloss, 1).map((g) => g + 1);
  close(await get(dweight), gw, BACKWARD_TOLERANCE, "dweight");
  const only = engine.alloc([n]);
  engine.crossEntropy({ losses: only, hidden: ht, weight: wt, targets: tt });
  assertEquals([...await get(only)], [...await get(losses)]);
  assertThrows(
    () => engine.crossEntropy({ losses: only, hidden: ht, weight: wt, targets: ints(new Array(n).fill(v)) }),
    ShapeError,
  );
});

Deno.test("sumSquares and adamw against a float64 recomputation", async () => {
  const n = 10;
  const p = f32(randomArray(rand, n)), g = f32(randomArray(rand, n)), m0 = f32(randomArray(rand, n, 0.1));
  const v0 = f32(randomArray(rand, n, 0.1).map(Math.abs));
  const out = put([1], [3]);
  engine.sumSquares({ out, x: put([n], g), accumulate: true });
  assertAlmostEquals((await get(out))[0], 3 + g.reduce((s, x) => s + x * x, 0), 1e-5);
  const [pt, gt, mt, vt] = [put([n], p), put([n], g), put([n], m0), put([n], v0)];
  const h = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 3, gradScale: 0.5 };
  engine.adamw({ param: pt, grad: gt, m: mt, v: vt, ...h });
  const expected = Array.from(p, (pi, i) => {
    const gi = g[i] * 0.5;
    const mi = 0.9 * m0[i] + 0.1 * gi, vi = 0.95 * v0[i] + 0.05 * gi * gi;
    const update = (mi / (1 - 0.9 ** 3)) / (Math.sqrt(vi / (1 - 0.95 ** 3)) + 1e-8);
    return pi * (1 - 0.01 * 0.1) - 0.01 * update;
  });
  close(await get(pt), expected, FORWARD_TOLERANCE, "adamw params");
});
