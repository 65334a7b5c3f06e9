// The unique-id rendezvous between processes: file (rank 0 writes atomically, the others poll) and TCP
// (rank 0 listens, the others connect), with rank 0 starting after the others; clear errors on a
// timeout, a foreign file and a malformed --rendezvous.

import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { DENO_RUN, PROJECT_ROOT, withTempDir } from "./harness.ts";
import { exchangeId, parseRendezvous, RendezvousError } from "../lib/distributed/mod.ts";
import { ConfigError } from "../lib/errors.ts";

const PEER = `${PROJECT_ROOT}tests/distributed_rendezvous_peer.ts`;
const ID_BYTES = 128;
/** Rank 0 starts this long after the others, so they have to wait for it. */
const RANK0_DELAY_MS = 300;
const PEER_TIMEOUT_MS = 20_000;

function peer(spec: string, rank: number, worldSize: number, id?: string) {
  return new Deno.Command(Deno.execPath(), {
    args: [
      ...DENO_RUN,
      "--allow-read",
      "--allow-write",
      "--allow-net",
      PEER,
      spec,
      String(rank),
      String(worldSize),
      String(PEER_TIMEOUT_MS),
      ...(id ? [id] : []),
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Runs ranks 1..N-1 first, then rank 0 with a fresh random id; returns what every rank printed. */
async function exchangeBetweenProcesses(
  spec: string,
  worldSize: number,
): Promise<{ id: string; printed: string[] }> {
  const id = Array.from(
    crypto.getRandomValues(new Uint8Array(ID_BYTES)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
  const others = Array.from({ length: worldSize - 1 }, (_, i) => peer(spec, i + 1, worldSize));
  await new Promise((resolve) => setTimeout(resolve, RANK0_DELAY_MS));
  const all = [peer(spec, 0, worldSize, id), ...others];
  const outputs = await Promise.all(all.map((child) => child.output()));
  const printed = outputs.map((o) => {
    assertEquals(o.code, 0, new TextDecoder().decode(o.stderr));
    return new TextDecoder().decode(o.stdout).trim();
  });
  return { id, printed };
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("--rendezvous: file:<path> and tcp://host:port parse; anything else is a ConfigError", () => {
  assertEquals(parseRendezvous("file:/shared/run/rdv"), { kind: "file", path: "/shared/run/rdv" });
  assertEquals(parseRendezvous("tcp://10.1.2.3:29500"), { kind: "tcp", host: "10.1.2.3", port: 29500 });
  assertEquals(parseRendezvous("tcp://node-7:1"), { kind: "tcp", host: "node-7", port: 1 });
  assertEquals(parseRendezvous("tcp://[::1]:29500"), { kind: "tcp", host: "::1", port: 29500 });
  for (const bad of ["file:", "tcp://host", "tcp://host:0", "tcp://host:70000", "http://h:1", "/some/path"]) {
    const error = assertThrows(() => parseRendezvous(bad), ConfigError);
    assert(error.message.includes("file:<path> nor tcp://<host>:<port>"), error.message);
  }
});

Deno.test("file rendezvous: 3 processes get rank 0's id; rank 0 starts last", async () => {
  await withTempDir(async (dir) => {
    const { id, printed } = await exchangeBetweenProcesses(`file:${dir}/rendezvous`, 3);
    assertEquals(printed, [id, id, id]);
  });
});

Deno.test("tcp rendezvous: 3 processes get rank 0's id; rank 0 starts last", async () => {
  const { id, printed } = await exchangeBetweenProcesses(`tcp://127.0.0.1:${freePort()}`, 3);
  assertEquals(printed, [id, id, id]);
});

Deno.test("rendezvous errors: waiting ranks time out with who waited for what; a foreign file is refused", async () => {
  await withTempDir(async (dir) => {
    const file = parseRendezvous(`file:${dir}/rendezvous`);
    const waited = await assertRejects(
      () => exchangeId(file, { rank: 1, worldSize: 2, bytes: ID_BYTES, timeoutMs: 150 }),
      RendezvousError,
    );
    assert(
      waited.message.includes(`Rank 1 waited 0 s for rank 0 to write ${dir}/rendezvous`),
      waited.message,
    );
    await Deno.writeTextFile(`${dir}/rendezvous`, "not an id");
    const foreign = await assertRejects(
      () => exchangeId(file, { rank: 1, worldSize: 2, bytes: ID_BYTES, timeoutMs: 150 }),
      RendezvousError,
    );
    assert(foreign.message.includes("holds 9 bytes, expected 128"), foreign.message);
  });
  const tcp = parseRendezvous(`tcp://127.0.0.1:${freePort()}`);
  const alone = await assertRejects(
    () =>
      exchangeId(tcp, {
        rank: 0,
        worldSize: 3,
        id: new Uint8Array(ID_BYTES),
        bytes: ID_BYTES,
        timeoutMs: 150,
      }),
    RendezvousError,
  );
  assert(alone.message.includes("0 of 2 other ranks connected"), alone.message);
  const nobody = await assertRejects(
    () => exchangeId(tcp, { rank: 2, worldSize: 3, bytes: ID_BYTES, timeoutMs: 150 }),
    RendezvousError,
  );
  assert(nobody.message.includes("Rank 2 could not get the NCCL id from rank 0"), nobody.message);
  assert(nobody.message.includes("connection refused"), nobody.message);
});

Deno.test("a TCP rendezvous without network permission is a ConfigError that says how to grant it", async () => {
  for (const rank of [0, 1]) {
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        ...DENO_RUN,
        "--allow-read",
        "--allow-write",
        PEER,
        `tcp://127.0.0.1:${freePort()}`,
        String(rank),
        "2",
        "2000",
      ]
        .concat(rank === 0 ? ["00".repeat(ID_BYTES)] : []),
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert(output.code !== 0, `rank ${rank} should fail without --allow-net`);
    assert(stderr.includes("ConfigError") && stderr.includes("needs network permission"), stderr);
    assert(stderr.includes("--allow-net"), stderr);
  }
});
