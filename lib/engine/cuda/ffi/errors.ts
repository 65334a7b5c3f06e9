// Errors of the CUDA engine: a failed driver/NVRTC/cuBLASLt call (naming the call and the library's
// error string), a machine without a usable CUDA stack, and running out of device memory.

import { UnsupportedError } from "../../../errors.ts";

/** A CUDA library call returned a non-success status. */
export class CudaError extends Error {
  override name = "CudaError";
  constructor(
    /** The C function that failed, e.g. "cuMemAlloc_v2". */
    readonly call: string,
    /** Its numeric status. */
    readonly status: number,
    /** The library's name for the status, e.g. "CUDA_ERROR_INVALID_VALUE". */
    readonly statusName: string,
    detail = "",
  ) {
    super(`${call} failed: ${statusName} (${status})${detail ? `: ${detail}` : ""}`);
  }
}

/** No CUDA driver, device or library could be used on this machine (the `cpu` device still works). */
export class CudaUnavailableError extends UnsupportedError {
  override name = "CudaUnavailableError";
}

/** The device has not enough free memory for an allocation. */
export class DeviceMemoryError extends UnsupportedError {
  override name = "DeviceMemoryError";
}
