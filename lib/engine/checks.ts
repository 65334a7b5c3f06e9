// Argument checks shared by every engine (CPU and CUDA apply the same rules): sizes, ranks and
// dtypes, each failing with a ShapeError or UnsupportedError that names the op and the tensor.

import { ShapeError, UnsupportedError } from "../errors.ts";
import type { Tensor, TensorDType } from "./engine.ts";

/** Throws a ShapeError unless `tensor` holds exactly `size` elements. */
export function expectSize(op: string, name: string, tensor: Tensor, size: number): void {
  if (tensor.size !== size) {
    throw new ShapeError(`${op}: ${name} has ${tensor.size} elements, expected ${size}`, {
      tensor: name,
      expected: size,
      actual: tensor.size,
    });
  }
}

/** Throws a ShapeError unless every tensor of `tensors` (by name) holds exactly `size` elements. */
export function expectSizes(op: string, size: number, tensors: Record<string, Tensor>): void {
  for (const [name, tensor] of Object.entries(tensors)) expectSize(op, name, tensor, size);
}

/** Throws a ShapeError unless `tensor` has `rank` dimensions; returns its shape. */
export function expectRank(op: string, name: string, tensor: Tensor, rank: number): readonly number[] {
  if (tensor.shape.length !== rank) {
    throw new ShapeError(`${op}: ${name} must have ${rank} dimensions, got [${tensor.shape.join(", ")}]`, {
      tensor: name,
      expected: rank,
      actual: tensor.shape,
    });
  }
  return tensor.shape;
}

/** Throws a ShapeError with `message` when `condition` is false. */
export function expectShape(op: string, condition: boolean, message: string): void {
  if (!condition) throw new ShapeError(`${op}: ${message}`);
}

/** Throws unless `tensor` is f32 or bf16; returns its dtype. */
export function floatType(op: string, name: string, tensor: Tensor): "f32" | "bf16" {
  if (tensor.dtype === "i32") {
    throw new UnsupportedError(`${op}: ${name} must be f32 or bf16, got i32`, {
      tensor: name,
      actual: "i32",
    });
  }
  return tensor.dtype;
}

/** Throws unless every tensor has the same float dtype; returns it. */
export function sameFloatType(op: string, tensors: Record<string, Tensor>): "f32" | "bf16" {
  const entries = Object.entries(tensors);
  const dtype = floatType(op, entries[0][0], entries[0][1]);
  for (const [name, t] of entries) {
    if (t.dtype !== dtype) {
      throw new UnsupportedError(
        `${op}: ${name} is ${t.dtype} but ${entries[0][0]} is ${dtype}; these tensors must share one dtype`,
        { tensor: name, expected: dtype, actual: t.dtype },
      );
    }
  }
  return dtype;
}

/** Throws unless `tensor` has dtype `dtype`. */
export function expectDType(op: string, name: string, tensor: Tensor, dtype: TensorDType): void {
  if (tensor.dtype !== dtype) {
    throw new UnsupportedError(`${op}: ${name} must be ${dtype}, got ${tensor.dtype}`, {
      tensor: name,
      expected: dtype,
      actual: tensor.dtype,
    });
  }
}

/** The tensors of a RoPE op: rotated heads [rows, Ho, D], unrotated heads [rows, Hx, D], invFreq
 * [Ho, R/2] and positions [rows]. */
export interface RopeTensors {
  heads: Tensor;
  shared: Tensor;
  invFreq: Tensor;
  positions: Tensor;
}

/** Checks the shapes of a RoPE op's tensors (see Engine.ropeForward) and returns its dimensions. */
export function ropeDims(
  op: string,
  t: RopeTensors,
): { rows: number; hx: number; ho: number; d: number; half: number } {
  const [rows, ho, d] = expectRank(op, "rotated heads", t.heads, 3);
  const [rowsX, hx, dx] = expectRank(op, "unrotated heads", t.shared, 3);
  const [hf, half] = expectRank(op, "invFreq", t.invFreq, 2);
  expectShape(
    op,
    rows === rowsX && d === dx,
    `head tensors [${t.heads.shape}] and [${t.shared.shape}] differ`,
  );
  expectShape(op, ho % hx === 0, `${ho} rotated heads are not a multiple of ${hx} heads`);
  expectShape(
    op,
    hf === ho && 2 * half <= d,
    `invFreq [${t.invFreq.shape}] does not fit ${ho} heads of ${d}`,
  );
  expectSize(op, "positions", t.positions, rows);
  return { rows, hx, ho, d, half };
}

/** Sizes of one attention call: q [B, T, H, D], k [B, T, Hk, D], v [B, T, Hv, D]. */
export interface AttentionDims {
  b: number;
  t: number;
  h: number;
  hk: number;
  hv: number;
  d: number;
}

/** Checks that q, k and v fit together (same B, T and D; Hk and Hv divide H) and returns the sizes. */
export function attentionDims(op: string, q: Tensor, k: Tensor, v: Tensor): AttentionDims {
  const [b, t, h, d] = expectRank(op, "q", q, 4);
  const [kb, kt, hk, kd] = expectRank(op, "k", k, 4);
  const [vb, vt, hv, vd] = expectRank(op, "v", v, 4);
  expectShape(
    op,
    b === kb && b === vb && t === kt && t === vt && d === kd && d === vd,
    `q [${q.shape}], k [${k.shape}], v [${v.shape}] differ in batch, tokens or head dim`,
  );
  expectShape(op, h % hk === 0 && h % hv === 0, `${h} query heads are not a multiple of ${hk} / ${hv} heads`);
  return { b, t, h, hk, hv, d };
}
