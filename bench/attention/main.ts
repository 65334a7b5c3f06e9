// bench/attention: causal flash-attention forward and backward TFLOP/s of the CUDA engine (bf16, GQA)
// at head dims 64 and 128, T = 8k..128k, next to PyTorch SDPA (flash backend, sdpa_peer.py) in the
// same run. FLOPs by FlashAttention's convention: forward 4 * B * H * T^2 * D / 2, backward 2.5x.
// Prints a markdown table; writes JSON to the path given with --out.
// Run: deno run --allow-all bench/attention/main.ts [--out FILE]

import { CudaEngine } from "../../lib/engine/cuda/mod.ts";
import type { Tensor } from "../../lib/engine/engine.ts";

/** Tokens per call: B * T stays at this until T reaches it, then B is 1. */
const TOKENS = 32768;
const LENGTHS = [8192, 16384, 32768, 65536, 131072];
/** Head dim -> query heads (hidden size 2048) and key heads (groups of 8, as TinyLlama). */
const SHAPES = [{ d: 64, h: 32, hk: 4 }, { d: 128, h: 16, hk: 2 }];
/** Timed repetitions (median reported) below and from LONG tokens; one warm-up run each. */
const REPS = 5;
const LONG = 65536;
const LONG_REPS = 3;

const outIndex = Deno.args.indexOf("--out");
const outFile = outIndex >= 0 ? Deno.args[outIndex + 1] : null;

const engine = await CudaEngine.open();
const { driver, stream } = engine.device;

/** Median milliseconds of `fn` over `reps` runs after one warm-up, timed with events on the stream. */
function timeMs(fn: () => void, reps: number): number {
  fn();
  const events = Array.from({ length: 2 * reps }, () => driver.eventCreate());
  for (let r = 0; r < reps; r++) {
    driver.eventRecord(events[2 * r], stream);
    fn();
    driver.eventRecord(events[2 * r + 1], stream);
  }
  const times = Array.from(
    { length: reps },
    (_, r) => driver.eventElapsedMs(events[2 * r], events[2 * r + 1]),
  );
  events.forEach((e) => driver.eventDestroy(e));
  times.sort((a, b) => a - b);
  return times[reps >> 1];
}

function random(t: Tensor): void {
  const data = new Float32Array(t.size);
  for (let i = 0; i < data.length; i++) data[i] = Math.random() * 2 - 1;
  engine.upload(t, data);
}

interface Shape {
  b: number;
  t: number;
  h: number;
  hk: number;
  d: number;
  reps: number;
}
interface Timing extends Shape {
  fwdMs: number;
  bwdMs: number;
}

const shapes: Shape[] = SHAPES.flatMap(({ d, h, hk }) =>
  LENGTHS.map((t) => ({ b: Math.max(1, TOKENS / t), t, h, hk, d, reps: t >= LONG ? LONG_REPS : REPS }))
);

const ours: Timing[] = [];
for (const shape of shapes) {
  const { b, t, h, hk, d } = shape;
  const q = engine.alloc([b, t, h, d], "bf16"), k = engine.alloc([b, t, hk, d], "bf16");
  const v = engine.alloc([b, t, hk, d], "bf16"), dout = engine.alloc([b, t, h, d], "bf16");
  const out = engine.alloc([b, t, h, d], "bf16"), lse = engine.alloc([b, h, t], "f32");
  const dq = engine.alloc([b, t, h, d], "bf16"), dk = engine.alloc([b, t, hk, d], "bf16");
  const dv = engine.alloc([b, t, hk, d], "bf16");
  [q, k, v, dout].forEach(random);
  const fwdMs = timeMs(() => engine.attentionForward({ out, lse, q, k, v }), shape.reps);
  const bwdMs = timeMs(() => engine.attentionBackward({ dq, dk, dv, dout, q, k, v, out, lse }), shape.reps);
  ours.push({ ...shape, fwdMs, bwdMs });
  console.error(`harpe D${d} T${t} B${b}: fwd ${fwdMs.toFixed(2)} ms, bwd ${bwdMs.toFixed(2)} ms`);
  [q, k, v, dout, out, lse, dq, dk, dv].forEach((x) => engine.free(x));
}
engine.dispose();

/** SDPA timings by shape key, from sdpa_peer.py (empty with a note when it cannot run). */
const peer = new Map<string, { fwd_ms: number; bwd_ms: number; gqa: string }>();
const key = (s: { b: number; t: number; d: number }) => `${s.b}x${s.t}x${s.d}`;
let peerNote = "";
try {
  const script = new URL("./sdpa_peer.py", import.meta.url).pathname;
  const result = await new Deno.Command("python3", {
    args: [script, JSON.stringify(shapes)],
    stderr: "inherit",
  })
    .output();
  for (const line of new TextDecoder().decode(result.stdout).split("\n")) {
    if (line.trim()) {
      const row = JSON.parse(line);
      peer.set(key(row), row);
    }
  }
  if (!result.success) peerNote = `sdpa_peer.py exited with ${result.code}`;
} catch (error) {
  peerNote = `sdpa_peer.py did not run: ${(error as Error).message}`;
}

const tflops = (s: Shape, ms: number, factor: number) =>
  factor * 4 * s.b * s.h * s.t * s.t * s.d / 2 / ms / 1e9;
const fmt = (x: number | undefined) => x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(0);
const rows = ours.map((s) => {
  const p = peer.get(key(s));
  return {
    "head dim": s.d,
    "T": s.t,
    "B": s.b,
    "H/K": `${s.h}/${s.hk}`,
    "fwd harpe": fmt(tflops(s, s.fwdMs, 1)),
    "fwd SDPA": fmt(p && tflops(s, p.fwd_ms, 1)),
    "bwd harpe": fmt(tflops(s, s.bwdMs, 2.5)),
    "bwd SDPA": fmt(p && tflops(s, p.bwd_ms, 2.5)),
    "SDPA GQA": p?.gqa ?? "-",
  };
});
console.log(`device: ${engine.name}; TFLOP/s (causal; fwd 2*B*H*T^2*D, bwd 2.5x)`);
const header = Object.keys(rows[0]);
console.log(`| ${header.join(" | ")} |\n|${header.map(() => "---").join("|")}|`);
for (const row of rows) console.log(`| ${Object.values(row).join(" | ")} |`);
if (peerNote) console.log(peerNote);
if (outFile) {
  await Deno.writeTextFile(
    outFile,
    JSON.stringify({ device: engine.name, ours, peer: [...peer.values()] }, null, 2),
  );
}
