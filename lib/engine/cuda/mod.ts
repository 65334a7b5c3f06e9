// The CUDA engine: the Engine interface on an NVIDIA GPU through Deno FFI (driver, NVRTC, cuBLASLt).
// Nothing here loads a library until `CudaEngine.open` (or `hasCuda`) is called.

export { CudaEngine, type CudaEngineOptions, CudaTensor } from "./engine.ts";
export { hasCuda } from "./detect.ts";
export { CudaError, CudaUnavailableError, DeviceMemoryError } from "./ffi/errors.ts";
export { defaultKernelCacheDir } from "./ffi/nvrtc.ts";
