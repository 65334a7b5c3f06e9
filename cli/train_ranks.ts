// `harpe train` on several GPUs: `--gpus N` starts and supervises N copies of this command on this
// host, one per GPU (`--rank i --world-size N --rendezvous file:<out>/rendezvous`); a rank process
// (started so, or by the user's own launcher across hosts) joins the NCCL group through its rendezvous.

import type { Communicator } from "../lib/distributed/communicator.ts";
import { parseRendezvous } from "../lib/distributed/rendezvous.ts";
import { superviseRanks } from "../lib/distributed/launcher.ts";
import type { Engine } from "../lib/engine/engine.ts";
import { NCCL_MULTICAST_OFF } from "../lib/engine/cuda/ffi/nccl.ts";
import { ConfigError } from "../lib/errors.ts";
import type { TrainConfig } from "../lib/train/config.ts";

/** Permissions a rank process runs with (those of the `harpe` task that training needs). */
const RANK_PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-ffi",
  "--allow-sys=systemMemoryInfo",
];
/** Name of the rendezvous file `--gpus` puts in the run directory. */
const RENDEZVOUS_FILE = "rendezvous";

function positiveInt(flag: string, value: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    throw new ConfigError(`${flag} must be an integer >= ${min}, got "${value}"`, {
      field: flag,
      actual: value,
    });
  }
  return n;
}

/** This process's place in a data-parallel group, from --rank/--world-size/--rendezvous (all or none). */
export function rankOptions(
  flags: { rank?: string; worldSize?: string; rendezvous?: string; gpus?: string; cudaLibDir?: string },
  config: TrainConfig,
): { rank: number; worldSize: number; connect: (engine: Engine) => Promise<Communicator> } | undefined {
  const given = [flags.rank, flags.worldSize, flags.rendezvous].filter((f) => f !== undefined).length;
  if (given === 0) return undefined;
  if (given !== 3 || flags.gpus !== undefined) {
    throw new ConfigError("--rank, --world-size and --rendezvous go together, and not with --gpus", {
      hint: "give all three to start one rank, or --gpus N to start N ranks on this host",
    });
  }
  const worldSize = positiveInt("--world-size", flags.worldSize!, 1);
  const rank = positiveInt("--rank", flags.rank!, 0);
  if (rank >= worldSize) {
    throw new ConfigError(`--rank ${rank} is not below --world-size ${worldSize}`, { field: "--rank" });
  }
  const rendezvous = parseRendezvous(flags.rendezvous!);
  if (worldSize === 1) return undefined;
  requireCuda(config);
  return {
    rank,
    worldSize,
    connect: async (engine) => {
      const { NcclCommunicator } = await import("../lib/distributed/nccl_communicator.ts");
      return await NcclCommunicator.create(engine, {
        rank,
        worldSize,
        rendezvous,
        libDir: flags.cudaLibDir,
      });
    },
  };
}

function requireCuda(config: TrainConfig): void {
  if (config.device !== "cuda") {
    throw new ConfigError(`Training on several GPUs needs device cuda, the config says ${config.device}`, {
      field: "device",
      hint: "pass --device cuda (or set device: cuda in train.yaml)",
    });
  }
}

/** Flags of a rank's `deno run`: the launcher has loaded every module already, so a rank takes the
 * project's node_modules as they are and never asks a registry. Without them (`nodeModulesDir: auto`)
 * Deno first checks node_modules against every npm dependency in deno.json, and on the GPU machine (no
 * registry, a node_modules without the plotting packages, an empty Deno cache) a rank would stop with
 * "Failed caching npm package '@resvg/resvg-wasm'" (reproduced with a copy of that setup on the CPU). */
const RANK_DENO_FLAGS = ["--node-modules-dir=manual", "--cached-only"];

/** This program's own command line, for a rank process: `deno run <RANK_DENO_FLAGS> <permissions>
 * <main>` or the compiled binary. */
function selfCommand(): { command: string; args: string[] } {
  const command = Deno.execPath();
  const compiled = !/\/deno$/.test(command);
  const main = new URL(Deno.mainModule).pathname;
  return { command, args: compiled ? [] : ["run", ...RANK_DENO_FLAGS, ...RANK_PERMISSIONS, main] };
}

/** `args` without `--gpus N` / `--gpus=N`. */
function withoutGpus(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--gpus") i++;
    else if (!args[i].startsWith("--gpus=")) out.push(args[i]);
  }
  return out;
}

/** The GPU each rank sees: the i-th of CUDA_VISIBLE_DEVICES when set (CUDA's own variable), else i. */
function visibleDevices(gpus: number): string[] {
  const visible = Deno.env.get("CUDA_VISIBLE_DEVICES");
  if (visible === undefined) return Array.from({ length: gpus }, (_, i) => String(i));
  const list = visible.split(",").map((s) => s.trim()).filter(Boolean);
  if (list.length < gpus) {
    throw new ConfigError(`--gpus ${gpus} but CUDA_VISIBLE_DEVICES lists ${list.length} GPU(s)`, {
      field: "--gpus",
      hint: `pass --gpus ${list.length} or make more GPUs visible`,
    });
  }
  return list.slice(0, gpus);
}

/**
 * Starts `gpus` rank processes of the command line `args` (this process's own arguments), one GPU
 * each, passes their output on prefixed with the rank, and returns null when all succeeded, else a
 * one-line description of the first failure (the other ranks are stopped).
 *
 * @example
 * ```ts
 * const failure = await launchRanks(config, { gpus: 2, args: Deno.args, json: false });
 * ```
 */
export async function launchRanks(
  config: TrainConfig,
  options: { gpus: string; args: string[]; json?: boolean },
): Promise<string | null> {
  const gpus = positiveInt("--gpus", options.gpus, 1);
  requireCuda(config);
  const self = selfCommand();
  if (Deno.permissions.querySync({ name: "run", command: self.command }).state !== "granted") {
    throw new ConfigError("--gpus starts one process per GPU and needs the permission to run them", {
      hint: "run harpe through `deno task harpe`, or add --allow-run to your deno run command",
    });
  }
  const devices = visibleDevices(gpus);
  const rendezvous = `${config.out}/${RENDEZVOUS_FILE}`;
  await Deno.mkdir(config.out, { recursive: true });
  await Deno.remove(rendezvous).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
  const args = withoutGpus(options.args);
  const result = await superviseRanks(
    devices.map((device, rank) => ({
      rank,
      command: self.command,
      args: [
        ...self.args,
        ...args,
        "--rank",
        String(rank),
        "--world-size",
        String(gpus),
        "--rendezvous",
        `file:${rendezvous}`,
      ],
      env: { ...NCCL_MULTICAST_OFF, CUDA_VISIBLE_DEVICES: device },
    })),
    { rawRank0Stdout: options.json },
  );
  if (result.ok) return null;
  if (result.rank < 0) return `${result.error}; every rank was stopped`;
  const how = result.signal ? `killed by ${result.signal}` : `exit code ${result.code}`;
  const error = result.error.replace(/^harpe train: /, "") || "no error message";
  return `rank ${result.rank} failed (${how}): ${error}; the other ranks were stopped`;
}
