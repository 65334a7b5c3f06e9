// A rank of the rendezvous test, as its own process: `deno run -A tests/distributed_rendezvous_peer.ts
// <rendezvous> <rank> <worldSize> <timeoutMs> [id as hex, rank 0 only]` prints the id it ends with (hex).

import { exchangeId, parseRendezvous } from "../lib/distributed/rendezvous.ts";

const [spec, rank, worldSize, timeoutMs, hex] = Deno.args;
const id = hex ? Uint8Array.from(hex.match(/../g)!.map((b) => parseInt(b, 16))) : undefined;
const result = await exchangeId(parseRendezvous(spec), {
  rank: Number(rank),
  worldSize: Number(worldSize),
  id,
  bytes: 128,
  timeoutMs: Number(timeoutMs),
});
console.log(Array.from(result, (b) => b.toString(16).padStart(2, "0")).join(""));
