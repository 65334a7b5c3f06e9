# Checks the tiny fixture against Hugging Face: tokenizers gives the same ids as @huggingface/tokenizers,
# AutoTokenizer loads it, and transformers (float64) gives the same loss as harpe's CPU engine.
# Input: tmp/tiny_interop/ids.json from tools/tiny_interop.ts.
import json

import torch
from tokenizers import Tokenizer
from transformers import AutoTokenizer, LlamaForCausalLM

data = json.load(open("tmp/tiny_interop/ids.json"))
tokenizer = Tokenizer.from_file("fixtures/tiny/tokenizer.json")
for text, ids in zip(data["texts"], data["ids"]):
    got = tokenizer.encode(text, add_special_tokens=False).ids
    print(f"ids equal: {got == ids} ({len(ids)} tokens), decode round trip: {tokenizer.decode(got) == text}")
auto = AutoTokenizer.from_pretrained("fixtures/tiny")
same = auto(data["texts"][0], add_special_tokens=False)["input_ids"] == data["ids"][0]
print(f"AutoTokenizer: eos {auto.eos_token!r} = {auto.eos_token_id}, ids equal: {same}")
model = LlamaForCausalLM.from_pretrained("fixtures/tiny", dtype=torch.float64)
x = torch.tensor([data["sequence"]])
with torch.no_grad():
    logits = model(input_ids=x[:, :-1]).logits[0]
loss = torch.nn.functional.cross_entropy(logits, x[0, 1:]).item()
print(f"loss transformers f64 {loss:.10f}, harpe cpu f32 {data['loss']:.10f}, rel {abs(loss - data['loss']) / loss:.2e}")
