// Bindings to NVRTC through Deno FFI: compiles CUDA C++ source to a cubin for the device's
// architecture, with the compiler log in the error, and an on-disk cache keyed by
// hash(source, options, architecture, NVRTC version).

import { CudaError } from "./errors.ts";
import { openCudaLibrary } from "./library.ts";
import { sha256Hex } from "../../../util/hash.ts";

const SYMBOLS = {
  nvrtcVersion: { parameters: ["buffer", "buffer"], result: "i32" },
  nvrtcGetErrorString: { parameters: ["i32"], result: "pointer" },
  nvrtcCreateProgram: {
    parameters: ["buffer", "buffer", "buffer", "i32", "pointer", "pointer"],
    result: "i32",
  },
  nvrtcCompileProgram: { parameters: ["usize", "i32", "buffer"], result: "i32" },
  nvrtcGetProgramLogSize: { parameters: ["usize", "buffer"], result: "i32" },
  nvrtcGetProgramLog: { parameters: ["usize", "buffer"], result: "i32" },
  nvrtcGetCUBINSize: { parameters: ["usize", "buffer"], result: "i32" },
  nvrtcGetCUBIN: { parameters: ["usize", "buffer"], result: "i32" },
  nvrtcDestroyProgram: { parameters: ["buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** NVRTC_ERROR_COMPILATION: the source did not compile (the log says why). */
const NVRTC_ERROR_COMPILATION = 6;

/**
 * The default kernel cache folder: `$XDG_CACHE_HOME/harpe/kernels`, else `~/.cache/harpe/kernels`
 * (the engine's `kernelCacheDir` option overrides it).
 */
export function defaultKernelCacheDir(): string | null {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  if (xdg) return `${xdg}/harpe/kernels`;
  const home = Deno.env.get("HOME");
  return home ? `${home}/.cache/harpe/kernels` : null;
}

function encodeC(text: string): Uint8Array {
  return new TextEncoder().encode(`${text}\0`);
}

/** Bytes below which V8 may keep a typed array inside its heap, where it could move. */
const MIN_OFF_HEAP_BYTES = 256;

/** Puts C strings into one off-heap buffer and returns it with the address of each string. */
function packStrings(texts: string[]): { storage: Uint8Array; pointers: BigUint64Array } {
  const encoded = texts.map(encodeC);
  const total = encoded.reduce((sum, e) => sum + e.length, 0);
  const storage = new Uint8Array(Math.max(total, MIN_OFF_HEAP_BYTES));
  const base = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(storage)));
  const pointers = new BigUint64Array(Math.max(texts.length, 1));
  let offset = 0;
  encoded.forEach((e, i) => {
    storage.set(e, offset);
    pointers[i] = base + BigInt(offset);
    offset += e.length;
  });
  return { storage, pointers };
}

/** What one compilation produced: the cubin, and whether it came from the cache. */
export interface CompiledKernel {
  cubin: Uint8Array;
  cached: boolean;
  milliseconds: number;
}

/** The NVRTC library. */
export class Nvrtc {
  private constructor(
    readonly lib: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"],
    readonly version: string,
  ) {}

  /**
   * Opens libnvrtc.
   *
   * @example
   * ```ts
   * const nvrtc = Nvrtc.open();
   * const { cubin } = await nvrtc.compile(source, { name: "ops.cu", arch: "sm_90" });
   * ```
   */
  static open(options: { libDir?: string } = {}): Nvrtc {
    const lib = openCudaLibrary("nvrtc", SYMBOLS, options).symbols;
    const major = new Int32Array(1);
    const minor = new Int32Array(1);
    const nvrtc = new Nvrtc(lib, "");
    nvrtc.check("nvrtcVersion", lib.nvrtcVersion(major, minor));
    return new Nvrtc(lib, `${major[0]}.${minor[0]}`);
  }

  /** Throws a CudaError naming `call` unless `status` is NVRTC_SUCCESS. */
  check(call: string, status: number, log = ""): void {
    if (status === 0) return;
    const pointer = this.lib.nvrtcGetErrorString(status);
    const name = pointer ? new Deno.UnsafePointerView(pointer).getCString() : "unknown";
    throw new CudaError(call, status, name, log);
  }

  /**
   * Compiles `source` for `arch` (e.g. "sm_90", "sm_90a") with extra `options`; reuses a cached cubin
   * from `cacheDir` when one was made from the same source, options, arch and NVRTC version.
   */
  async compile(
    source: string,
    options: { name: string; arch: string; options?: string[]; cacheDir?: string | null },
  ): Promise<CompiledKernel> {
    const started = performance.now();
    const flags = [`--gpu-architecture=${options.arch}`, "--std=c++17", ...(options.options ?? [])];
    const key = await sha256Hex(new TextEncoder().encode([source, ...flags, this.version].join("\0")));
    const cacheFile = options.cacheDir
      ? `${options.cacheDir}/${options.name}-${key.slice(0, 24)}.cubin`
      : null;
    if (cacheFile) {
      try {
        const cubin = await Deno.readFile(cacheFile);
        return { cubin, cached: true, milliseconds: performance.now() - started };
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    const cubin = this.compileNow(source, options.name, flags);
    if (cacheFile && options.cacheDir) {
      await Deno.mkdir(options.cacheDir, { recursive: true });
      const temporary = `${cacheFile}.${crypto.randomUUID()}.tmp`;
      await Deno.writeFile(temporary, cubin);
      await Deno.rename(temporary, cacheFile);
    }
    return { cubin, cached: false, milliseconds: performance.now() - started };
  }

  private compileNow(source: string, name: string, flags: string[]): Uint8Array {
    const program = new BigUint64Array(1);
    this.check(
      "nvrtcCreateProgram",
      this.lib.nvrtcCreateProgram(program, encodeC(source), encodeC(name), 0, null, null),
    );
    const handle = program[0];
    try {
      const { pointers } = packStrings(flags);
      const status = this.lib.nvrtcCompileProgram(handle, flags.length, pointers);
      if (status !== 0) {
        const log = this.programLog(handle);
        const detail = status === NVRTC_ERROR_COMPILATION ? `${name} (${flags.join(" ")}):\n${log}` : log;
        this.check("nvrtcCompileProgram", status, detail);
      }
      const size = new BigUint64Array(1);
      this.check("nvrtcGetCUBINSize", this.lib.nvrtcGetCUBINSize(handle, size));
      const cubin = new Uint8Array(Number(size[0]));
      this.check("nvrtcGetCUBIN", this.lib.nvrtcGetCUBIN(handle, cubin));
      return cubin;
    } finally {
      this.lib.nvrtcDestroyProgram(program);
    }
  }

  private programLog(handle: bigint): string {
    const size = new BigUint64Array(1);
    if (this.lib.nvrtcGetProgramLogSize(handle, size) !== 0) return "";
    const log = new Uint8Array(Number(size[0]));
    if (this.lib.nvrtcGetProgramLog(handle, log) !== 0) return "";
    return new TextDecoder().decode(log.subarray(0, Math.max(0, log.indexOf(0)))).trim();
  }
}
