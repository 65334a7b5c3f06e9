# PyTorch side of bench/gpu_ops: times bf16 GEMMs (torch.matmul on CUDA, f32 accumulation by cuBLAS)
# for the shapes given as JSON on argv[1]; prints one JSON object {name: {"ms": median, "tflops": ...}}.
import json
import sys

import torch

WARMUP = 5
REPS = 20


def time_ms(fn):
    for _ in range(WARMUP):
        fn()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(REPS)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(REPS)]
    for s, e in zip(starts, ends):
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) for s, e in zip(starts, ends))
    return times[len(times) // 2]


def main():
    shapes = json.loads(sys.argv[1])
    results = {}
    for shape in shapes:
        m, n, k = shape["m"], shape["n"], shape["k"]
        a = torch.randn((k, m) if shape.get("transA") else (m, k), device="cuda", dtype=torch.bfloat16)
        b = torch.randn((n, k) if shape.get("transB") else (k, n), device="cuda", dtype=torch.bfloat16)
        opa = a.t() if shape.get("transA") else a
        opb = b.t() if shape.get("transB") else b
        out = torch.empty((m, n), device="cuda", dtype=torch.bfloat16)
        ms = time_ms(lambda: torch.matmul(opa, opb, out=out))
        results[shape["name"]] = {"ms": ms, "tflops": 2 * m * n * k / ms / 1e9}
    print(json.dumps({"torch": torch.__version__, "results": results}))


main()
