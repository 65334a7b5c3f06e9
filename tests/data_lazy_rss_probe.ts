// Run by tests/data_lazy_test.ts in a process of its own (so other test modules running in parallel do
// not move its RSS): opens the token file given as the first argument lazily, draws 150 batches of 4 x
// 2048 tokens and prints {"growth": bytes of RSS growth since before opening, "tokens": tokens drawn}.
// Usage: deno run --allow-read tests/data_lazy_rss_probe.ts FILE

import { openTokenFile, PackedLoader } from "../lib/data/mod.ts";

const BATCHES = 150;
const before = Deno.memoryUsage().rss;
const file = await openTokenFile(Deno.args[0]);
try {
  const loader = new PackedLoader(file, { seqLen: 2048, batch: 4, seed: 5, eosId: 1 });
  let tokens = 0;
  for (let b = 0; b < BATCHES; b++) {
    const { inputs } = loader.next();
    tokens += inputs.length;
    for (let i = 0; i < inputs.length; i++) {
      if (inputs[i] < 1 || inputs[i] >= 512) throw new RangeError(`token ${inputs[i]} outside [1, 512)`);
    }
  }
  console.log(JSON.stringify({ growth: Deno.memoryUsage().rss - before, tokens }));
} finally {
  file.close();
}
