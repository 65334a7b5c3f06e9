// The decoder's forward and backward against the engine interface: embedding, L layers of
// (RMSNorm, q/k/v projections, optional q/k norm, per-head RoPE, causal GQA attention, output
// projection, residual, RMSNorm, SwiGLU MLP, residual), final RMSNorm, lm head. The backward reads
// like the forward in reverse and accumulates into the gradient tensors.

import type { ModelConfig } from "../checkpoint/model_config.ts";
import type { Engine, Tensor } from "../engine/engine.ts";
import type { Activations, LayerActivations } from "./activations.ts";
import type { LayerTensors, ModelTensors } from "./weights.ts";

/** Inverse-frequency tables of the rotary embedding: f32 [H, R/2] for queries, [Hk, R/2] for keys. */
export interface RopeTables {
  query: Tensor;
  key: Tensor;
}

/** What a pass needs besides the activations: the engine, the config, weights and RoPE tables. */
export interface DecoderContext {
  engine: Engine;
  config: ModelConfig;
  weights: ModelTensors;
  rope: RopeTables;
}

/** A linear layer y[N, O] = x[N, I] W[O, I]^T (+ bias). */
function linear(e: Engine, y: Tensor, x: Tensor, w: Tensor, bias?: Tensor): void {
  e.matmul({ out: y, a: x, b: w, transB: true });
  if (bias) e.biasAdd({ out: y, bias });
}

/** The backward of `linear`: dx (= or +=) dy W, dW += dy^T x, dbias += sum dy. */
function linearBackward(
  e: Engine,
  g: { dx: Tensor; dw: Tensor; dbias?: Tensor; accumulate?: boolean },
  dy: Tensor,
  x: Tensor,
  w: Tensor,
): void {
  e.matmul({ out: g.dx, a: dy, b: w, beta: g.accumulate ? 1 : 0 });
  e.matmul({ out: g.dw, a: dy, b: x, transA: true, beta: 1 });
  if (g.dbias) e.biasBackward({ dbias: g.dbias, dout: dy });
}

/** 3-D [N, heads, D] view of a heads tensor. */
function heads3(e: Engine, t: Tensor, heads: number, d: number): Tensor {
  return e.view(t, [t.size / (heads * d), heads, d]);
}

/** 2-D [rows, cols] view. */
function rows2(e: Engine, t: Tensor, cols: number): Tensor {
  return e.view(t, [t.size / cols, cols]);
}

/** One layer: writes `out.next` (the next residual stream); with "recompute", only refills the buffers
 * its backward reads, reusing the saved attention output (no attention, no down projection). */
function layerForward(
  ctx: DecoderContext,
  w: LayerTensors,
  a: LayerActivations,
  act: Activations,
  out: { next: Tensor } | "recompute",
): void {
  const { engine: e, config } = ctx;
  const { numHeads: H, numKvHeads: K, headDim: D, rmsNormEps: eps } = config;
  const Hk = a.kRot.shape[2];
  e.rmsnormForward({ out: a.ln1, rstd: a.rstd1, x: a.input, weight: w.attnNorm, eps });
  linear(e, rows2(e, a.q, H * D), a.ln1, w.q, w.qBias);
  linear(e, rows2(e, a.k, K * D), a.ln1, w.k, w.kBias);
  linear(e, rows2(e, a.v, K * D), a.ln1, w.v, w.vBias);
  if (a.qNormed && a.kNormed && w.qNorm && w.kNorm && a.qRstd && a.kRstd) {
    e.rmsnormForward({ out: a.qNormed, rstd: a.qRstd, x: a.q, weight: w.qNorm, eps });
    e.rmsnormForward({ out: a.kNormed, rstd: a.kRstd, x: a.k, weight: w.kNorm, eps });
  }
  const qSource = a.qNormed ?? a.q, kSource = a.kNormed ?? a.k;
  e.ropeForward({ out: qSource, x: qSource, invFreq: ctx.rope.query, positions: act.positions });
  e.ropeForward({
    out: heads3(e, a.kRot, Hk, D),
    x: kSource,
    invFreq: ctx.rope.key,
    positions: act.positions,
  });
  if (out !== "recompute") e.attentionForward({ out: a.att, lse: a.lse, q: a.qRot, k: a.kRot, v: a.v });
  linear(e, a.mid, rows2(e, a.att, H * D), w.o, w.oBias);
  e.add({ out: a.mid, a: a.mid, b: a.input });
  e.rmsnormForward({ out: a.ln2, rstd: a.rstd2, x: a.mid, weight: w.mlpNorm, eps });
  linear(e, a.gate, a.ln2, w.gate, w.gateBias);
  linear(e, a.up, a.ln2, w.up, w.upBias);
  e.swigluForward({ out: a.act, gate: a.gate, up: a.up });
  if (out === "recompute") return;
  linear(e, out.next, a.act, w.down, w.downBias);
  e.add({ out: out.next, a: out.next, b: a.mid });
}

/** Backward of one layer: reads act.grad.dres (gradient of the layer's output) and replaces it with the
 * gradient of the layer's input; accumulates parameter gradients into `g`. */
function layerBackward(
  ctx: DecoderContext,
  w: LayerTensors,
  g: LayerTensors,
  a: LayerActivations,
  act: Activations,
): void {
  const { engine: e, config } = ctx;
  const { numHeads: H, numKvHeads: K, headDim: D } = config;
  const s = act.grad;
  const Hk = a.kRot.shape[2];
  // MLP: out = mid + down(swiglu(gate(ln2), up(ln2))).
  linearBackward(e, { dx: s.dact, dw: g.down, dbias: g.downBias }, s.dres, a.act, w.down);
  e.swigluBackward({ dgate: s.dgate, dup: s.dup, dout: s.dact, gate: a.gate, up: a.up });
  linearBackward(e, { dx: s.dln, dw: g.gate, dbias: g.gateBias }, s.dgate, a.ln2, w.gate);
  linearBackward(e, { dx: s.dln, dw: g.up, dbias: g.upBias, accumulate: true }, s.dup, a.ln2, w.up);
  e.copy({ out: s.dmid, x: s.dres });
  e.rmsnormBackward({
    dx: s.dmid,
    dweight: g.mlpNorm,
    dout: s.dln,
    x: a.mid,
    weight: w.mlpNorm,
    rstd: a.rstd2,
    accumulate: true,
  });
  // Attention: mid = input + o(attention(rope(q), rope(k), v)).
  linearBackward(e, { dx: s.datt, dw: g.o, dbias: g.oBias }, s.dmid, rows2(e, a.att, H * D), w.o);
  const dq4 = e.view(s.dq, [act.batch, act.seq, H, D]);
  const dk4 = e.view(s.dkRot, [act.batch, act.seq, Hk, D]);
  const dv4 = e.view(s.dv, [act.batch, act.seq, K, D]);
  e.attentionBackward({
    dq: dq4,
    dk: dk4,
    dv: dv4,
    dout: e.view(s.datt, [act.batch, act.seq, H, D]),
    q: a.qRot,
    k: a.kRot,
    v: a.v,
    out: a.att,
    lse: a.lse,
  });
  e.ropeBackward({ dx: s.dq, dout: s.dq, invFreq: ctx.rope.query, positions: act.positions });
  e.ropeBackward({ dx: s.dk, dout: s.dkRot, invFreq: ctx.rope.key, positions: act.positions });
  let dq = s.dq, dk = s.dk;
  if (s.dqPre && s.dkPre && a.qRstd && a.kRstd && w.qNorm && w.kNorm && g.qNorm && g.kNorm) {
    e.rmsnormBackward({ dx: s.dqPre, dweight: g.qNorm, dout: dq, x: a.q, weight: w.qNorm, rstd: a.qRstd });
    e.rmsnormBackward({ dx: s.dkPre, dweight: g.kNorm, dout: dk, x: a.k, weight: w.kNorm, rstd: a.kRstd });
    dq = s.dqPre;
    dk = s.dkPre;
  }
  linearBackward(e, { dx: s.dln, dw: g.q, dbias: g.qBias }, rows2(e, dq, H * D), a.ln1, w.q);
  linearBackward(
    e,
    { dx: s.dln, dw: g.k, dbias: g.kBias, accumulate: true },
    rows2(e, dk, K * D),
    a.ln1,
    w.k,
  );
  linearBackward(
    e,
    { dx: s.dln, dw: g.v, dbias: g.vBias, accumulate: true },
    rows2(e, s.dv, K * D),
    a.ln1,
    w.v,
  );
  e.copy({ out: s.dres, x: s.dmid });
  e.rmsnormBackward({
    dx: s.dres,
    dweight: g.attnNorm,
    dout: s.dln,
    x: a.input,
    weight: w.attnNorm,
    rstd: a.rstd1,
    accumulate: true,
  });
}

/** Runs the forward from act.tokens and act.positions to act.lnf (the normalized final hidden state). */
export function decoderForward(ctx: DecoderContext, act: Activations): void {
  const { engine: e, weights: w } = ctx;
  e.embeddingForward({ out: act.layers[0]?.input ?? act.final, table: w.embed, tokens: act.tokens });
  act.layers.forEach((a, l) =>
    layerForward(ctx, w.layers[l], a, act, { next: act.layers[l + 1]?.input ?? act.final })
  );
  e.rmsnormForward({
    out: act.lnf,
    rstd: act.rstdf,
    x: act.final,
    weight: w.finalNorm,
    eps: ctx.config.rmsNormEps,
  });
}

/**
 * The loss of act.targets after decoderForward, and the backward of everything: writes act.losses
 * (per-token cross-entropy) and accumulates `scale` * d(sum of losses) into `grads`.
 */
export function decoderBackward(
  ctx: DecoderContext,
  act: Activations,
  grads: ModelTensors,
  scale: number,
): void {
  const { engine: e, weights: w } = ctx;
  const s = act.grad;
  e.crossEntropy({
    losses: act.losses,
    hidden: act.lnf,
    weight: w.head,
    targets: act.targets,
    dhidden: s.dln,
    dweight: grads.head,
    scale,
  });
  e.rmsnormBackward({
    dx: s.dres,
    dweight: grads.finalNorm,
    dout: s.dln,
    x: act.final,
    weight: w.finalNorm,
    rstd: act.rstdf,
  });
  for (let l = act.layers.length - 1; l >= 0; l--) {
    if (act.checkpointing) layerForward(ctx, w.layers[l], act.layers[l], act, "recompute");
    layerBackward(ctx, w.layers[l], grads.layers[l], act.layers[l], act);
  }
  e.embeddingBackward({ dtable: grads.embed, dout: s.dres, tokens: act.tokens });
}
