// The CPU engine: the Engine interface over Float32Array, f32 storage with f64 sums. The reference the
// CUDA engine is tested against, and what CI and the demo train on.

import { ShapeError } from "../../errors.ts";
import {
  type AdamWArgs,
  type AttentionBackwardArgs,
  type CrossEntropyArgs,
  type Engine,
  type HostArray,
  IGNORE_INDEX,
  type MatmulArgs,
  type RmsnormBackwardArgs,
  type Tensor,
  type TensorDType,
} from "../engine.ts";
import { attentionBackward, attentionForward } from "./attention.ts";
import { crossEntropy } from "./cross_entropy.ts";
import * as k from "./kernels.ts";
import { matmulF32 } from "./matmul.ts";
import { attentionDims, expectRank, expectShape, expectSize, expectSizes, ropeDims } from "../checks.ts";
import { CpuTensor, f32, i32, raw, roundBf16, roundOutputs, shapeSize } from "./tensor.ts";

/**
 * The TypeScript engine.
 *
 * @example
 * ```ts
 * const engine = new CpuEngine();
 * const x = engine.alloc([2, 3]);
 * engine.upload(x, new Float32Array([1, 2, 3, 4, 5, 6]));
 * console.log(await engine.download(x));
 * ```
 */
export class CpuEngine implements Engine {
  readonly name = "cpu";

  alloc(shape: readonly number[], dtype: TensorDType = "f32"): Tensor {
    const size = shapeSize(shape);
    const data = dtype === "i32" ? new Int32Array(size) : new Float32Array(size);
    return new CpuTensor([...shape], dtype, data);
  }

  view(base: Tensor, shape: readonly number[], offset = 0): Tensor {
    const t = raw("view", "base", base);
    const size = shapeSize(shape);
    if (!Number.isInteger(offset) || offset < 0 || offset + size > t.size) {
      throw new ShapeError(
        `view: elements ${offset}..${offset + size} do not fit in a tensor of ${t.size} elements`,
        { expected: t.size, actual: offset + size },
      );
    }
    return new CpuTensor([...shape], t.dtype, t.data.subarray(offset, offset + size));
  }

  free(_tensor: Tensor): void {
    // Memory is garbage-collected once the handle is dropped.
  }

  upload(tensor: Tensor, data: HostArray): void {
    const t = raw("upload", "tensor", tensor);
    expectSize("upload", "data", tensor, data.length);
    if ((t.dtype === "i32") !== (data instanceof Int32Array)) {
      throw new ShapeError(`upload: ${data.constructor.name} cannot go into a ${t.dtype} tensor`, {
        expected: t.dtype,
      });
    }
    t.data.set(data);
    roundOutputs(t);
  }

  download(tensor: Tensor): Promise<HostArray> {
    return Promise.resolve(raw("download", "tensor", tensor).data.slice());
  }

  sync(): Promise<void> {
    return Promise.resolve();
  }

  dispose(): void {}

  fill({ out, value }: { out: Tensor; value: number }): void {
    const t = raw("fill", "out", out);
    t.data.fill(t.dtype === "bf16" ? roundBf16(value) : value);
  }

  copy({ out, x }: { out: Tensor; x: Tensor }): void {
    const o = raw("copy", "out", out), s = raw("copy", "x", x);
    expectSize("copy", "x", x, out.size);
    expectShape(
      "copy",
      (o.dtype === "i32") === (s.dtype === "i32"),
      `cannot copy ${s.dtype} into ${o.dtype}`,
    );
    o.data.set(s.data);
    roundOutputs(o);
  }

  add({ out, a, b }: { out: Tensor; a: Tensor; b: Tensor }): void {
    const o = f32("add", "out", out), x = f32("add", "a", a), y = f32("add", "b", b);
    expectSize("add", "a", a, out.size);
    expectSize("add", "b", b, out.size);
    for (let i = 0; i < o.length; i++) o[i] = x[i] + y[i];
    roundOutputs(out);
  }

  scale({ x, alpha }: { x: Tensor; alpha: number }): void {
    const d = f32("scale", "x", x);
    for (let i = 0; i < d.length; i++) d[i] *= alpha;
    roundOutputs(x);
  }

  matmul(args: MatmulArgs): void {
    const transA = args.transA ?? false, transB = args.transB ?? false;
    const [ar, ac] = matrixDims("a", args.a), [br, bc] = matrixDims("b", args.b);
    const m = transA ? ac : ar, p = transA ? ar : ac;
    const pb = transB ? bc : br, n = transB ? br : bc;
    expectShape("matmul", p === pb, `inner dimensions differ: op(a) is [${m}, ${p}], op(b) is [${pb}, ${n}]`);
    expectSize("matmul", "out", args.out, m * n);
    const out = f32("matmul", "out", args.out);
    const a = f32("matmul", "a", args.a), b = f32("matmul", "b", args.b);
    expectShape(
      "matmul",
      !overlaps(out, a) && !overlaps(out, b),
      "out shares memory with an input",
    );
    matmulF32(out, a, b, { m, n, p, transA, transB, alpha: args.alpha ?? 1, beta: args.beta ?? 0 });
    roundOutputs(args.out);
  }

  biasAdd({ out, bias }: { out: Tensor; bias: Tensor }): void {
    const o = f32("biasAdd", "out", out), w = f32("biasAdd", "bias", bias);
    expectShape("biasAdd", o.length % w.length === 0, `out (${o.length}) is not rows of bias (${w.length})`);
    for (let i = 0; i < o.length; i += w.length) for (let j = 0; j < w.length; j++) o[i + j] += w[j];
    roundOutputs(out);
  }

  biasBackward({ dbias, dout }: { dbias: Tensor; dout: Tensor }): void {
    const g = f32("biasBackward", "dbias", dbias), d = f32("biasBackward", "dout", dout);
    expectShape(
      "biasBackward",
      d.length % g.length === 0,
      `dout (${d.length}) is not rows of dbias (${g.length})`,
    );
    const sum = new Float64Array(g.length);
    for (let i = 0; i < d.length; i += g.length) for (let j = 0; j < g.length; j++) sum[j] += d[i + j];
    for (let j = 0; j < g.length; j++) g[j] += sum[j];
    roundOutputs(dbias);
  }

  embeddingForward({ out, table, tokens }: { out: Tensor; table: Tensor; tokens: Tensor }): void {
    const [v, c] = expectRank("embeddingForward", "table", table, 2);
    const ids = this.#tokens("embeddingForward", tokens, v);
    expectSize("embeddingForward", "out", out, ids.length * c);
    const o = f32("embeddingForward", "out", out), w = f32("embeddingForward", "table", table);
    for (let n = 0; n < ids.length; n++) o.set(w.subarray(ids[n] * c, (ids[n] + 1) * c), n * c);
    roundOutputs(out);
  }

  embeddingBackward({ dtable, dout, tokens }: { dtable: Tensor; dout: Tensor; tokens: Tensor }): void {
    const [v, c] = expectRank("embeddingBackward", "dtable", dtable, 2);
    const ids = this.#tokens("embeddingBackward", tokens, v);
    expectSize("embeddingBackward", "dout", dout, ids.length * c);
    const g = f32("embeddingBackward", "dtable", dtable), d = f32("embeddingBackward", "dout", dout);
    for (let n = 0; n < ids.length; n++) {
      const go = ids[n] * c, dn = n * c;
      for (let j = 0; j < c; j++) g[go + j] += d[dn + j];
    }
    roundOutputs(dtable);
  }

  rmsnormForward(args: { out: Tensor; rstd: Tensor; x: Tensor; weight: Tensor; eps: number }): void {
    const op = "rmsnormForward";
    const rows = this.#normRows(op, args.x, args.weight, args.rstd);
    expectSize(op, "out", args.out, rows * args.weight.size);
    k.rmsnormForward(
      f32(op, "out", args.out),
      f32(op, "rstd", args.rstd),
      f32(op, "x", args.x),
      f32(op, "weight", args.weight),
      args.eps,
    );
    roundOutputs(args.out, args.rstd);
  }

  rmsnormBackward(args: RmsnormBackwardArgs): void {
    const op = "rmsnormBackward";
    this.#normRows(op, args.x, args.weight, args.rstd);
    expectSize(op, "dx", args.dx, args.x.size);
    expectSize(op, "dout", args.dout, args.x.size);
    expectSize(op, "dweight", args.dweight, args.weight.size);
    k.rmsnormBackward(
      f32(op, "dx", args.dx),
      f32(op, "dweight", args.dweight),
      f32(op, "dout", args.dout),
      f32(op, "x", args.x),
      f32(op, "weight", args.weight),
      f32(op, "rstd", args.rstd),
      args.accumulate ?? false,
    );
    roundOutputs(args.dx, args.dweight);
  }

  ropeForward(
    { out, x, invFreq, positions }: { out: Tensor; x: Tensor; invFreq: Tensor; positions: Tensor },
  ): void {
    const op = "ropeForward";
    const dims = ropeDims(op, { heads: out, shared: x, invFreq, positions });
    k.rope(
      f32(op, "out", out),
      f32(op, "x", x),
      f32(op, "invFreq", invFreq),
      i32(op, "positions", positions),
      dims,
      1,
    );
    roundOutputs(out);
  }

  ropeBackward(
    { dx, dout, invFreq, positions }: { dx: Tensor; dout: Tensor; invFreq: Tensor; positions: Tensor },
  ): void {
    const op = "ropeBackward";
    const dims = ropeDims(op, { heads: dout, shared: dx, invFreq, positions });
    const args = [
      f32(op, "dx", dx),
      f32(op, "dout", dout),
      f32(op, "invFreq", invFreq),
      i32(op, "positions", positions),
    ] as const;
    if (dims.ho === dims.hx) k.rope(...args, dims, -1);
    else k.ropeBackwardGrouped(...args, dims);
    roundOutputs(dx);
  }

  attentionForward(
    { out, lse, q, k: key, v }: { out: Tensor; lse: Tensor; q: Tensor; k: Tensor; v: Tensor },
  ): void {
    const op = "attentionForward";
    const dims = attentionDims(op, q, key, v);
    expectSize(op, "out", out, q.size);
    expectSize(op, "lse", lse, dims.b * dims.h * dims.t);
    attentionForward(
      f32(op, "out", out),
      f32(op, "lse", lse),
      f32(op, "q", q),
      f32(op, "k", key),
      f32(op, "v", v),
      dims,
    );
    roundOutputs(out, lse);
  }

  attentionBackward(args: AttentionBackwardArgs): void {
    const op = "attentionBackward";
    const dims = attentionDims(op, args.q, args.k, args.v);
    expectSize(op, "dq", args.dq, args.q.size);
    expectSize(op, "dk", args.dk, args.k.size);
    expectSize(op, "dv", args.dv, args.v.size);
    expectSizes(op, args.q.size, { dout: args.dout, out: args.out });
    expectSize(op, "lse", args.lse, dims.b * dims.h * dims.t);
    attentionBackward(
      { dq: f32(op, "dq", args.dq), dk: f32(op, "dk", args.dk), dv: f32(op, "dv", args.dv) },
      f32(op, "dout", args.dout),
      {
        q: f32(op, "q", args.q),
        k: f32(op, "k", args.k),
        v: f32(op, "v", args.v),
        out: f32(op, "out", args.out),
        lse: f32(op, "lse", args.lse),
      },
      dims,
    );
    roundOutputs(args.dq, args.dk, args.dv);
  }

  swigluForward({ out, gate, up }: { out: Tensor; gate: Tensor; up: Tensor }): void {
    const op = "swigluForward";
    expectSize(op, "gate", gate, out.size);
    expectSize(op, "up", up, out.size);
    k.swigluForward(f32(op, "out", out), f32(op, "gate", gate), f32(op, "up", up));
    roundOutputs(out);
  }

  swigluBackward(
    { dgate, dup, dout, gate, up }: { dgate: Tensor; dup: Tensor; dout: Tensor; gate: Tensor; up: Tensor },
  ): void {
    const op = "swigluBackward";
    expectSizes(op, dout.size, { dgate, dup, gate, up });
    k.swigluBackward(
      f32(op, "dgate", dgate),
      f32(op, "dup", dup),
      f32(op, "dout", dout),
      f32(op, "gate", gate),
      f32(op, "up", up),
    );
    roundOutputs(dgate, dup);
  }

  crossEntropy(args: CrossEntropyArgs): void {
    const op = "crossEntropy";
    const [v, c] = expectRank(op, "weight", args.weight, 2);
    const n = args.targets.size;
    const targets = i32(op, "targets", args.targets);
    for (const t of targets) {
      if (t !== IGNORE_INDEX && (t < 0 || t >= v || !Number.isInteger(t))) {
        throw new ShapeError(`${op}: target ${t} is outside the vocabulary of ${v}`, {
          expected: v,
          actual: t,
        });
      }
    }
    expectSize(op, "hidden", args.hidden, n * c);
    expectSize(op, "losses", args.losses, n);
    if (args.dhidden) expectSize(op, "dhidden", args.dhidden, n * c);
    if (args.dweight) expectSize(op, "dweight", args.dweight, v * c);
    crossEntropy(
      {
        losses: f32(op, "losses", args.losses),
        dhidden: args.dhidden && f32(op, "dhidden", args.dhidden),
        dweight: args.dweight && f32(op, "dweight", args.dweight),
      },
      f32(op, "hidden", args.hidden),
      f32(op, "weight", args.weight),
      targets,
      { n, c, v, scale: args.scale ?? 1 },
    );
    roundOutputs(args.losses, args.dhidden, args.dweight);
  }

  sumSquares({ out, x, accumulate }: { out: Tensor; x: Tensor; accumulate?: boolean }): void {
    const o = f32("sumSquares", "out", out), d = f32("sumSquares", "x", x);
    expectSize("sumSquares", "out", out, 1);
    let sum = 0;
    for (let i = 0; i < d.length; i++) sum += d[i] * d[i];
    o[0] = accumulate ? o[0] + sum : sum;
    roundOutputs(out);
  }

  adamw(args: AdamWArgs): void {
    const op = "adamw";
    expectSizes(op, args.param.size, { grad: args.grad, m: args.m, v: args.v });
    if (!(args.step >= 1)) throw new ShapeError(`${op}: step must count from 1, got ${args.step}`);
    k.adamw(
      f32(op, "param", args.param),
      f32(op, "grad", args.grad),
      f32(op, "m", args.m),
      f32(op, "v", args.v),
      {
        ...args,
        gradScale: args.gradScale ?? 1,
      },
    );
    roundOutputs(args.param, args.m, args.v);
  }

  #tokens(op: string, tokens: Tensor, vocab: number): Int32Array {
    const ids = i32(op, "tokens", tokens);
    for (const id of ids) {
      if (id < 0 || id >= vocab) {
        throw new ShapeError(`${op}: token id ${id} is outside the vocabulary of ${vocab}`, {
          expected: vocab,
          actual: id,
        });
      }
    }
    return ids;
  }

  #normRows(op: string, x: Tensor, weight: Tensor, rstd: Tensor): number {
    const width = weight.size;
    expectShape(op, width > 0 && x.size % width === 0, `x (${x.size}) is not rows of weight (${width})`);
    const rows = x.size / width;
    expectSize(op, "rstd", rstd, rows);
    return rows;
  }
}

function matrixDims(name: string, t: Tensor): [number, number] {
  const s = t.shape;
  if (s.length < 2) throw new ShapeError(`matmul: ${name} must be at least 2-D, got [${s.join(", ")}]`);
  const cols = s[s.length - 1];
  return [t.size / cols, cols];
}

function overlaps(x: Float32Array, y: Float32Array): boolean {
  return x.buffer === y.buffer && x.byteOffset < y.byteOffset + y.byteLength &&
    y.byteOffset < x.byteOffset + x.byteLength;
}
