// Data-parallel training: the Communicator contract, each rank's share of the global batch and the
// gradient averaging, the unique-id rendezvous, and the one-host launcher. The NCCL communicator is
// in nccl_communicator.ts, imported only by a run on several GPUs (it pulls in the CUDA engine).

export { type Communicator } from "./communicator.ts";
export {
  averageOverRanks,
  type MicroBatch,
  rankMicroBatches,
  type RankShare,
  rankShare,
} from "./data_parallel.ts";
export {
  type RankCommand,
  STOP_GRACE_MS,
  type SuperviseOptions,
  superviseRanks,
  type SupervisionResult,
} from "./launcher.ts";
export {
  exchangeId,
  type ExchangeOptions,
  parseRendezvous,
  removeRendezvousFile,
  type Rendezvous,
  RENDEZVOUS_TIMEOUT_MS,
  RendezvousError,
} from "./rendezvous.ts";
