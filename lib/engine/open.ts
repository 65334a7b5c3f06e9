// Picks the engine for a `--device` name: the only place that knows every engine implementation.

import { UnsupportedError } from "../errors.ts";
import { CpuEngine } from "./cpu/mod.ts";
import type { Engine } from "./engine.ts";

/** Device names `--device` accepts. */
export const DEVICES = ["cpu", "cuda"] as const;

/** One of DEVICES. */
export type Device = typeof DEVICES[number];

/**
 * The engine for `device`. Throws UnsupportedError for an unknown device or one that is not available.
 *
 * @example
 * ```ts
 * const engine = await openEngine("cpu");
 * ```
 */
export function openEngine(device: string): Promise<Engine> {
  if (device === "cpu") return Promise.resolve(new CpuEngine());
  if (device === "cuda") {
    return Promise.reject(
      new UnsupportedError("The CUDA engine is not wired into harpe yet", { hint: "use --device cpu" }),
    );
  }
  return Promise.reject(
    new UnsupportedError(`Unknown device "${device}"`, {
      expected: DEVICES,
      hint: `use one of ${DEVICES.join(", ")}`,
    }),
  );
}
