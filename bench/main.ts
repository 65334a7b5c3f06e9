// Runs the benchmarks: all of them, or the ones named on the command line (`deno task bench io`);
// arguments from the first one starting with "--" go to each named benchmark
// (`deno task bench train --device cpu --shape tiny --lengths 64,128`).

/** Every benchmark by name; each prints a table and writes JSON under bench/out/. */
const BENCHES: Readonly<Record<string, (args: string[]) => Promise<void>>> = {
  io: async () => (await import("./io/bench.ts")).run(),
  train: async (args) => (await import("./train/main.ts")).run(args),
  scaling: async (args) => (await import("./train/scaling.ts")).run(args),
};

const firstOption = Deno.args.findIndex((arg) => arg.startsWith("--"));
const given = firstOption >= 0 ? Deno.args.slice(0, firstOption) : Deno.args;
const options = firstOption >= 0 ? Deno.args.slice(firstOption) : [];
const names = given.length > 0 ? given : Object.keys(BENCHES);
const unknown = names.filter((name) => !(name in BENCHES));
if (unknown.length > 0) {
  console.error(`bench: unknown benchmark ${unknown.join(", ")} (known: ${Object.keys(BENCHES).join(", ")})`);
  Deno.exit(2);
}
for (const name of names) {
  console.log(`== ${name}`);
  await BENCHES[name](options);
}
