// A Communicator for tests: N ranks in one process (each with its own engine), meeting in memory.
// Sums are taken in float64 over the ranks' f32 values and rounded once to f32 on upload.

import type { Communicator } from "../lib/distributed/communicator.ts";
import type { Engine, Tensor } from "../lib/engine/engine.ts";

interface Round {
  values: (Float32Array | null)[];
  arrived: number;
  done: Promise<Float64Array | Float32Array>;
  resolve: (value: Float64Array | Float32Array) => void;
}

/** `worldSize` connected in-memory communicators; rank i's is made by `connect[i](engine)`. */
export function memoryCommunicators(worldSize: number): ((engine: Engine) => Promise<Communicator>)[] {
  const rounds: Round[] = [];
  const counters = new Array(worldSize).fill(0);
  const round = (index: number): Round => {
    if (!rounds[index]) {
      let resolve!: Round["resolve"];
      const done = new Promise<Float64Array | Float32Array>((r) => (resolve = r));
      rounds[index] = { values: new Array(worldSize).fill(null), arrived: 0, done, resolve };
    }
    return rounds[index];
  };
  const meet = (
    rank: number,
    value: Float32Array,
    combine: (values: Float32Array[]) => Float64Array | Float32Array,
  ) => {
    const r = round(counters[rank]++);
    r.values[rank] = value;
    r.arrived++;
    if (r.arrived === worldSize) r.resolve(combine(r.values as Float32Array[]));
    return r.done;
  };
  const sum = (values: Float32Array[]) => {
    const out = new Float64Array(values[0].length);
    for (const v of values) for (let i = 0; i < out.length; i++) out[i] += v[i];
    return out;
  };
  return Array.from({ length: worldSize }, (_, rank) => (engine: Engine) => {
    const download = async (t: Tensor) => new Float32Array(await engine.download(t));
    const communicator: Communicator = {
      rank,
      worldSize,
      async allReduceSum(tensor) {
        const total = await meet(rank, await download(tensor), sum);
        engine.upload(tensor, Float32Array.from(total));
      },
      async broadcast(tensor, options = {}) {
        const root = options.root ?? 0;
        const value = await meet(rank, await download(tensor), (values) => values[root]);
        engine.upload(tensor, Float32Array.from(value));
      },
      async barrier() {
        await meet(rank, new Float32Array(0), () => new Float32Array(0));
      },
      abort() {},
      destroy() {},
    };
    return Promise.resolve(communicator);
  });
}
