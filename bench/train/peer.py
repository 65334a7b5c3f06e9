#!/usr/bin/env python3
"""The peer of bench/train: PyTorch + transformers LlamaForCausalLM training steps at each length.

Set up as issue 6 describes: random init, f32 master weights with bf16 autocast, SDPA with the flash
backend forced, gradient checkpointing (non-reentrant), fused AdamW, global-norm clipping, batch 1, and
per-KV-head RoPE bases patched into transformers' apply_rotary_pos_emb (each query head uses the base of
its key head, as harpe's `kv` granularity; the tables are built once per length in float64 and cast).

Usage: peer.py '<json>' with {"config": HF config dict, "head_bases": [K bases], "lengths": [{"t", "steps"}],
"warmup", "lr", "grad_clip", "seed"}. Prints one JSON object per length (ascending; an out-of-memory
length is reported and ends the run): t, steps, seconds (each timed step), tokens_per_s, loss,
peak_bytes (torch.cuda.max_memory_allocated), reserved_bytes (max_memory_reserved), device_used_bytes
(mem_get_info total - free after the steps), versions; or t and error.
"""

import json
import sys
import time

import torch
import transformers
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama import modeling_llama


def per_head_rope(head_bases, rotary_dim):
    """An apply_rotary_pos_emb replacement rotating key head j (and its query group) with base head_bases[j]."""
    cache = {}
    calls = [0]

    def tables(t, device, dtype):
        key = (t, device, dtype)
        if key not in cache:
            cache.clear()
            half = torch.arange(rotary_dim // 2, dtype=torch.float64, device=device)
            bases = torch.tensor(head_bases, dtype=torch.float64, device=device)
            inv_freq = bases[:, None] ** (-2.0 * half[None, :] / rotary_dim)  # [K, R/2]
            positions = torch.arange(t, dtype=torch.float64, device=device)
            angles = positions[None, :, None] * inv_freq[:, None, :]  # [K, T, R/2]
            angles = torch.cat([angles, angles], dim=-1)  # [K, T, R] (rotate_half layout)
            cache[key] = (angles.cos().to(dtype)[None], angles.sin().to(dtype)[None])  # [1, K, T, R]
        return cache[key]

    def apply(q, k, cos, sin, *args, **kwargs):
        calls[0] += 1
        b, h, t, d = q.shape
        kh = k.shape[1]
        c, s = tables(t, q.device, q.dtype)
        k_out = k * c + modeling_llama.rotate_half(k) * s
        grouped = q.view(b, kh, h // kh, t, d)  # query heads of one key head share its tables
        q_out = grouped * c[:, :, None] + modeling_llama.rotate_half(grouped) * s[:, :, None]
        return q_out.view(b, h, t, d), k_out

    apply.calls = calls
    return apply


def run_length(model, optimizer, t, steps, request, generator):
    vocab = request["config"]["vocab_size"]

    def step():
        ids = torch.randint(0, vocab, (1, t), device="cuda", generator=generator)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), request["grad_clip"])
        optimizer.step()
        return loss

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    seconds = []
    loss = None
    for i in range(request["warmup"] + steps):
        torch.cuda.synchronize()
        started = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        if i >= request["warmup"]:
            seconds.append(time.perf_counter() - started)
    free, total = torch.cuda.mem_get_info()
    return {
        "t": t,
        "steps": steps,
        "seconds": seconds,
        "tokens_per_s": steps * t / sum(seconds),
        "loss": float(loss),
        "peak_bytes": torch.cuda.max_memory_allocated(),
        "reserved_bytes": torch.cuda.max_memory_reserved(),
        "device_used_bytes": total - free,
    }


def main():
    request = json.loads(sys.argv[1])
    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    print(f"peer: torch {versions['torch']}, transformers {versions['transformers']}, "
          f"{torch.cuda.get_device_name()}", file=sys.stderr)
    fields = {k: v for k, v in request["config"].items() if k not in ("architectures", "model_type", "torch_dtype")}
    config = LlamaConfig(**fields, attn_implementation="sdpa", use_cache=False)
    rope = per_head_rope(request["head_bases"], config.head_dim)
    modeling_llama.apply_rotary_pos_emb = rope
    torch.manual_seed(request["seed"])
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).float()  # f32 master weights; autocast computes in bf16
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = torch.optim.AdamW(model.parameters(), lr=request["lr"], betas=(0.9, 0.95),
                                  weight_decay=0.1, fused=True)
    generator = torch.Generator(device="cuda").manual_seed(request["seed"])
    for length in sorted(request["lengths"], key=lambda x: x["t"]):
        t = length["t"]
        try:
            row = run_length(model, optimizer, t, length["steps"], request, generator)
        except torch.OutOfMemoryError as error:
            row = {"t": t, "error": "out of memory: " + str(error).split("\n")[0][:160]}
        if rope.calls[0] == 0:
            raise RuntimeError("the per-head RoPE patch was never called: transformers no longer uses "
                               "modeling_llama.apply_rotary_pos_emb, the peer would train with one base")
        row["versions"] = versions
        print(json.dumps(row), flush=True)
        print(f"peer T={t}: {row.get('tokens_per_s', row.get('error'))}", file=sys.stderr)
        if "error" in row:
            break


if __name__ == "__main__":
    main()
