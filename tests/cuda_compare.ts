// Helpers of the CUDA tests: one shared CUDA engine per test file, random inputs, and running the same
// op on the CPU engine (the reference) and on the CUDA engine to compare every output.

import { CpuEngine } from "../lib/engine/cpu/mod.ts";
import { CudaEngine, type CudaEngineOptions, hasCuda } from "../lib/engine/cuda/mod.ts";
import type { Engine, HostArray, Tensor, TensorDType } from "../lib/engine/engine.ts";
import { AssertionError } from "./assert.ts";

/** True when a CUDA device is usable here (the GPU tests ignore themselves otherwise). */
export const GPU = hasCuda();

/** Deno.test options shared by the GPU tests (the driver library stays open across tests). */
export const GPU_TEST = { ignore: !GPU, sanitizeResources: false, sanitizeOps: false } as const;

let shared: Promise<CudaEngine> | null = null;

/** The CUDA engine shared by a test file (small lm-head chunks so chunking is exercised). */
export function cudaEngine(options: CudaEngineOptions = {}): Promise<CudaEngine> {
  shared ??= CudaEngine.open({ crossEntropyChunkRows: 7, ...options });
  return shared;
}

/** Standard normal samples (Box-Muller), fresh each call. */
export function randn(size: number, scale = 1): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    const u = 1 - Math.random(), v = Math.random();
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

/** Uniform integers in [0, max). */
export function randint(size: number, max: number): Int32Array {
  return Int32Array.from({ length: size }, () => Math.floor(Math.random() * max));
}

/** Rounds to bf16 (nearest even), as f32 values. */
export function roundBf16(values: Float32Array): Float32Array {
  const out = new Float32Array(values);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    if ((b & 0x7f800000) !== 0x7f800000) bits[i] = ((b + 0x7fff + ((b >>> 16) & 1)) & 0xffff0000) >>> 0;
  }
  return out;
}

/** "act": the mode's activation dtype (f32 or bf16); "f32" and "i32" are fixed. */
export type Kind = "act" | "f32" | "i32";

/** One tensor of a comparison: its shape, kind, initial data, and whether it is checked afterwards. */
export interface TensorSpec {
  shape: number[];
  kind?: Kind;
  data: HostArray;
  check?: boolean;
}

/** Max |a - b| / max |b| (NaN when either holds a NaN). */
export function relativeError(a: HostArray, b: HostArray): number {
  let diff = 0, ref = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) || Number.isNaN(b[i])) return NaN;
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    ref = Math.max(ref, Math.abs(b[i]));
  }
  return diff / Math.max(ref, 1e-30);
}

async function runOn(
  engine: Engine,
  mode: "f32" | "bf16",
  specs: Record<string, TensorSpec>,
  op: (e: Engine, t: Record<string, Tensor>) => void,
  asCpu: boolean,
): Promise<Record<string, HostArray>> {
  const tensors: Record<string, Tensor> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const kind = spec.kind ?? "act";
    const dtype: TensorDType = kind === "i32"
      ? "i32"
      : kind === "act" && mode === "bf16" && !asCpu
      ? "bf16"
      : "f32";
    const data = kind === "act" && mode === "bf16" ? roundBf16(spec.data as Float32Array) : spec.data;
    tensors[name] = engine.alloc(spec.shape, dtype);
    engine.upload(tensors[name], data);
  }
  op(engine, tensors);
  const results: Record<string, HostArray> = {};
  for (const [name, spec] of Object.entries(specs)) {
    if (spec.check) results[name] = await engine.download(tensors[name]);
  }
  for (const t of Object.values(tensors)) engine.free(t);
  return results;
}

/**
 * Runs `op` on the CPU engine (f32, on bf16-rounded inputs in bf16 mode) and on the CUDA engine (act
 * tensors in `mode`), and throws unless every checked tensor agrees within `tolerance` (relativeError).
 * Returns the errors by tensor name. `engine`: the CUDA engine to use (default: the file's shared one).
 */
export async function compareOp(
  mode: "f32" | "bf16",
  specs: Record<string, TensorSpec>,
  op: (e: Engine, t: Record<string, Tensor>) => void,
  tolerance: number,
  engine?: CudaEngine,
): Promise<Record<string, number>> {
  const expected = await runOn(new CpuEngine(), mode, specs, op, true);
  const actual = await runOn(engine ?? await cudaEngine(), mode, specs, op, false);
  const errors: Record<string, number> = {};
  for (const name of Object.keys(expected)) {
    const error = relativeError(actual[name], expected[name]);
    errors[name] = error;
    if (!(error <= tolerance)) {
      throw new AssertionError(
        `${name}: relative error ${error.toExponential(2)} above ${tolerance} (${mode}); ` +
          `cuda [${Array.from(actual[name].slice(0, 4))}] cpu [${Array.from(expected[name].slice(0, 4))}]`,
      );
    }
  }
  return errors;
}
