// One CUDA device as the engine sees it: the driver with the device's primary context, one stream,
// the caching allocator, pinned host staging for copies, cuBLASLt, and the kernels compiled by NVRTC
// from kernels/*.cu for the device's architecture (cached on disk).

import { ArgPacker, type KernelArg } from "./ffi/args.ts";
import { CublasLt } from "./ffi/cublaslt.ts";
import { type DeviceInfo, Driver } from "./ffi/driver.ts";
import { CudaUnavailableError } from "./ffi/errors.ts";
import { defaultKernelCacheDir, Nvrtc } from "./ffi/nvrtc.ts";
import { CachingAllocator } from "./allocator.ts";

/** Kernel sources, concatenated in this order after common.cuh into one NVRTC program
 * (cross_entropy.cu uses the cp.async helpers of flash_attention_mma.cu). */
export const KERNEL_FILES = [
  "elementwise.cu",
  "embedding.cu",
  "rmsnorm.cu",
  "rope.cu",
  "attention.cu",
  "flash_attention_mma.cu",
  "cross_entropy.cu",
  "flash_attention_fwd.cu",
  "flash_attention_bwd.cu",
  "wgmma.cu",
  "flash_attention_fwd_wg.cu",
  "flash_attention_bwd_wg_d128.cu",
  "flash_attention_bwd_wg_d64.cu",
] as const;
/** cuBLASLt workspace (what cuBLAS recommends for Hopper). */
export const BLAS_WORKSPACE_BYTES = 32 * 1024 * 1024;
/** Pinned host buffer through which large copies go, in chunks of this size. */
const STAGING_BYTES = 32 * 1024 * 1024;
/** Copies smaller than this go straight from/to pageable memory. */
const STAGING_FROM = 1024 * 1024;
/** Dynamic shared memory any kernel may use without raising its limit. */
const DEFAULT_DYNAMIC_SHARED_BYTES = 48 * 1024;

/** Options for opening a device. */
export interface CudaDeviceOptions {
  /** Device ordinal (default 0). */
  ordinal?: number;
  /** Folder holding libcuda/libnvrtc/libcublasLt when not in the usual places (`--cuda-lib-dir`). */
  libDir?: string;
  /** Where compiled kernels are cached (default: `$XDG_CACHE_HOME/harpe/kernels` or
   * `~/.cache/harpe/kernels`); null disables the cache. */
  kernelCacheDir?: string | null;
}

/** A device with its context, stream, memory, BLAS and kernels. */
export class CudaDevice {
  readonly allocator: CachingAllocator;
  readonly stream: bigint;
  private readonly packer = new ArgPacker();
  private readonly functions = new Map<string, bigint>();
  /** Dynamic shared memory each kernel has been allowed above the default (allowSharedMemory). */
  private readonly sharedAllowed = new Map<string, number>();
  private staging: { address: bigint; view: Uint8Array } | null = null;
  private disposed = false;

  private constructor(
    readonly driver: Driver,
    readonly info: DeviceInfo,
    readonly blas: CublasLt,
    private readonly module: bigint,
    /** Milliseconds NVRTC took (or the cache lookup, when `kernelsCached`). */
    readonly compileMs: number,
    readonly kernelsCached: boolean,
    stream: bigint,
    allocator: CachingAllocator,
  ) {
    this.stream = stream;
    this.allocator = allocator;
  }

  /**
   * Opens the device: loads the libraries, makes the primary context current, compiles the kernels.
   *
   * @example
   * ```ts
   * const device = await CudaDevice.open({ ordinal: 0 });
   * console.log(device.info.name, device.info.arch);
   * ```
   */
  static async open(options: CudaDeviceOptions = {}): Promise<CudaDevice> {
    const ordinal = options.ordinal ?? 0;
    const driver = Driver.open({ libDir: options.libDir });
    const count = driver.deviceCount();
    if (ordinal >= count) {
      throw new CudaUnavailableError(`CUDA device ${ordinal} does not exist (found ${count})`, {
        hint: count ? `use a device ordinal below ${count}` : "use --device cpu",
      });
    }
    const info = driver.deviceInfo(ordinal);
    driver.usePrimaryContext(ordinal);
    const stream = driver.streamCreate();
    const allocator = new CachingAllocator(driver);
    const nvrtc = Nvrtc.open({ libDir: options.libDir });
    const source = await kernelSource();
    const compiled = await nvrtc.compile(source, {
      name: "harpe_kernels.cu",
      // sm_90a: Hopper's architecture-specific features (wgmma), for the sm_90 devices they exist on.
      arch: info.arch === 90 ? "sm_90a" : `sm_${info.arch}`,
      cacheDir: options.kernelCacheDir === undefined ? defaultKernelCacheDir() : options.kernelCacheDir,
    });
    const module = driver.moduleLoad(compiled.cubin);
    const workspace = allocator.alloc(BLAS_WORKSPACE_BYTES);
    const blas = CublasLt.open(workspace, BLAS_WORKSPACE_BYTES, { libDir: options.libDir });
    return new CudaDevice(
      driver,
      info,
      blas,
      module,
      compiled.milliseconds,
      compiled.cached,
      stream,
      allocator,
    );
  }

  /** The kernel named `name` (an extern "C" function of kernels/*.cu). */
  kernel(name: string): bigint {
    let fn = this.functions.get(name);
    if (fn === undefined) {
      fn = this.driver.moduleFunction(this.module, name);
      this.functions.set(name, fn);
    }
    return fn;
  }

  /** Lets kernel `name` use `bytes` of dynamic shared memory: above 48 KB that is a per-kernel attribute,
   * raised here once to the largest amount asked for. `launch` calls it; call it first where something
   * else needs the limit before the first launch (an occupancy query). */
  allowSharedMemory(name: string, bytes: number): void {
    if (bytes <= Math.max(DEFAULT_DYNAMIC_SHARED_BYTES, this.sharedAllowed.get(name) ?? 0)) return;
    this.driver.setMaxDynamicSharedMemory(this.kernel(name), bytes);
    this.sharedAllowed.set(name, bytes);
  }

  /** Enqueues kernel `name` on the stream (with `sharedBytes` of dynamic shared memory). */
  launch(
    name: string,
    grid: number | readonly [number, number, number],
    block: number,
    args: readonly KernelArg[],
    sharedBytes = 0,
  ): void {
    this.allowSharedMemory(name, sharedBytes);
    const g: readonly [number, number, number] = typeof grid === "number" ? [grid, 1, 1] : grid;
    this.driver.launch(this.kernel(name), g, [block, 1, 1], sharedBytes, this.stream, this.packer.pack(args));
  }

  /** Copies host bytes to the device (large copies through pinned staging); returns when `src` may be reused. */
  upload(dst: bigint, src: Uint8Array): void {
    if (src.byteLength < STAGING_FROM) {
      this.driver.copyHtoD(dst, src, this.stream);
      return;
    }
    const staging = this.stagingBuffer();
    for (let offset = 0; offset < src.byteLength; offset += STAGING_BYTES) {
      const chunk = src.subarray(offset, Math.min(src.byteLength, offset + STAGING_BYTES));
      this.driver.streamSynchronize(this.stream);
      staging.view.set(chunk);
      this.driver.copyHtoDFromHost(dst + BigInt(offset), staging.address, chunk.byteLength, this.stream);
    }
    this.driver.streamSynchronize(this.stream);
  }

  /** Copies device bytes into `dst` after all enqueued work. */
  download(dst: Uint8Array, src: bigint): void {
    if (dst.byteLength < STAGING_FROM) {
      this.driver.copyDtoH(dst, src, this.stream);
      return;
    }
    const staging = this.stagingBuffer();
    for (let offset = 0; offset < dst.byteLength; offset += STAGING_BYTES) {
      const bytes = Math.min(STAGING_BYTES, dst.byteLength - offset);
      this.driver.copyDtoHToHost(staging.address, src + BigInt(offset), bytes, this.stream);
      this.driver.streamSynchronize(this.stream);
      dst.set(staging.view.subarray(0, bytes), offset);
    }
  }

  synchronize(): void {
    this.driver.streamSynchronize(this.stream);
  }

  /** Releases memory, the stream and the context. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.driver.streamSynchronize(this.stream);
    this.allocator.releaseAll();
    if (this.staging) this.driver.memFreeHost(this.staging.address);
    this.driver.moduleUnload(this.module);
    this.driver.streamDestroy(this.stream);
    this.driver.releasePrimaryContext(this.info.ordinal);
  }

  private stagingBuffer(): { address: bigint; view: Uint8Array } {
    if (!this.staging) {
      const address = this.driver.memAllocHost(STAGING_BYTES);
      const pointer = Deno.UnsafePointer.create(address);
      if (!pointer) throw new RangeError("cuMemAllocHost returned a null pointer");
      const view = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(pointer, STAGING_BYTES));
      this.staging = { address, view };
    }
    return this.staging;
  }
}

/** common.cuh followed by every kernel file, read relative to this module. */
export async function kernelSource(): Promise<string> {
  const read = (name: string) => Deno.readTextFile(new URL(`./kernels/${name}`, import.meta.url));
  const parts = await Promise.all(["common.cuh", ...KERNEL_FILES].map(read));
  return parts.join("\n");
}
