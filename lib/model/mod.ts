// The decoder model on an engine: what the training loop and evaluation use.
//
// API (all shapes use the letters of lib/checkpoint/model_config.ts; N = B*T tokens):
//   const engine = await openEngine("cpu");                      // lib/engine
//   const model = await loadModel(engine, checkpointDir, { precision?, checkpointing? });
//     // or Model.create(engine, config, { weights, precision?, checkpointing? }); precision "bf16" keeps
//     // f32 params/grads and a bf16 working copy + bf16 activations; checkpointing keeps per layer only
//     // its input, attention output and lse, recomputing the rest (not attention) in the backward.
//   model.params / model.grads                                   // f32 [P] tensors, offsets from model.layout
//   model.layout.slots                                           // { name, role, layer, shape, offset, size } per parameter
//   model.zeroGrads();
//   const loss = await model.forwardBackward(inputs, targets, { batch, positions?, gradScale? });
//     // inputs/targets Int32Array [B*T]; targets = next token or IGNORE_INDEX; returns the mean loss over
//     // counted targets and ADDS gradScale * d(mean loss) to model.grads (so micro-batches accumulate
//     // with gradScale = 1 / accumulation steps).
//   const logits = await model.forward(tokens, { batch, positions? }); // Float32Array [B, T, V]
//   model.setRope(rope);                                         // switch plain / HARPE bases
//   await model.exportWeights();  await model.exportGradients(); // Map<HF name, Float32Array>
// Optimizer state: allocate m and v with engine.alloc([model.layout.size]) (zeroed) and call
// engine.adamw on the whole buffers, or per slot (engine.view(buffer, slot.shape, slot.offset)) to give
// norms and biases no weight decay. Gradient norm: engine.sumSquares({ out, x: model.grads }).

export { findSlot, type ParameterLayout, parameterLayout, type ParameterSlot } from "./layout.ts";
export { type BatchOptions, Model, type ModelOptions, type Precision } from "./model.ts";
export { loadModel } from "./load.ts";
export { inverseFrequencies } from "./rope_tables.ts";
export {
  GRADIENT_TOLERANCE,
  LOGITS_TOLERANCE,
  maxRelativeError,
  readReferenceMeta,
  type ReferenceMeta,
  type ReferenceReport,
  verifyReference,
} from "./verify_reference.ts";
