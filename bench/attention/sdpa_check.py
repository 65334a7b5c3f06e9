#!/usr/bin/env python3
"""Reference outputs for tests/cuda_flash_attention_test.ts: PyTorch SDPA (causal) on the GPU.

Usage: sdpa_check.py DIR. DIR holds dims.json ({b, t, h, hk, d}) and q.bf16, dout.bf16 [B, T, H, D],
k.bf16, v.bf16 [B, T, K, D] (raw little-endian bf16). Writes out, dq [B, T, H, D], dk, dv [B, T, K, D]
and lse [B, H, T] as raw f32 (*.f32). Grouped heads: each key head is repeated for its H / K query
heads before SDPA, so autograd sums dk and dv over the group. lse is recomputed in f32, one head at a
time (SDPA does not return it).
"""

import json
import sys

import torch
import torch.nn.functional as F


def main() -> None:
    folder = sys.argv[1]
    with open(f"{folder}/dims.json") as f:
        dims = json.load(f)
    b, t, h, hk, d = dims["b"], dims["t"], dims["h"], dims["hk"], dims["d"]

    def load(name: str, heads: int) -> torch.Tensor:
        with open(f"{folder}/{name}.bf16", "rb") as f:
            raw = bytearray(f.read())
        return torch.frombuffer(raw, dtype=torch.bfloat16).view(b, t, heads, d).cuda()

    q, k, v, dout = load("q", h), load("k", hk), load("v", hk), load("dout", h)
    q.requires_grad_(), k.requires_grad_(), v.requires_grad_()
    group = h // hk
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2).repeat_interleave(group, dim=1),
        v.transpose(1, 2).repeat_interleave(group, dim=1),
        is_causal=True,
    ).transpose(1, 2)
    out.backward(dout)

    scale = d**-0.5
    mask = torch.ones(t, t, dtype=torch.bool, device="cuda").triu(1)
    lse = torch.empty(b, h, t, dtype=torch.float32, device="cuda")
    with torch.no_grad():
        for bi in range(b):
            for hi in range(h):
                s = (q[bi, :, hi].float() @ k[bi, :, hi // group].float().T) * scale
                lse[bi, hi] = torch.logsumexp(s.masked_fill(mask, float("-inf")), dim=-1)

    def save(name: str, x: torch.Tensor) -> None:
        x.detach().float().contiguous().cpu().numpy().tofile(f"{folder}/{name}.f32")

    save("out", out)
    save("lse", lse)
    save("dq", q.grad)
    save("dk", k.grad)
    save("dv", v.grad)


if __name__ == "__main__":
    main()
