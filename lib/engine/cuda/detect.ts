// Cheap detection of a usable CUDA device, for tests and device selection: never throws.

import { Driver } from "./ffi/driver.ts";

let cached: boolean | null = null;

/**
 * True when libcuda loads, the driver starts and at least one device is visible. Needs --allow-ffi
 * (returns false without it).
 *
 * @example
 * ```ts
 * Deno.test({ name: "gpu op", ignore: !hasCuda(), fn() {} });
 * ```
 */
export function hasCuda(): boolean {
  if (cached === null) {
    try {
      cached = Driver.open().deviceCount() > 0;
    } catch {
      cached = false;
    }
  }
  return cached;
}
