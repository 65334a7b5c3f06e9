// The golden Hugging Face checkpoints read correctly: every tensor's name, shape and dtype follow from
// config.json, and decoded values equal values computed independently from the raw file bytes.

import { assert, assertEquals } from "./assert.ts";
import { PROJECT_ROOT } from "./harness.ts";
import { type DType, SafetensorsFile } from "../lib/safetensors/mod.ts";

const GOLDEN = `${PROJECT_ROOT}fixtures/golden`;

/** Llama parameter shapes written out by hand from the config fields (C, H, K, D, F, V, L). */
function llamaShapes(config: Record<string, number | boolean>): Map<string, number[]> {
  const C = config.hidden_size as number;
  const H = config.num_attention_heads as number;
  const K = config.num_key_value_heads as number;
  const D = config.head_dim as number;
  const F = config.intermediate_size as number;
  const V = config.vocab_size as number;
  const L = config.num_hidden_layers as number;
  const shapes = new Map<string, number[]>([["model.embed_tokens.weight", [V, C]], ["model.norm.weight", [
    C,
  ]]]);
  if (!config.tie_word_embeddings) shapes.set("lm_head.weight", [V, C]);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    shapes.set(`${p}.input_layernorm.weight`, [C]);
    shapes.set(`${p}.post_attention_layernorm.weight`, [C]);
    shapes.set(`${p}.self_attn.q_proj.weight`, [H * D, C]);
    shapes.set(`${p}.self_attn.k_proj.weight`, [K * D, C]);
    shapes.set(`${p}.self_attn.v_proj.weight`, [K * D, C]);
    shapes.set(`${p}.self_attn.o_proj.weight`, [C, H * D]);
    shapes.set(`${p}.mlp.gate_proj.weight`, [F, C]);
    shapes.set(`${p}.mlp.up_proj.weight`, [F, C]);
    shapes.set(`${p}.mlp.down_proj.weight`, [C, F]);
  }
  return shapes;
}

/** Value of little-endian bf16 bits at `offset`, computed in float64. */
function bf16At(view: DataView, offset: number): number {
  const h = view.getUint16(offset, true);
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 7) & 0xff;
  const mant = h & 0x7f;
  if (exp === 0xff) return mant === 0 ? sign * Infinity : NaN;
  if (exp === 0) return sign * mant * 2 ** -133;
  return sign * (1 + mant / 128) * 2 ** (exp - 127);
}

async function checkCheckpoint(name: string, dtype: DType, shardFiles: string[]): Promise<void> {
  const dir = `${GOLDEN}/${name}/checkpoint`;
  const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  const expected = llamaShapes(config);
  const seen = new Map<string, string>();
  let totalBytes = 0;
  for (const shard of shardFiles) {
    const path = `${dir}/${shard}`;
    const raw = await Deno.readFile(path);
    const view = new DataView(raw.buffer);
    const file = await SafetensorsFile.open(path);
    try {
      assertEquals(file.metadata, { format: "pt" }, `${shard} metadata`);
      let previousEnd = -1;
      for (const [tensor, info] of file.tensors) {
        assert(!seen.has(tensor), `${tensor} in two shards`);
        seen.set(tensor, shard);
        assertEquals(info.shape, expected.get(tensor), `${tensor} shape`);
        assertEquals(info.dtype, dtype, `${tensor} dtype`);
        assert(info.offset >= previousEnd, `${tensor} listed in offset order`);
        previousEnd = info.offset + info.byteLength;
        totalBytes += info.byteLength;
        const values = await file.readF32(tensor);
        assertEquals(values.length, info.shape.reduce((a, b) => a * b, 1), `${tensor} element count`);
        for (let i = 0; i < values.length; i++) {
          const ref = dtype === "BF16"
            ? bf16At(view, info.offset + 2 * i)
            : view.getFloat32(info.offset + 4 * i, true);
          if (!Object.is(values[i], ref)) {
            throw new Error(`${tensor}[${i}]: decoded ${values[i]}, expected ${ref} from the file's bits`);
          }
        }
      }
      assertEquals(previousEnd, raw.byteLength, `${shard}: last tensor ends at the end of the file`);
    } finally {
      file.close();
    }
  }
  assertEquals([...seen.keys()].sort(), [...expected.keys()].sort(), `${name}: tensor names`);
  if (shardFiles.length > 1) {
    const index = JSON.parse(await Deno.readTextFile(`${dir}/model.safetensors.index.json`));
    assertEquals(index.metadata.total_size, totalBytes, "index total_size");
    for (const [tensor, shard] of seen) assertEquals(index.weight_map[tensor], shard, `${tensor} shard`);
  }
}

Deno.test("golden llama_mha (f32, one file) reads with the shapes of its config and exact values", async () => {
  await checkCheckpoint("llama_mha", "F32", ["model.safetensors"]);
});

Deno.test("golden llama_gqa_tied_bf16_sharded (bf16, 4 shards): values equal f32 computed from the bits", async () => {
  const shards = [1, 2, 3, 4].map((i) => `model-0000${i}-of-00004.safetensors`);
  await checkCheckpoint("llama_gqa_tied_bf16_sharded", "BF16", shards);
});

Deno.test("golden reference files: input_ids is I32 [batch, seq] and the loss is one f32", async () => {
  for (const name of ["llama_mha", "llama_gqa_tied_bf16_sharded"]) {
    const meta = JSON.parse(await Deno.readTextFile(`${GOLDEN}/${name}/meta.json`));
    const file = await SafetensorsFile.open(`${GOLDEN}/${name}/reference.safetensors`);
    try {
      const ids = file.info("input_ids");
      assertEquals([ids.dtype, ids.shape], ["I32", [meta.batch, meta.seq]]);
      const typed = await file.readTyped("input_ids");
      assert(typed instanceof Int32Array, "I32 reads as Int32Array");
      assertEquals(file.info("loss.harpe").shape, [1]);
      const loss = (await file.readF32("loss.harpe"))[0];
      assert(loss > 0 && loss < 20, `loss ${loss} is a plausible cross-entropy`);
    } finally {
      file.close();
    }
  }
});
