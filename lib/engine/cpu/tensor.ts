// CPU tensors: a typed array (or a subarray view of one) with a shape, and the checks every CPU op runs
// on its arguments before touching memory.

import { ShapeError, UnsupportedError } from "../../errors.ts";
import type { Tensor, TensorDType } from "../engine.ts";

/** A CPU tensor. bf16 tensors are stored as f32 values rounded to bf16. */
export class CpuTensor implements Tensor {
  readonly size: number;
  constructor(
    readonly shape: readonly number[],
    readonly dtype: TensorDType,
    readonly data: Float32Array | Int32Array,
  ) {
    this.size = data.length;
  }
}

/** Number of elements of a shape. */
export function shapeSize(shape: readonly number[]): number {
  let size = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new ShapeError(`Invalid tensor shape [${shape.join(", ")}]`, { actual: shape });
    }
    size *= d;
  }
  return size;
}

function cpu(op: string, name: string, tensor: Tensor): CpuTensor {
  if (!(tensor instanceof CpuTensor)) {
    throw new UnsupportedError(`${op}: ${name} is not a CPU tensor`, {
      hint: "allocate it with the same engine",
    });
  }
  return tensor;
}

/** The data of a float tensor argument (f32, or bf16 held as f32 values rounded to bf16). */
export function f32(op: string, name: string, tensor: Tensor): Float32Array {
  const t = cpu(op, name, tensor);
  if (t.dtype === "i32") {
    throw new ShapeError(`${op}: ${name} must be a float tensor (f32 or bf16), got i32`, {
      expected: "f32 or bf16",
      actual: t.dtype,
    });
  }
  return t.data as Float32Array;
}

/** Rounds the values of every bf16 tensor among `outputs` to bf16 (after an op wrote them in f32). */
export function roundOutputs(...outputs: (Tensor | undefined)[]): void {
  for (const t of outputs) {
    if (t instanceof CpuTensor && t.dtype === "bf16") {
      const data = t.data as Float32Array;
      for (let i = 0; i < data.length; i++) data[i] = roundBf16(data[i]);
    }
  }
}

/** The data of an i32 tensor argument. */
export function i32(op: string, name: string, tensor: Tensor): Int32Array {
  const t = cpu(op, name, tensor);
  if (t.dtype !== "i32") {
    throw new ShapeError(`${op}: ${name} must be i32, got ${t.dtype}`, { expected: "i32", actual: t.dtype });
  }
  return t.data as Int32Array;
}

/** The raw data of any tensor argument of this engine. */
export function raw(op: string, name: string, tensor: Tensor): CpuTensor {
  return cpu(op, name, tensor);
}

/** Rounds an f32 value to the nearest bf16 (ties to even), kept as a number. */
export function roundBf16(value: number): number {
  SCRATCH_F32[0] = value;
  const bits = SCRATCH_U32[0];
  if ((bits & 0x7f800000) === 0x7f800000) return value;
  SCRATCH_U32[0] = ((bits + 0x7fff + ((bits >>> 16) & 1)) & 0xffff0000) >>> 0;
  return SCRATCH_F32[0];
}

const SCRATCH_F32 = new Float32Array(1);
const SCRATCH_U32 = new Uint32Array(SCRATCH_F32.buffer);
