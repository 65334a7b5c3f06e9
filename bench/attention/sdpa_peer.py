#!/usr/bin/env python3
"""The peer of bench/attention: PyTorch SDPA (flash backend forced), causal, bf16, timed with CUDA events.

Usage: sdpa_peer.py '[{"b":..,"t":..,"h":..,"hk":..,"d":..}, ...]'. Prints one JSON object per shape:
the shape, fwd_ms and bwd_ms (medians) and `gqa`: "native" when SDPA took K key heads (enable_gqa),
else "repeated" (key/value heads repeated to H before the timed calls, as a flash-backend MHA call).
The backward is timed alone (torch.autograd.grad on a retained graph), like harpe's attentionBackward.
"""

import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def median_ms(fn, reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def bench(b: int, t: int, h: int, hk: int, d: int, reps: int) -> dict:
    def rand(heads: int) -> torch.Tensor:
        base = torch.randn(b, t, heads, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        return base.transpose(1, 2)

    q, k, v = rand(h), rand(hk), rand(hk)
    dout = torch.randn_like(q)
    gqa = "native"
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        try:
            F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        except RuntimeError:
            gqa = "repeated"
            k, v = k.repeat_interleave(h // hk, dim=1), v.repeat_interleave(h // hk, dim=1)
        extra = {"enable_gqa": True} if gqa == "native" else {}
        fwd = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, **extra), reps)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, **extra)
        bwd = median_ms(lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True), reps)
    return {"b": b, "t": t, "h": h, "hk": hk, "d": d, "fwd_ms": fwd, "bwd_ms": bwd, "gqa": gqa}


def main() -> None:
    for shape in json.loads(sys.argv[1]):
        print(json.dumps(bench(shape["b"], shape["t"], shape["h"], shape["hk"], shape["d"], shape["reps"])), flush=True)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
