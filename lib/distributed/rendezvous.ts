// Hands rank 0's NCCL unique id (128 bytes) to every other rank before the communicator is made:
// through a file every rank can see (`file:<path>`, written atomically by rank 0, polled by the others)
// or over TCP (`tcp://host:port`: rank 0 listens there, the others connect and receive the id).

import { ConfigError } from "../errors.ts";
import { writeFileAtomically } from "../util/atomic.ts";

/** How long a rank waits for the others at the rendezvous before giving up. */
export const RENDEZVOUS_TIMEOUT_MS = 5 * 60 * 1000;
/** Pause between two looks at the rendezvous file, or two connection attempts. */
const POLL_MS = 50;
/** Highest TCP port number. */
const MAX_PORT = 65535;

/** Where the ranks meet. */
export type Rendezvous =
  | { kind: "file"; path: string }
  | { kind: "tcp"; host: string; port: number };

/** The ranks did not meet in time (or the meeting point was unusable); says who waited for what. */
export class RendezvousError extends Error {
  override name = "RendezvousError";
  constructor(message: string, readonly rendezvous: string, readonly rank: number) {
    super(message);
  }
}

/**
 * Parses `--rendezvous`: `file:<path>` or `tcp://<host>:<port>`.
 *
 * @example
 * ```ts
 * parseRendezvous("tcp://10.0.0.1:29500"); // { kind: "tcp", host: "10.0.0.1", port: 29500 }
 * parseRendezvous("file:/shared/run/rendezvous"); // { kind: "file", path: "/shared/run/rendezvous" }
 * ```
 */
export function parseRendezvous(spec: string): Rendezvous {
  if (spec.startsWith("file:") && spec.length > "file:".length) {
    return { kind: "file", path: spec.slice("file:".length) };
  }
  const tcp = /^tcp:\/\/(\[[^\]]+\]|[^:/\s]+):(\d+)$/.exec(spec);
  if (tcp && Number(tcp[2]) >= 1 && Number(tcp[2]) <= MAX_PORT) {
    return { kind: "tcp", host: tcp[1].replace(/^\[|\]$/g, ""), port: Number(tcp[2]) };
  }
  throw new ConfigError(`Rendezvous "${spec}" is neither file:<path> nor tcp://<host>:<port>`, {
    field: "rendezvous",
    actual: spec,
    hint: "e.g. --rendezvous file:/shared/run/rendezvous or --rendezvous tcp://10.0.0.1:29500",
  });
}

/** Options of {@link exchangeId}. */
export interface ExchangeOptions {
  rank: number;
  worldSize: number;
  /** Rank 0's id (required on rank 0, ignored elsewhere). */
  id?: Uint8Array;
  /** Bytes every id has. */
  bytes: number;
  /** Give up after this long (default RENDEZVOUS_TIMEOUT_MS). */
  timeoutMs?: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function describe(r: Rendezvous): string {
  return r.kind === "file" ? `file:${r.path}` : `tcp://${r.host}:${r.port}`;
}

/**
 * Rank 0 publishes `options.id`; every rank resolves with rank 0's id. Rank 0 returns once every
 * other rank has it (TCP) or once the file is in place (file).
 *
 * @example
 * ```ts
 * const id = await exchangeId(parseRendezvous("file:run/rendezvous"), { rank, worldSize: 2, id, bytes: 128 });
 * ```
 */
export async function exchangeId(rendezvous: Rendezvous, options: ExchangeOptions): Promise<Uint8Array> {
  const timeoutMs = options.timeoutMs ?? RENDEZVOUS_TIMEOUT_MS;
  if (options.rank === 0) {
    if (!options.id || options.id.length !== options.bytes) {
      throw new RangeError(`Rank 0 must bring an id of ${options.bytes} bytes to the rendezvous`);
    }
    if (rendezvous.kind === "file") await publishFile(rendezvous.path, options.id);
    else await serveTcp(rendezvous, options.id, { ...options, timeoutMs });
    return options.id;
  }
  return rendezvous.kind === "file"
    ? await pollFile(rendezvous, { ...options, timeoutMs })
    : await fetchTcp(rendezvous, { ...options, timeoutMs });
}

/** Removes a file rendezvous once every rank has read it (so a later launch cannot read a stale id). */
export async function removeRendezvousFile(rendezvous: Rendezvous): Promise<void> {
  if (rendezvous.kind !== "file") return;
  await Deno.remove(rendezvous.path).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
}

async function publishFile(path: string, id: Uint8Array): Promise<void> {
  await writeFileAtomically(path, (temporary) => Deno.writeFile(temporary, id));
}

async function pollFile(
  rendezvous: { kind: "file"; path: string },
  options: ExchangeOptions & { timeoutMs: number },
): Promise<Uint8Array> {
  const deadline = Date.now() + options.timeoutMs;
  while (true) {
    try {
      const bytes = await Deno.readFile(rendezvous.path);
      if (bytes.length === options.bytes) return bytes;
      throw new RendezvousError(
        `Rendezvous file ${rendezvous.path} holds ${bytes.length} bytes, expected ${options.bytes}: ` +
          `it is not a harpe rendezvous file (remove it, or give every rank a fresh path)`,
        describe(rendezvous),
        options.rank,
      );
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    if (Date.now() >= deadline) {
      throw new RendezvousError(
        `Rank ${options.rank} waited ${Math.round(options.timeoutMs / 1000)} s for rank 0 to write ` +
          `${rendezvous.path}: check that rank 0 runs with the same --rendezvous and that every host ` +
          `sees that folder`,
        describe(rendezvous),
        options.rank,
      );
    }
    await sleep(POLL_MS);
  }
}

/** The error for a TCP rendezvous without network permission (the `harpe` task grants none). */
function networkPermissionError(where: string): ConfigError {
  return new ConfigError(`A TCP rendezvous (${where}) needs network permission`, {
    hint: "run `deno run --allow-read --allow-write --allow-env --allow-ffi --allow-sys --allow-run " +
      "--allow-net cli/main.ts train ...`, or use --rendezvous file:<path> on a folder every host sees",
  });
}

function isPermissionError(error: unknown): boolean {
  return error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied;
}

async function serveTcp(
  rendezvous: { kind: "tcp"; host: string; port: number },
  id: Uint8Array,
  options: ExchangeOptions & { timeoutMs: number },
): Promise<void> {
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: "0.0.0.0", port: rendezvous.port });
  } catch (error) {
    if (isPermissionError(error)) throw networkPermissionError(describe(rendezvous));
    throw new RendezvousError(
      `Rank 0 cannot listen on port ${rendezvous.port} for ${describe(rendezvous)}: ${
        (error as Error).message
      } (choose a free port)`,
      describe(rendezvous),
      0,
    );
  }
  const expected = options.worldSize - 1;
  let served = 0;
  const timer = setTimeout(() => listener.close(), options.timeoutMs);
  try {
    while (served < expected) {
      let connection: Deno.TcpConn;
      try {
        connection = await listener.accept();
      } catch {
        throw new RendezvousError(
          `Rank 0 waited ${Math.round(options.timeoutMs / 1000)} s at ${describe(rendezvous)}: ` +
            `${served} of ${expected} other ranks connected (check --world-size, the address and the firewall)`,
          describe(rendezvous),
          0,
        );
      }
      try {
        await writeAll(connection, id);
        served++;
      } finally {
        connection.close();
      }
    }
  } finally {
    clearTimeout(timer);
    try {
      listener.close();
    } catch {
      // Already closed by the timeout.
    }
  }
}

async function writeAll(connection: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await connection.write(bytes.subarray(written));
}

async function fetchTcp(
  rendezvous: { kind: "tcp"; host: string; port: number },
  options: ExchangeOptions & { timeoutMs: number },
): Promise<Uint8Array> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError = "";
  while (Date.now() < deadline) {
    let connection: Deno.TcpConn | undefined;
    try {
      connection = await Deno.connect({ hostname: rendezvous.host, port: rendezvous.port });
      const id = new Uint8Array(options.bytes);
      let read = 0;
      while (read < id.length) {
        const n = await connection.read(id.subarray(read));
        if (n === null) break;
        read += n;
      }
      if (read === id.length) return id;
      lastError = `connection closed after ${read} of ${options.bytes} bytes`;
    } catch (error) {
      if (isPermissionError(error)) throw networkPermissionError(describe(rendezvous));
      lastError = error instanceof Deno.errors.ConnectionRefused
        ? "connection refused (rank 0 not listening yet)"
        : (error as Error).message;
    } finally {
      connection?.close();
    }
    await sleep(POLL_MS);
  }
  throw new RendezvousError(
    `Rank ${options.rank} could not get the NCCL id from rank 0 at ${describe(rendezvous)} within ${
      Math.round(options.timeoutMs / 1000)
    } s (last: ${lastError}): check that rank 0 runs with the same --rendezvous and is reachable`,
    describe(rendezvous),
    options.rank,
  );
}
