// The worker side of prefetch.ts: reads each requested byte range chunk by chunk into the shared ring
// (rounding f32 to bf16 first when asked), blocking while the ring is full.

import { type Bf16Cast, bf16CastOn } from "./bf16_simd.ts";
import {
  CHUNK_LENGTHS,
  CONSUMED,
  ERROR_LENGTH,
  FAILED,
  JOB,
  layout,
  type PrefetchInit,
  PRODUCED,
  REQUEST,
  STOP,
} from "./prefetch.ts";
import { readExactly } from "./reader.ts";

function serve(init: PrefetchInit, shared: ReturnType<typeof layout>): void {
  const { control, ring, input } = shared;
  const { chunkBytes, slots } = init;
  const files = new Map<string, Deno.FsFile>();
  let cast: Bf16Cast | undefined;
  let request = 0;
  let produced = 0;
  try {
    for (;;) {
      Atomics.wait(control, REQUEST, request);
      request = Atomics.load(control, REQUEST);
      if (request === STOP) return;
      const job = init.jobs[Atomics.load(control, JOB)];
      let file = files.get(job.path);
      if (!file) files.set(job.path, file = Deno.openSync(job.path, { read: true }));
      for (let at = 0; at < job.byteLength; at += chunkBytes) {
        for (let consumed; produced - (consumed = Atomics.load(control, CONSUMED)) >= slots;) {
          Atomics.wait(control, CONSUMED, consumed);
        }
        if (Atomics.load(control, REQUEST) === STOP) return;
        const n = Math.min(chunkBytes, job.byteLength - at);
        const slot = produced % slots;
        const target = ring.subarray(slot * chunkBytes, (slot + 1) * chunkBytes);
        if (job.toBf16) {
          cast ??= bf16CastOn(init.memory);
          readExactly(file, input.subarray(0, n), { position: job.offset + at, path: job.path });
          cast(shared.inputAt, shared.ringAt + slot * chunkBytes, n);
          control[CHUNK_LENGTHS + slot] = n / 2;
        } else {
          readExactly(file, target.subarray(0, n), { position: job.offset + at, path: job.path });
          control[CHUNK_LENGTHS + slot] = n;
        }
        Atomics.store(control, PRODUCED, ++produced);
        Atomics.notify(control, PRODUCED);
      }
    }
  } catch (error) {
    const text = new TextEncoder().encode(error instanceof Error ? error.message : String(error));
    const length = Math.min(text.byteLength, shared.error.byteLength);
    shared.error.set(text.subarray(0, length));
    control[ERROR_LENGTH] = length;
    Atomics.store(control, FAILED, 1);
    Atomics.notify(control, PRODUCED);
  } finally {
    for (const file of files.values()) file.close();
  }
}

/** The worker global scope, typed here (the checked program's lib is the window's). */
const scope = self as unknown as {
  onmessage: (event: MessageEvent<PrefetchInit>) => void;
  postMessage: (message: string) => void;
};

scope.onmessage = (event) => {
  const init = event.data;
  const shared = layout(init.memory, init);
  scope.postMessage("ready");
  serve(init, shared);
};
