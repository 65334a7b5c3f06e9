// Finds and opens a shared library of the CUDA stack: the usual file names in the usual folders, or a
// folder given by the user (the `cudaLibDir` engine option, `--cuda-lib-dir` on the CLI).

import { CudaUnavailableError } from "./errors.ts";

/** Folders searched, in order, after the user's folder; the dynamic loader's own path comes last. */
export const CUDA_LIBRARY_DIRS: readonly string[] = [
  "/usr/local/cuda/lib64",
  "/usr/local/cuda/targets/x86_64-linux/lib",
  "/usr/lib/x86_64-linux-gnu",
  "/usr/local/nvidia/lib64",
  "/usr/lib64",
];

/** File names tried for each library, newest first. */
export const CUDA_LIBRARY_NAMES = {
  driver: ["libcuda.so.1", "libcuda.so"],
  nvrtc: ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"],
  cublasLt: ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"],
  nccl: ["libnccl.so.2", "libnccl.so"],
} as const;

/** What to do when a library is missing, per library (the driver's absence means no GPU at all). */
const MISSING_HINTS: Record<CudaLibrary, string> = {
  driver: "this machine has no NVIDIA driver; use --device cpu",
  nvrtc: "install the CUDA 13 runtime libraries or pass --cuda-lib-dir <folder holding them>",
  cublasLt: "install the CUDA 13 runtime libraries or pass --cuda-lib-dir <folder holding them>",
  nccl:
    "install NCCL 2 (libnccl.so.2, needed for training on several GPUs) or pass --cuda-lib-dir <folder holding it>",
};

/** Which library of the CUDA stack. */
export type CudaLibrary = keyof typeof CUDA_LIBRARY_NAMES;

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/**
 * Opens `library` with the given symbols: first in `libDir` (when given), then in CUDA_LIBRARY_DIRS,
 * then by bare name through the dynamic loader (LD_LIBRARY_PATH, ldconfig). A `libDir` that is not a
 * folder is refused (CudaUnavailableError naming it) rather than silently skipped.
 *
 * @example
 * ```ts
 * const lib = openCudaLibrary("driver", { cuInit: { parameters: ["u32"], result: "i32" } });
 * ```
 */
export function openCudaLibrary<S extends Deno.ForeignLibraryInterface>(
  library: CudaLibrary,
  symbols: S,
  options: { libDir?: string } = {},
): Deno.DynamicLibrary<S> {
  if (options.libDir !== undefined && !isDirectory(options.libDir)) {
    throw new CudaUnavailableError(`CUDA library folder "${options.libDir}" does not exist`, {
      file: options.libDir,
      hint: "pass --cuda-lib-dir the folder holding libcuda.so.1, libnvrtc and libcublasLt",
    });
  }
  const names = CUDA_LIBRARY_NAMES[library];
  const dirs = options.libDir ? [options.libDir, ...CUDA_LIBRARY_DIRS] : CUDA_LIBRARY_DIRS;
  const candidates = dirs.flatMap((dir) => names.map((name) => `${dir}/${name}`)).filter(exists);
  const errors: string[] = [];
  for (const path of [...candidates, ...names]) {
    try {
      return Deno.dlopen(path, symbols);
    } catch (error) {
      errors.push(`${path}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  throw new CudaUnavailableError(
    `Cannot load the CUDA ${library} library (tried ${names.join(", ")} in ${
      dirs.join(", ")
    } and the loader path; last error: ${errors.slice(-1)[0]})`,
    {
      actual: errors.slice(-1)[0],
      hint: MISSING_HINTS[library],
    },
  );
}
