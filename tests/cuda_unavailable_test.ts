// Without a CUDA driver, opening the CUDA engine fails with a clear, typed message (and the CPU
// engine keeps working). Runs only where no CUDA device is found.

import { CpuEngine } from "../lib/engine/cpu/mod.ts";
import { CudaEngine, CudaUnavailableError, hasCuda } from "../lib/engine/cuda/mod.ts";
import { assertEquals, assertRejects } from "./assert.ts";

Deno.test({
  name: "cuda engine without a driver: CudaUnavailableError naming the cpu device",
  ignore: hasCuda(),
  sanitizeResources: false,
  async fn() {
    await assertRejects(() => CudaEngine.open(), CudaUnavailableError, "--device cpu");
    const cpu = new CpuEngine();
    const x = cpu.alloc([2]);
    cpu.upload(x, new Float32Array([1, 2]));
    assertEquals(Array.from(await cpu.download(x)), [1, 2]);
  },
});
