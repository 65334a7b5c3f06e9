// The engine flags shared by the commands that run a model (train, eval, generate, verify-reference):
// the device and the folder of the CUDA libraries, as commander options to add to a command.

import { Option } from "commander";

/** `--device cpu|cuda` (default cpu). */
export function deviceOption(): Option {
  return new Option("--device <device>", "engine to run on (cpu or cuda)").default("cpu");
}

/** `--cuda-lib-dir DIR`: passed to openEngine as `cudaLibDir`. */
export function cudaLibDirOption(): Option {
  return new Option(
    "--cuda-lib-dir <dir>",
    "folder holding libcuda / libnvrtc / libcublasLt when not in the usual places (device cuda)",
  );
}
