// The normalized description of a decoder checkpoint that every other module reads: parsed from a
// Hugging Face config.json (v4 or v5 form) by config.ts. Letters used for shapes across the project:
// B batch, T tokens, C channels (hidden size), H query heads, K key/value heads, D head dim,
// R rotary dims (<= D), L layers, V vocabulary, F feed-forward (intermediate) size.

/** Decoder families harpe supports (the HF `model_type`). */
export type Architecture = "llama" | "mistral" | "qwen2" | "qwen3";

/** One RoPE base per key/value head (`kv`) or per query head (`query`). */
export type Granularity = "kv" | "query";

/** Per-head RoPE bases of a HARPE checkpoint. */
export interface HarpeRope {
  /** One base per head at `granularity`: K entries for `kv`, H entries for `query`, in head order. */
  headBases: number[];
  granularity: Granularity;
}

/** Rotary position embedding settings. */
export interface RopeConfig {
  /** HF rope type: "default", "linear", "dynamic", "yarn", "llama3", ..., or "harpe". */
  type: string;
  /** The checkpoint's original single base (`rope_theta`); kept unchanged by conversion. */
  theta: number;
  /** Rotated dims per head (R = D * partial_rotary_factor, even). Dims >= R pass through. */
  rotaryDim: number;
  /** The scaling parameters of a `linear` or `llama3` checkpoint, validated, by their HF names: `factor`;
   * llama3 also `low_freq_factor`, `high_freq_factor`, `original_max_position_embeddings`. */
  scaling?: Record<string, number>;
  /** Present when `type` is "harpe". */
  harpe?: HarpeRope;
}

/** Storage dtype named by the config (`dtype` in v5, `torch_dtype` in v4). */
export type ConfigDType = "float32" | "bfloat16" | "float16";

/** A checkpoint's architecture, normalized from config.json. */
export interface ModelConfig {
  architecture: Architecture;
  /** The HF class in `architectures[0]`, e.g. "LlamaForCausalLM". */
  architectureClass: string;
  vocabSize: number; // V
  hiddenSize: number; // C
  intermediateSize: number; // F
  numLayers: number; // L
  numHeads: number; // H
  numKvHeads: number; // K (H % K == 0)
  headDim: number; // D (explicit `head_dim`, else C / H)
  rmsNormEps: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** Bias on q, k and v projections (Qwen2 always; Llama/Mistral when `attention_bias`). */
  qkvBias: boolean;
  /** Bias on the output projection (Llama/Mistral when `attention_bias`). */
  outputBias: boolean;
  /** Bias on gate/up/down projections (Llama `mlp_bias`). */
  mlpBias: boolean;
  /** RMSNorm over D on each query and key head before RoPE (Qwen3). */
  qkNorm: boolean;
  rope: RopeConfig;
  /** Attention window the checkpoint was trained with (Mistral `sliding_window`, Qwen with
   * `use_sliding_window`). Recorded only: harpe trains and evaluates with full causal attention. */
  slidingWindow?: number;
  dtype: ConfigDType;
  /** The config.json object exactly as read (conversion keeps every field). */
  raw: Record<string, unknown>;
}

/** The RoPE base of every query head (H entries) and every key head (K entries), or null for keys at
 * `query` granularity (each query head then rotates the shared key with its own base). Plain RoPE
 * checkpoints give `theta` everywhere. */
export function headBases(config: ModelConfig): { query: number[]; key: number[] | null } {
  const { numHeads, numKvHeads, rope } = config;
  const group = numHeads / numKvHeads;
  if (!rope.harpe) {
    return { query: new Array(numHeads).fill(rope.theta), key: new Array(numKvHeads).fill(rope.theta) };
  }
  const bases = rope.harpe.headBases;
  if (rope.harpe.granularity === "kv") {
    return {
      query: Array.from({ length: numHeads }, (_, h) => bases[Math.floor(h / group)]),
      key: bases.slice(),
    };
  }
  return { query: bases.slice(), key: null };
}
