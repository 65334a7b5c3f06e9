// NCCL bindings without a GPU: importing the bindings and the distributed modules loads no library;
// opening NCCL where it is missing is a CudaUnavailableError naming libnccl.so.2 and what to do (where
// NCCL is installed, it opens and reports a 2.x version instead); the NCCL communicator refuses a CPU
// engine before touching NCCL.

import { assert, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { PROJECT_ROOT, withTempDir } from "./harness.ts";
import { CpuEngine } from "../lib/engine/cpu/mod.ts";
import { CudaUnavailableError } from "../lib/engine/cuda/mod.ts";
import { Nccl } from "../lib/engine/cuda/ffi/nccl.ts";
import { NcclCommunicator } from "../lib/distributed/nccl_communicator.ts";
import { parseRendezvous } from "../lib/distributed/mod.ts";
import { UnsupportedError } from "../lib/errors.ts";

Deno.test("nccl.ts and lib/distributed load no library on import (they run without --allow-ffi)", async () => {
  const modules = [
    "lib/engine/cuda/ffi/nccl.ts",
    "lib/distributed/nccl_communicator.ts",
    "lib/distributed/mod.ts",
  ];
  const script = modules.map((m) => `await import(${JSON.stringify(`${PROJECT_ROOT}${m}`)});`).join("") +
    "console.log('imported');";
  const output = await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/import.ts`, script);
    return await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--allow-read", `${dir}/import.ts`],
      cwd: PROJECT_ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
  });
  const stderr = new TextDecoder().decode(output.stderr);
  assertEquals(output.code, 0, stderr);
  assertEquals(new TextDecoder().decode(output.stdout).trim(), "imported");
});

Deno.test("Nccl.open: a clear error where libnccl is missing, a version where it is installed", async () => {
  await withTempDir((dir) => {
    let nccl: Nccl | undefined;
    try {
      nccl = Nccl.open({ libDir: dir });
    } catch (error) {
      assert(error instanceof CudaUnavailableError, String(error));
      assertStringIncludes(
        error.message,
        "Cannot load the CUDA nccl library (tried libnccl.so.2, libnccl.so in " + dir,
      );
      assertStringIncludes(
        error.message,
        "install NCCL 2 (libnccl.so.2, needed for training on several GPUs)",
      );
      assertStringIncludes(error.message, "--cuda-lib-dir");
    }
    if (nccl) assert(/^2\.\d+\.\d+$/.test(nccl.version()), nccl.version());
    return Promise.resolve();
  });
});

Deno.test("NcclCommunicator refuses a CPU engine (NCCL needs device cuda)", async () => {
  const engine = new CpuEngine();
  const error = await assertRejects(
    () =>
      NcclCommunicator.create(engine, { rank: 0, worldSize: 2, rendezvous: parseRendezvous("file:unused") }),
    UnsupportedError,
  );
  assertStringIncludes(error.message, "needs device cuda");
  engine.dispose();
});
