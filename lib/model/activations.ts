// The buffers one forward/backward pass needs for a batch of B rows of T tokens (N = B*T): what each
// layer saves for its backward, and the gradient scratch shared by all layers.

import type { ModelConfig } from "../checkpoint/model_config.ts";
import type { Engine, Tensor, TensorDType } from "../engine/engine.ts";

/** What the forward of one layer saves. */
export interface LayerActivations {
  input: Tensor; // [N, C] residual stream entering the layer
  ln1: Tensor; // [N, C]
  rstd1: Tensor; // [N]
  q: Tensor; // [N, H, D] projected (and biased) queries; rotated in place unless q/k norm
  k: Tensor; // [N, K, D]
  v: Tensor; // [B, T, K, D]
  qNormed?: Tensor; // [N, H, D] (q/k norm) rotated in place
  qRstd?: Tensor; // [N*H]
  kNormed?: Tensor; // [N, K, D]
  kRstd?: Tensor; // [N*K]
  qRot: Tensor; // [B, T, H, D] rotated queries (a view of q or qNormed)
  kRot: Tensor; // [B, T, Hk, D] rotated keys (Hk = H at `query` granularity, else a view of k or kNormed)
  att: Tensor; // [B, T, H, D]
  lse: Tensor; // [B, H, T]
  mid: Tensor; // [N, C] residual after attention
  ln2: Tensor; // [N, C]
  rstd2: Tensor; // [N]
  gate: Tensor; // [N, F]
  up: Tensor; // [N, F]
  act: Tensor; // [N, F]
}

/** Gradient scratch, reused by every layer in the backward pass. */
export interface GradScratch {
  dres: Tensor; // [N, C] gradient of the residual stream
  dmid: Tensor; // [N, C]
  dln: Tensor; // [N, C]
  datt: Tensor; // [N, H*D]
  dq: Tensor; // [N, H, D]
  dkRot: Tensor; // [N, Hk, D]
  dk: Tensor; // [N, K, D] (dkRot itself when Hk == K: rotated back in place)
  dv: Tensor; // [N, K, D]
  dqPre?: Tensor; // [N, H, D] (q/k norm)
  dkPre?: Tensor; // [N, K, D]
  dact: Tensor; // [N, F]
  dgate: Tensor; // [N, F]
  dup: Tensor; // [N, F]
}

/** All buffers of one batch shape. */
export interface Activations {
  batch: number; // B
  seq: number; // T
  /** Layers share their recomputable buffers (see allocateActivations). */
  checkpointing: boolean;
  tokens: Tensor; // i32 [N]
  positions: Tensor; // i32 [N]
  targets: Tensor; // i32 [N]
  layers: LayerActivations[];
  final: Tensor; // [N, C] residual stream after the last layer
  lnf: Tensor; // [N, C]
  rstdf: Tensor; // [N]
  losses: Tensor; // [N]
  grad: GradScratch;
  all: Tensor[]; // every allocation, for freeing
}

/**
 * Allocates the buffers for B rows of T tokens; `keyHeads` is Hk, the number of rotated key heads.
 * Activations and their gradients get `dtype`; normalization statistics, lse and losses stay f32.
 * With `checkpointing`, each layer keeps only its input, attention output and lse; the rest is one
 * set of buffers shared by all layers, recomputed (without attention) before each layer's backward.
 */
export function allocateActivations(
  engine: Engine,
  config: ModelConfig,
  shape: { batch: number; seq: number; keyHeads: number; dtype: "f32" | "bf16"; checkpointing: boolean },
): Activations {
  const { hiddenSize: C, intermediateSize: F, numHeads: H, numKvHeads: K, headDim: D } = config;
  const { batch: B, seq: T, keyHeads: Hk, dtype } = shape;
  const N = B * T;
  const all: Tensor[] = [];
  const alloc = (dims: number[], type: TensorDType = dtype) => {
    const t = engine.alloc(dims, type);
    all.push(t);
    return t;
  };
  const as4 = (t: Tensor, heads: number) => engine.view(t, [B, T, heads, D]);
  // Everything a layer recomputes under checkpointing (all but its input, attention output and lse).
  const recomputable = () => {
    const q = alloc([N, H, D]), k = alloc([N, K, D]);
    const qNormed = config.qkNorm ? alloc([N, H, D]) : undefined;
    const kNormed = config.qkNorm ? alloc([N, K, D]) : undefined;
    return {
      ln1: alloc([N, C]),
      rstd1: alloc([N], "f32"),
      q,
      k,
      v: alloc([B, T, K, D]),
      qNormed,
      qRstd: config.qkNorm ? alloc([N * H], "f32") : undefined,
      kNormed,
      kRstd: config.qkNorm ? alloc([N * K], "f32") : undefined,
      qRot: as4(qNormed ?? q, H),
      kRot: Hk === K ? as4(kNormed ?? k, K) : alloc([B, T, Hk, D]),
      mid: alloc([N, C]),
      ln2: alloc([N, C]),
      rstd2: alloc([N], "f32"),
      gate: alloc([N, F]),
      up: alloc([N, F]),
      act: alloc([N, F]),
    };
  };
  const shared = shape.checkpointing ? recomputable() : undefined;
  const layers: LayerActivations[] = [];
  let input = alloc([N, C]);
  for (let l = 0; l < config.numLayers; l++) {
    layers.push({
      ...(shared ?? recomputable()),
      input,
      att: alloc([B, T, H, D]),
      lse: alloc([B, H, T], "f32"),
    });
    input = alloc([N, C]);
  }
  const dkRot = alloc([N, Hk, D]);
  const grad: GradScratch = {
    dres: alloc([N, C]),
    dmid: alloc([N, C]),
    dln: alloc([N, C]),
    datt: alloc([N, H * D]),
    dq: alloc([N, H, D]),
    dkRot,
    dk: Hk === K ? dkRot : alloc([N, K, D]),
    dv: alloc([N, K, D]),
    dqPre: config.qkNorm ? alloc([N, H, D]) : undefined,
    dkPre: config.qkNorm ? alloc([N, K, D]) : undefined,
    dact: alloc([N, F]),
    dgate: alloc([N, F]),
    dup: alloc([N, F]),
  };
  return {
    batch: B,
    seq: T,
    checkpointing: shape.checkpointing,
    tokens: alloc([N], "i32"),
    positions: alloc([N], "i32"),
    targets: alloc([N], "i32"),
    layers,
    final: input,
    lnf: alloc([N, C]),
    rstdf: alloc([N], "f32"),
    losses: alloc([N], "f32"),
    grad,
    all,
  };
}
