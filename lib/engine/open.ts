// Picks the engine for a `--device` name: the only place that knows every engine implementation.

import { UnsupportedError } from "../errors.ts";
import { CpuEngine } from "./cpu/mod.ts";
import type { Engine } from "./engine.ts";

/** Device names `--device` accepts. */
export const DEVICES = ["cpu", "cuda"] as const;

/** One of DEVICES. */
export type Device = typeof DEVICES[number];

/**
 * The engine for `device`. Throws UnsupportedError for an unknown device or one that is not available
 * (CudaUnavailableError, a subclass, when CUDA cannot be used here). `cudaLibDir` is a folder holding
 * libcuda / libnvrtc / libcublasLt when they are not in the usual places.
 *
 * @example
 * ```ts
 * const engine = await openEngine("cpu");
 * ```
 */
export function openEngine(device: string, options: { cudaLibDir?: string } = {}): Promise<Engine> {
  if (device === "cpu") return Promise.resolve(new CpuEngine());
  if (device === "cuda") {
    // Loaded only when asked for: nothing of CUDA is opened on the cpu path.
    return import("./cuda/mod.ts").then((cuda) => cuda.CudaEngine.open({ libDir: options.cudaLibDir }));
  }
  return Promise.reject(
    new UnsupportedError(`Unknown device "${device}"`, {
      expected: DEVICES,
      hint: `use one of ${DEVICES.join(", ")}`,
    }),
  );
}
