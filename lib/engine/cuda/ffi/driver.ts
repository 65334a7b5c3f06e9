// Bindings to the CUDA driver API (libcuda) through Deno FFI: device and primary context, memory
// (device, pinned host), copies, streams, events, modules and kernel launches. Device pointers and
// handles are bigints; every call goes through `check`, which names the call and the CUDA error.

import { CudaError, CudaUnavailableError, DeviceMemoryError } from "./errors.ts";
import { openCudaLibrary } from "./library.ts";

const H = "usize" as const; // an opaque handle (context, stream, event, module, function) as a bigint
const P = "u64" as const; // a device pointer (CUdeviceptr)

const SYMBOLS = {
  cuInit: { parameters: ["u32"], result: "i32" },
  cuGetErrorName: { parameters: ["i32", "buffer"], result: "i32" },
  cuGetErrorString: { parameters: ["i32", "buffer"], result: "i32" },
  cuDriverGetVersion: { parameters: ["buffer"], result: "i32" },
  cuDeviceGetCount: { parameters: ["buffer"], result: "i32" },
  cuDeviceGet: { parameters: ["buffer", "i32"], result: "i32" },
  cuDeviceGetName: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  cuDeviceGetAttribute: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  cuDeviceTotalMem_v2: { parameters: ["buffer", "i32"], result: "i32" },
  cuDevicePrimaryCtxRetain: { parameters: ["buffer", "i32"], result: "i32" },
  cuDevicePrimaryCtxRelease_v2: { parameters: ["i32"], result: "i32" },
  cuCtxSetCurrent: { parameters: [H], result: "i32" },
  cuCtxSynchronize: { parameters: [], result: "i32" },
  cuMemGetInfo_v2: { parameters: ["buffer", "buffer"], result: "i32" },
  cuMemAlloc_v2: { parameters: ["buffer", "usize"], result: "i32" },
  cuMemFree_v2: { parameters: [P], result: "i32" },
  cuMemAllocHost_v2: { parameters: ["buffer", "usize"], result: "i32" },
  cuMemFreeHost: { parameters: [H], result: "i32" },
  cuMemcpyHtoDAsync_v2: { parameters: [P, "buffer", "usize", H], result: "i32" },
  cuMemcpyHtoDAsync_v2_ptr: { name: "cuMemcpyHtoDAsync_v2", parameters: [P, H, "usize", H], result: "i32" },
  cuMemcpyDtoHAsync_v2: { parameters: ["buffer", P, "usize", H], result: "i32" },
  cuMemcpyDtoHAsync_v2_ptr: { name: "cuMemcpyDtoHAsync_v2", parameters: [H, P, "usize", H], result: "i32" },
  cuMemcpyDtoDAsync_v2: { parameters: [P, P, "usize", H], result: "i32" },
  cuMemsetD8Async: { parameters: [P, "u8", "usize", H], result: "i32" },
  cuMemsetD16Async: { parameters: [P, "u16", "usize", H], result: "i32" },
  cuMemsetD32Async: { parameters: [P, "u32", "usize", H], result: "i32" },
  cuStreamCreate: { parameters: ["buffer", "u32"], result: "i32" },
  cuStreamSynchronize: { parameters: [H], result: "i32" },
  cuStreamDestroy_v2: { parameters: [H], result: "i32" },
  cuEventCreate: { parameters: ["buffer", "u32"], result: "i32" },
  cuEventRecord: { parameters: [H, H], result: "i32" },
  cuEventSynchronize: { parameters: [H], result: "i32" },
  cuEventElapsedTime_v2: { parameters: ["buffer", H, H], result: "i32" },
  cuEventDestroy_v2: { parameters: [H], result: "i32" },
  cuModuleLoadData: { parameters: ["buffer", "buffer"], result: "i32" },
  cuModuleUnload: { parameters: [H], result: "i32" },
  cuModuleGetFunction: { parameters: ["buffer", H, "buffer"], result: "i32" },
  cuFuncSetAttribute: { parameters: [H, "i32", "i32"], result: "i32" },
  /** CUDA 11.8+ drivers (thread-block clusters); absent in older ones. */
  cuOccupancyMaxActiveClusters: { parameters: ["buffer", H, "buffer"], result: "i32", optional: true },
  cuLaunchKernel: {
    parameters: [H, "u32", "u32", "u32", "u32", "u32", "u32", "u32", H, "buffer", H],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** CUDA_ERROR_OUT_OF_MEMORY. */
const CUDA_ERROR_OUT_OF_MEMORY = 2;
/** Device attributes read by `deviceInfo` (CUdevice_attribute values). */
const ATTRIBUTE = {
  multiprocessorCount: 16,
  l2CacheBytes: 38,
  computeCapabilityMajor: 75,
  computeCapabilityMinor: 76,
  maxSharedMemoryPerBlockOptin: 97,
} as const;
/** CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES. */
const FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED = 8;
/** sizeof(CUlaunchConfig) on 64-bit hosts. */
const LAUNCH_CONFIG_BYTES = 56;
/** CU_STREAM_NON_BLOCKING. */
const STREAM_NON_BLOCKING = 1;
/** Bytes for the device name buffer. */
const NAME_BYTES = 256;

/** What the engine needs to know about a device. */
export interface DeviceInfo {
  ordinal: number;
  name: string;
  /** e.g. 90 for compute capability 9.0. */
  arch: number;
  multiprocessors: number;
  totalMemory: number;
  l2CacheBytes: number;
  maxSharedMemoryPerBlock: number;
  driverVersion: number;
}

function cString(address: bigint): string {
  const pointer = Deno.UnsafePointer.create(address);
  return pointer ? new Deno.UnsafePointerView(pointer).getCString() : "";
}

/** The driver library, opened lazily by `Driver.open` (only when device cuda is asked for). */
export class Driver {
  private constructor(readonly lib: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"]) {}
  private readonly out64 = new BigUint64Array(2);
  private readonly out32 = new Int32Array(2);

  /**
   * Opens libcuda and initializes the driver.
   *
   * @example
   * ```ts
   * const driver = Driver.open();
   * const info = driver.deviceInfo(0);
   * ```
   */
  static open(options: { libDir?: string } = {}): Driver {
    const driver = new Driver(openCudaLibrary("driver", SYMBOLS, options).symbols);
    const status = driver.lib.cuInit(0);
    if (status !== 0) {
      throw new CudaUnavailableError(`The CUDA driver did not start: ${driver.errorText(status)}`, {
        hint: "check that an NVIDIA GPU is visible (nvidia-smi), or use --device cpu",
      });
    }
    return driver;
  }

  /** "CUDA_ERROR_X: description" for a status. */
  errorText(status: number): string {
    const name = this.lib.cuGetErrorName(status, this.out64) === 0 ? cString(this.out64[0]) : "unknown";
    const text = this.lib.cuGetErrorString(status, this.out64) === 0 ? cString(this.out64[0]) : "";
    return text ? `${name}: ${text}` : name;
  }

  /** Throws a CudaError naming `call` unless `status` is CUDA_SUCCESS. */
  check(call: string, status: number): void {
    if (status === 0) return;
    const name = this.lib.cuGetErrorName(status, this.out64) === 0 ? cString(this.out64[0]) : "unknown";
    const text = this.lib.cuGetErrorString(status, this.out64) === 0 ? cString(this.out64[0]) : "";
    throw new CudaError(call, status, name, text);
  }

  deviceCount(): number {
    this.check("cuDeviceGetCount", this.lib.cuDeviceGetCount(this.out32));
    return this.out32[0];
  }

  deviceInfo(ordinal: number): DeviceInfo {
    this.check("cuDeviceGet", this.lib.cuDeviceGet(this.out32, ordinal));
    const device = this.out32[0];
    const attribute = (id: number) => {
      this.check("cuDeviceGetAttribute", this.lib.cuDeviceGetAttribute(this.out32, id, device));
      return this.out32[0];
    };
    const nameBuffer = new Uint8Array(NAME_BYTES);
    this.check("cuDeviceGetName", this.lib.cuDeviceGetName(nameBuffer, NAME_BYTES, device));
    this.check("cuDeviceTotalMem_v2", this.lib.cuDeviceTotalMem_v2(this.out64, device));
    const totalMemory = Number(this.out64[0]);
    this.check("cuDriverGetVersion", this.lib.cuDriverGetVersion(this.out32));
    const driverVersion = this.out32[0];
    return {
      ordinal,
      name: new TextDecoder().decode(nameBuffer.subarray(0, nameBuffer.indexOf(0))),
      arch: attribute(ATTRIBUTE.computeCapabilityMajor) * 10 + attribute(ATTRIBUTE.computeCapabilityMinor),
      multiprocessors: attribute(ATTRIBUTE.multiprocessorCount),
      totalMemory,
      l2CacheBytes: attribute(ATTRIBUTE.l2CacheBytes),
      maxSharedMemoryPerBlock: attribute(ATTRIBUTE.maxSharedMemoryPerBlockOptin),
      driverVersion,
    };
  }

  /** Retains the device's primary context (shared with cuBLASLt) and makes it current. */
  usePrimaryContext(ordinal: number): bigint {
    this.check("cuDevicePrimaryCtxRetain", this.lib.cuDevicePrimaryCtxRetain(this.out64, ordinal));
    const context = this.out64[0];
    this.check("cuCtxSetCurrent", this.lib.cuCtxSetCurrent(context));
    return context;
  }

  releasePrimaryContext(ordinal: number): void {
    this.check("cuDevicePrimaryCtxRelease_v2", this.lib.cuDevicePrimaryCtxRelease_v2(ordinal));
  }

  synchronize(): void {
    this.check("cuCtxSynchronize", this.lib.cuCtxSynchronize());
  }

  memInfo(): { free: number; total: number } {
    const free = new BigUint64Array(1);
    const total = new BigUint64Array(1);
    this.check("cuMemGetInfo_v2", this.lib.cuMemGetInfo_v2(free, total));
    return { free: Number(free[0]), total: Number(total[0]) };
  }

  /** Allocates `bytes` of device memory; out of memory throws DeviceMemoryError with the numbers. */
  memAlloc(bytes: number): bigint {
    const status = this.lib.cuMemAlloc_v2(this.out64, BigInt(bytes));
    if (status === CUDA_ERROR_OUT_OF_MEMORY) {
      const { free, total } = this.memInfo();
      const gib = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;
      throw new DeviceMemoryError(
        `Out of GPU memory: asked for ${gib(bytes)}, ${gib(free)} free of ${gib(total)}`,
        {
          expected: bytes,
          actual: free,
          hint: "use a shorter sequence, a smaller batch, or activation checkpointing",
        },
      );
    }
    this.check("cuMemAlloc_v2", status);
    return this.out64[0];
  }

  memFree(pointer: bigint): void {
    this.check("cuMemFree_v2", this.lib.cuMemFree_v2(pointer));
  }

  /** Allocates page-locked host memory (staging for fast copies); returns its address. */
  memAllocHost(bytes: number): bigint {
    this.check("cuMemAllocHost_v2", this.lib.cuMemAllocHost_v2(this.out64, BigInt(bytes)));
    return this.out64[0];
  }

  memFreeHost(address: bigint): void {
    this.check("cuMemFreeHost", this.lib.cuMemFreeHost(address));
  }

  copyHtoD(dst: bigint, src: Uint8Array, stream: bigint): void {
    this.check(
      "cuMemcpyHtoDAsync_v2",
      this.lib.cuMemcpyHtoDAsync_v2(dst, src, BigInt(src.byteLength), stream),
    );
  }

  copyHtoDFromHost(dst: bigint, hostAddress: bigint, bytes: number, stream: bigint): void {
    this.check(
      "cuMemcpyHtoDAsync_v2",
      this.lib.cuMemcpyHtoDAsync_v2_ptr(dst, hostAddress, BigInt(bytes), stream),
    );
  }

  /** Copies into pageable `dst`; returns once the copy is done (pageable DtoH is synchronous). */
  copyDtoH(dst: Uint8Array, src: bigint, stream: bigint): void {
    this.check(
      "cuMemcpyDtoHAsync_v2",
      this.lib.cuMemcpyDtoHAsync_v2(dst, src, BigInt(dst.byteLength), stream),
    );
  }

  copyDtoHToHost(hostAddress: bigint, src: bigint, bytes: number, stream: bigint): void {
    this.check(
      "cuMemcpyDtoHAsync_v2",
      this.lib.cuMemcpyDtoHAsync_v2_ptr(hostAddress, src, BigInt(bytes), stream),
    );
  }

  copyDtoD(dst: bigint, src: bigint, bytes: number, stream: bigint): void {
    this.check("cuMemcpyDtoDAsync_v2", this.lib.cuMemcpyDtoDAsync_v2(dst, src, BigInt(bytes), stream));
  }

  memsetD8(dst: bigint, value: number, bytes: number, stream: bigint): void {
    this.check("cuMemsetD8Async", this.lib.cuMemsetD8Async(dst, value, BigInt(bytes), stream));
  }

  memsetD16(dst: bigint, value: number, count: number, stream: bigint): void {
    this.check("cuMemsetD16Async", this.lib.cuMemsetD16Async(dst, value, BigInt(count), stream));
  }

  memsetD32(dst: bigint, value: number, count: number, stream: bigint): void {
    this.check("cuMemsetD32Async", this.lib.cuMemsetD32Async(dst, value, BigInt(count), stream));
  }

  streamCreate(): bigint {
    this.check("cuStreamCreate", this.lib.cuStreamCreate(this.out64, STREAM_NON_BLOCKING));
    return this.out64[0];
  }

  streamSynchronize(stream: bigint): void {
    this.check("cuStreamSynchronize", this.lib.cuStreamSynchronize(stream));
  }

  streamDestroy(stream: bigint): void {
    this.check("cuStreamDestroy_v2", this.lib.cuStreamDestroy_v2(stream));
  }

  eventCreate(): bigint {
    this.check("cuEventCreate", this.lib.cuEventCreate(this.out64, 0));
    return this.out64[0];
  }

  eventRecord(event: bigint, stream: bigint): void {
    this.check("cuEventRecord", this.lib.cuEventRecord(event, stream));
  }

  /** Milliseconds between two recorded events (waits for `end`). */
  eventElapsedMs(start: bigint, end: bigint): number {
    this.check("cuEventSynchronize", this.lib.cuEventSynchronize(end));
    const ms = new Float32Array(1);
    this.check("cuEventElapsedTime_v2", this.lib.cuEventElapsedTime_v2(ms, start, end));
    return ms[0];
  }

  eventDestroy(event: bigint): void {
    this.check("cuEventDestroy_v2", this.lib.cuEventDestroy_v2(event));
  }

  moduleLoad(image: Uint8Array): bigint {
    this.check("cuModuleLoadData", this.lib.cuModuleLoadData(this.out64, image));
    return this.out64[0];
  }

  moduleUnload(module: bigint): void {
    this.check("cuModuleUnload", this.lib.cuModuleUnload(module));
  }

  moduleFunction(module: bigint, name: string): bigint {
    const cName = new TextEncoder().encode(`${name}\0`);
    const status = this.lib.cuModuleGetFunction(this.out64, module, cName);
    if (status !== 0) this.check(`cuModuleGetFunction(${name})`, status);
    return this.out64[0];
  }

  /** Lets `fn` use up to `bytes` of dynamic shared memory (needed above 48 KB). */
  setMaxDynamicSharedMemory(fn: bigint, bytes: number): void {
    this.check(
      "cuFuncSetAttribute",
      this.lib.cuFuncSetAttribute(fn, FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED, bytes),
    );
  }

  /**
   * How many clusters of `fn` (its cluster size compiled in with `__cluster_dims__`) can be resident at
   * once with `block` threads per block and `sharedBytes` of dynamic shared memory; 0 with a driver that
   * predates clusters.
   *
   * @example
   * ```ts
   * const clusters = driver.maxActiveClusters(fn, { clusterBlocks: 4, block: 1024, sharedBytes: 131072 });
   * ```
   */
  maxActiveClusters(
    fn: bigint,
    launch: { clusterBlocks: number; block: number; sharedBytes: number },
  ): number {
    // CUlaunchConfig: gridDimX/Y/Z, blockDimX/Y/Z, sharedMemBytes (u32 each, then 4 bytes of padding),
    // hStream, attrs (pointers), numAttrs (u32, padded to 56 bytes). No attributes: the kernel's own
    // cluster size applies; the grid must be a multiple of it.
    const occupancy = this.lib.cuOccupancyMaxActiveClusters;
    if (occupancy === null) return 0;
    const config = new Uint8Array(LAUNCH_CONFIG_BYTES);
    const view = new DataView(config.buffer);
    [launch.clusterBlocks, 1, 1, launch.block, 1, 1, launch.sharedBytes].forEach((value, i) =>
      view.setUint32(4 * i, value, true)
    );
    const count = new Int32Array(1);
    this.check("cuOccupancyMaxActiveClusters", occupancy(count, fn, config));
    return count[0];
  }

  /** Launches `fn`; `params` is an array of addresses, one per kernel argument (see ArgPacker). */
  launch(
    fn: bigint,
    grid: readonly [number, number, number],
    block: readonly [number, number, number],
    sharedBytes: number,
    stream: bigint,
    params: BigUint64Array,
  ): void {
    this.check(
      "cuLaunchKernel",
      this.lib.cuLaunchKernel(
        fn,
        grid[0],
        grid[1],
        grid[2],
        block[0],
        block[1],
        block[2],
        sharedBytes,
        stream,
        params,
        0n,
      ),
    );
  }
}
