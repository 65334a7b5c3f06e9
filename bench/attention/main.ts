// bench/attention: causal flash-attention forward and backward TFLOP/s of the CUDA engine (bf16, GQA)
// at head dims 64 and 128, T = 8k..128k, next to PyTorch SDPA (flash backend, sdpa_peer.py) in the
// same run. FLOPs by FlashAttention's convention: forward 4 * B * H * T^2 * D / 2, backward 2.5x.
// Next to each row, the separate per-head RoPE kernels around attention (q and k forward, dq and dk
// backward, in place as lib/model/decoder.ts runs them) and their share of attention forward + backward:
// the most a RoPE fused into the attention kernels could save. Then the cost of `query` granularity
// under GQA (one rotated key per query head, K value heads) against `kv` at head dim 64.
// Prints markdown tables and the decision sentences; writes JSON to the path given with --out.
// Run: deno run --allow-all bench/attention/main.ts [--out FILE] [--head-dims 64,128]
//        [--query-lengths 8192,32768 | none]

import { CudaEngine } from "../../lib/engine/cuda/mod.ts";
import { flashAttentionApplies } from "../../lib/engine/cuda/flash_attention.ts";
import type { Tensor } from "../../lib/engine/engine.ts";
import { ConfigError } from "../../lib/errors.ts";
import { inverseFrequencies } from "../../lib/model/mod.ts";

/** Tokens per call: B * T stays at this until T reaches it, then B is 1. */
const TOKENS = 32768;
const LENGTHS = [8192, 16384, 32768, 65536, 131072];
/** Head dim -> query heads (hidden size 2048) and key heads (groups of 8, as TinyLlama). */
const SHAPES = [{ d: 64, h: 32, hk: 4 }, { d: 128, h: 16, hk: 2 }];
/** Timed repetitions (median reported) below and from LONG tokens; one warm-up run each. */
const REPS = 5;
const LONG = 65536;
const LONG_REPS = 3;
/** Per-KV-head RoPE bases of the rope timings (as bench/train; each query head uses its group's base). */
const HEAD_BASES = [1e6, 2.3e6, 3.6e6, 5e6];
/**
 * Keep RoPE a separate kernel while its passes cost at most this share (%) of attention forward +
 * backward: a rotation fused into the attention kernels saves at most that share, and it would rotate
 * every key tile once per query block (T / 128 times) instead of once, in kernels whose register
 * budget is already tight.
 */
const ROPE_SEPARATE_MAX_PERCENT = 5;
/** `query` granularity rows: the TinyLlama heads (head dim 64, 32/4) at these T (B * T = TOKENS; any
 * of LENGTHS, chosen with --query-lengths). */
const QUERY_SHAPE = { d: 64, h: 32, hk: 4 };
const QUERY_LENGTHS = [8192, 32768];
/** Layers of bench/train's TinyLlama-1.1B shape: the query rows' extra time is also given per step. */
const TRAIN_LAYERS = 22;
/** A `query` row's call whose warm-up takes longer than this (ms; the simple attention kernels) is
 * reported from that one run: a warm-up effect of a few ms does not matter there, and more runs cost
 * device time. */
const SLOW_CALL_MS = 500;

const option = (name: string) => {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Deno.args[i + 1] : undefined;
};
const outFile = option("--out") ?? null;
const queryOption = option("--query-lengths");
const queryLengths = queryOption === "none" ? [] : queryOption?.split(",").map(Number) ?? QUERY_LENGTHS;
if (!queryLengths.every((t) => LENGTHS.includes(t))) {
  throw new ConfigError(`--query-lengths: each must be one of ${LENGTHS.join(", ")}, or none`);
}
const headDims = option("--head-dims")?.split(",").map(Number) ?? SHAPES.map((s) => s.d);
if (headDims.length === 0 || !headDims.every((d) => SHAPES.some((s) => s.d === d))) {
  throw new ConfigError(`--head-dims: each must be one of ${SHAPES.map((s) => s.d).join(", ")}`);
}

const engine = await CudaEngine.open();
const { driver, stream } = engine.device;

/** Median milliseconds of `fn` over `reps` runs after one warm-up, timed with events on the stream
 * (the warm-up's own time when it took longer than `slowMs`). */
function timeMs(fn: () => void, reps: number, slowMs = Infinity): number {
  const [start, stop] = [driver.eventCreate(), driver.eventCreate()];
  driver.eventRecord(start, stream);
  fn();
  driver.eventRecord(stop, stream);
  const warmMs = driver.eventElapsedMs(start, stop);
  [start, stop].forEach((e) => driver.eventDestroy(e));
  if (warmMs > slowMs) return warmMs;
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

/** [rows, heads, D] view of a [B, T, heads, D] tensor, as the rope ops take it. */
function heads3(x: Tensor, heads: number, d: number): Tensor {
  return engine.view(x, [x.size / (heads * d), heads, d]);
}

/** RoPE inputs of B rows of T tokens: positions i32 [B*T] and the f32 inverse-frequency tables for
 * the H query heads (each its group's base) and the K key heads, [H, D/2] and [K, D/2]. */
interface RopeInputs {
  positions: Tensor;
  query: Tensor;
  key: Tensor;
}

function ropeInputs(s: { b: number; t: number; h: number; hk: number; d: number }): RopeInputs {
  const bases = Array.from({ length: s.hk }, (_, j) => HEAD_BASES[j % HEAD_BASES.length]);
  const queryBases = Array.from({ length: s.h }, (_, i) => bases[Math.floor(i / (s.h / s.hk))]);
  const positions = engine.alloc([s.b * s.t], "i32");
  engine.upload(positions, Int32Array.from({ length: s.b * s.t }, (_, i) => i % s.t));
  const query = engine.alloc([s.h, s.d / 2], "f32"), key = engine.alloc([s.hk, s.d / 2], "f32");
  engine.upload(query, inverseFrequencies(queryBases, s.d));
  engine.upload(key, inverseFrequencies(bases, s.d));
  return { positions, query, key };
}

function freeRope(r: RopeInputs): void {
  [r.positions, r.query, r.key].forEach((x) => engine.free(x));
}

interface Shape {
  b: number;
  t: number;
  h: number;
  hk: number;
  d: number;
  reps: number;
}
/** Attention forward and backward, and the rope ops of the same layer: q and k forward, dq and dk
 * backward (ms, medians). */
interface Timing extends Shape {
  fwdMs: number;
  bwdMs: number;
  ropeFwdMs: number;
  ropeBwdMs: number;
}
/** A `query` granularity row: q [B, T, H, D], H rotated keys, `hv` value heads. */
interface QueryTiming extends Timing {
  hv: number;
  kernels: "flash" | "simple";
}

/** RoPE time of one layer's training step (forward twice: checkpointing recomputes it) over its
 * attention forward + backward, in %. */
const ropeShare = (s: Timing) => 100 * (2 * s.ropeFwdMs + s.ropeBwdMs) / (s.fwdMs + s.bwdMs);
/** Attention and RoPE time of one layer's training step (ms). */
const layerMs = (s: Timing) => s.fwdMs + s.bwdMs + 2 * s.ropeFwdMs + s.ropeBwdMs;

const shapes: Shape[] = SHAPES.filter((s) => headDims.includes(s.d)).flatMap(({ d, h, hk }) =>
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
  // RoPE in place, as the decoder runs it at `kv` granularity (after the attention timings: it
  // rotates q and k again on every run).
  const rope = ropeInputs(shape);
  const [q3, k3, dq3, dk3] = [heads3(q, h, d), heads3(k, hk, d), heads3(dq, h, d), heads3(dk, hk, d)];
  const { positions } = rope;
  const ropeFwdMs = timeMs(() => {
    engine.ropeForward({ out: q3, x: q3, invFreq: rope.query, positions });
    engine.ropeForward({ out: k3, x: k3, invFreq: rope.key, positions });
  }, shape.reps);
  const ropeBwdMs = timeMs(() => {
    engine.ropeBackward({ dx: dq3, dout: dq3, invFreq: rope.query, positions });
    engine.ropeBackward({ dx: dk3, dout: dk3, invFreq: rope.key, positions });
  }, shape.reps);
  const timing = { ...shape, fwdMs, bwdMs, ropeFwdMs, ropeBwdMs };
  ours.push(timing);
  console.error(
    `harpe D${d} T${t} B${b}: fwd ${fwdMs.toFixed(2)} ms, bwd ${bwdMs.toFixed(2)} ms, rope fwd ${
      ropeFwdMs.toFixed(3)
    } ms, rope bwd ${ropeBwdMs.toFixed(3)} ms (${ropeShare(timing).toFixed(1)}% of attention)`,
  );
  freeRope(rope);
  [q, k, v, dout, out, lse, dq, dk, dv].forEach((x) => engine.free(x));
}

/** Which kernels the engine's attention ops pick for bf16 at QUERY_SHAPE's head dim and query heads
 * with `hk` key and `hv` value heads (fresh allocations are aligned). */
function kernelsFor(b: number, t: number, hk: number, hv: number): "flash" | "simple" {
  const dims = { b, t, h: QUERY_SHAPE.h, hk, hv, d: QUERY_SHAPE.d };
  return flashAttentionApplies(dims, { dtype: "bf16", pointers: [] }) ? "flash" : "simple";
}

/**
 * One layer's attention at `query` granularity as lib/model/decoder.ts runs it: the K shared keys
 * rotated once per query head (ropeForward K -> H heads), attention with H keys and `hv` value heads,
 * the H key gradients summed back into K by ropeBackward. `hv` = K is what the model runs; `hv` = H
 * (values repeated per query head, not counting the repeat) runs on the flash kernels: about what flash
 * kernels taking H keys with K values would cost (they would read fewer value bytes).
 */
function timeQueryPath(t: number, hv: number): QueryTiming {
  const { d, h, hk } = QUERY_SHAPE;
  const b = Math.max(1, TOKENS / t), reps = t >= LONG ? LONG_REPS : REPS;
  const q = engine.alloc([b, t, h, d], "bf16"), kShared = engine.alloc([b, t, hk, d], "bf16");
  const kRot = engine.alloc([b, t, h, d], "bf16"), v = engine.alloc([b, t, hv, d], "bf16");
  const dout = engine.alloc([b, t, h, d], "bf16"), out = engine.alloc([b, t, h, d], "bf16");
  const lse = engine.alloc([b, h, t], "f32"), dq = engine.alloc([b, t, h, d], "bf16");
  const dkRot = engine.alloc([b, t, h, d], "bf16"), dk = engine.alloc([b, t, hk, d], "bf16");
  const dv = engine.alloc([b, t, hv, d], "bf16");
  [q, kShared, v, dout].forEach(random);
  const rope = ropeInputs({ b, t, h, hk, d });
  const { positions } = rope;
  const [q3, dq3] = [heads3(q, h, d), heads3(dq, h, d)];
  const ropeFwdMs = timeMs(
    () => {
      engine.ropeForward({ out: q3, x: q3, invFreq: rope.query, positions });
      engine.ropeForward({
        out: heads3(kRot, h, d),
        x: heads3(kShared, hk, d),
        invFreq: rope.query,
        positions,
      });
    },
    reps,
    SLOW_CALL_MS,
  );
  const fwdMs = timeMs(() => engine.attentionForward({ out, lse, q, k: kRot, v }), reps, SLOW_CALL_MS);
  const bwdMs = timeMs(
    () => engine.attentionBackward({ dq, dk: dkRot, dv, dout, q, k: kRot, v, out, lse }),
    reps,
    SLOW_CALL_MS,
  );
  const ropeBwdMs = timeMs(
    () => {
      engine.ropeBackward({ dx: dq3, dout: dq3, invFreq: rope.query, positions });
      engine.ropeBackward({
        dx: heads3(dk, hk, d),
        dout: heads3(dkRot, h, d),
        invFreq: rope.query,
        positions,
      });
    },
    reps,
    SLOW_CALL_MS,
  );
  freeRope(rope);
  [q, kShared, kRot, v, dout, out, lse, dq, dkRot, dk, dv].forEach((x) => engine.free(x));
  const timing: QueryTiming = {
    b,
    t,
    h,
    hk: h,
    hv,
    d,
    reps,
    fwdMs,
    bwdMs,
    ropeFwdMs,
    ropeBwdMs,
    kernels: kernelsFor(b, t, h, hv),
  };
  console.error(
    `harpe query D${d} T${t} B${b} V${hv} (${timing.kernels}): fwd ${fwdMs.toFixed(2)} ms, bwd ${
      bwdMs.toFixed(2)
    } ms, rope fwd ${ropeFwdMs.toFixed(3)} ms, rope bwd ${ropeBwdMs.toFixed(3)} ms`,
  );
  return timing;
}

const query: QueryTiming[] = queryLengths.flatMap((t) => [
  timeQueryPath(t, QUERY_SHAPE.hk),
  timeQueryPath(t, QUERY_SHAPE.h),
]);
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
const ms = (x: number) => x.toFixed(x < 10 ? 3 : 1);
/** Prints a markdown table of rows with the same keys. */
function printTable(rows: Record<string, string | number>[]): void {
  const header = Object.keys(rows[0]);
  console.log(`| ${header.join(" | ")} |\n|${header.map(() => "---").join("|")}|`);
  for (const row of rows) console.log(`| ${Object.values(row).join(" | ")} |`);
}

console.log(`device: ${engine.name}; TFLOP/s (causal; fwd 2*B*H*T^2*D, bwd 2.5x)`);
printTable(ours.map((s) => {
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
    "RoPE fwd ms (q+k)": ms(s.ropeFwdMs),
    "RoPE bwd ms (dq+dk)": ms(s.ropeBwdMs),
    "RoPE % of attn": ropeShare(s).toFixed(1),
  };
}));
if (peerNote) console.log(peerNote);

const shares = ours.map(ropeShare);
const worst = ours[shares.indexOf(Math.max(...shares))];
const separate = Math.max(...shares) <= ROPE_SEPARATE_MAX_PERCENT;
const ropeSentence =
  `RoPE, separate vs fused: the separate kernels of one layer's training step (q and k forward, ` +
  `twice since checkpointing recomputes them, plus dq and dk backward) cost ${
    Math.min(...shares).toFixed(1)
  }-${
    Math.max(...shares).toFixed(1)
  }% of its attention forward + backward (largest at head dim ${worst.d}, ` +
  `T = ${worst.t}); a RoPE fused into the attention kernels could save at most that. Rule: keep RoPE ` +
  `separate while this is at most ${ROPE_SEPARATE_MAX_PERCENT}%. Decision: ${
    separate ? "keep RoPE a separate kernel" : "above the rule: fusing RoPE into attention is worth trying"
  }.`;
console.log(`\n${ropeSentence}`);

/** Prints the `query` granularity table and sentence; returns the sentence. */
function reportQuery(): string {
  const { d: qd, h: qh, hk: qk } = QUERY_SHAPE;
  const kvRow = (t: number) => ours.find((s) => s.d === qd && s.h === qh && s.hk === qk && s.t === t);
  const queryRows = queryLengths.flatMap((t) => {
    const kv = kvRow(t);
    const rows: { label: string; s: Timing; kernels: string; heads: string }[] = [];
    if (kv) {
      rows.push({ label: "kv", s: kv, kernels: kernelsFor(kv.b, t, qk, qk), heads: `${qh}/${qk}/${qk}` });
    }
    for (const s of query.filter((r) => r.t === t)) {
      const label = s.hv === qk ? "query" : "query, values repeated (K = V = H)";
      rows.push({ label, s, kernels: s.kernels, heads: `${s.h}/${s.hk}/${s.hv}` });
    }
    return rows.map(({ label, s, kernels, heads }) => ({
      "granularity": label,
      "T": s.t,
      "B": s.b,
      "q/k/v heads": heads,
      "attention kernels": kernels,
      "attn fwd ms": ms(s.fwdMs),
      "attn bwd ms": ms(s.bwdMs),
      "RoPE ms (2 fwd + bwd)": ms(2 * s.ropeFwdMs + s.ropeBwdMs),
      "layer ms": ms(layerMs(s)),
      "vs kv": kv ? `${(layerMs(s) / layerMs(kv)).toFixed(2)}x` : "-",
    }));
  });
  console.log(
    `\n\`query\` granularity, head dim ${qd}, ${qh} query / ${qk} key heads: attention + RoPE of one ` +
      `layer's training step (ms)`,
  );
  printTable(queryRows);
  const ratio = (hv: number) =>
    query.filter((s) => s.hv === hv && kvRow(s.t)).map((s) => layerMs(s) / layerMs(kvRow(s.t)!));
  const times = (x: number) => x.toFixed(x < 10 ? 2 : 0);
  const range = (xs: number[]) => {
    const [low, high] = [times(Math.min(...xs)), times(Math.max(...xs))];
    return xs.length === 0 ? "-" : low === high ? `${low}x` : `${low}-${high}x`;
  };
  const today = query.filter((s) => s.hv === qk);
  const kernels = [...new Set(today.map((s) => s.kernels))].join(" and ");
  /** Extra seconds per training step of TRAIN_LAYERS layers, at the single-row length with the same
   * causal pairs per layer as the row (T * sqrt(B)). */
  const perStep = today.filter((s) => kvRow(s.t)).map((s) =>
    `+${((layerMs(s) - layerMs(kvRow(s.t)!)) * TRAIN_LAYERS / 1000).toFixed(1)} s at T = ${
      s.t * Math.sqrt(s.b)
    }`
  );
  const querySentence = [
    `\`query\` granularity: ${range(ratio(qk))} the attention + RoPE time of \`kv\``,
    `(T = ${queryLengths.join(", ")}); its ${qh} rotated keys with ${qk} value heads run on the ${kernels}`,
    `attention kernels${
      kernels === "simple" ? " (the flash kernels take as many value heads as key heads)" : ""
    }.`,
    `Per ${TRAIN_LAYERS}-layer training step: ${perStep.join(", ")}.`,
    `With values repeated per query head (K = V = H, flash kernels) it would be ${range(ratio(qh))}.`,
    `Extra memory: the ${qh}-head rotated keys and their gradient, 2 x B*T x ${qh - qk} x ${qd} bf16 more`,
    `than \`kv\` (one layer's buffers under checkpointing).`,
  ].join(" ");
  console.log(`\n${querySentence}`);
  return querySentence;
}
const querySentence = queryLengths.length > 0 ? reportQuery() : null;

if (outFile) {
  await Deno.writeTextFile(
    outFile,
    JSON.stringify(
      {
        device: engine.name,
        ours,
        query,
        peer: [...peer.values()],
        rope: {
          share_percent: shares,
          separate_max_percent: ROPE_SEPARATE_MAX_PERCENT,
          decision: separate ? "separate" : "fuse",
          sentence: ropeSentence,
        },
        query_sentence: querySentence,
      },
      null,
      2,
    ),
  );
}
