// Runs the benchmarks: all of them, or the ones named on the command line (`deno task bench io`).

/** Every benchmark by name; each prints a table and writes JSON under bench/out/. */
const BENCHES: Readonly<Record<string, () => Promise<void>>> = {
  io: async () => (await import("./io/bench.ts")).run(),
};

const names = Deno.args.length > 0 ? Deno.args : Object.keys(BENCHES);
const unknown = names.filter((name) => !(name in BENCHES));
if (unknown.length > 0) {
  console.error(`bench: unknown benchmark ${unknown.join(", ")} (known: ${Object.keys(BENCHES).join(", ")})`);
  Deno.exit(2);
}
for (const name of names) {
  console.log(`== ${name}`);
  await BENCHES[name]();
}
