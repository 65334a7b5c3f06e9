#!/usr/bin/env bash
# Compiles the engine's kernels (common.cuh + kernels/*.cu in the order of KERNEL_FILES in
# lib/engine/cuda/device.ts, as NVRTC sees them) with a local nvcc (sm_90a, or --arch) and prints each kernel's
# registers, spills and shared memory: a compile and register-pressure check without a GPU.
# Usage: tools/kernel-check.sh [--arch sm_XX] [kernel-name-filter]   (needs nvcc on PATH, e.g. CUDA 13.x)
# --arch: the target (default sm_90a, what NVRTC compiles for on H100/H200); e.g. sm_80 or sm_89 checks
# that the module still builds for GPUs without Hopper's features (the engine compiles it for any GPU).
set -euo pipefail
arch=sm_90a
if [ "${1:-}" = "--arch" ]; then arch=$2; shift 2; fi
root=$(git rev-parse --show-toplevel)
dir="$root/lib/engine/cuda/kernels"
files=$(sed -n '/^export const KERNEL_FILES/,/^] as const;/p' "$root/lib/engine/cuda/device.ts" | grep -o '"[a-z0-9_]*\.cu"' | tr -d '"')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{ cat "$dir/common.cuh"; for f in $files; do echo; cat "$dir/$f"; done; } > "$work/harpe_kernels.cu"
nvcc -arch="$arch" -std=c++17 -cubin -o "$work/k.cubin" -Xptxas -v "$work/harpe_kernels.cu" 2>&1 |
  awk -v want="${1:-}" '/Compiling entry function/ { name = $0; sub(/.*function .?_?Z?[0-9]*/, "", name); sub(/.? for .*/, "", name); next }
       /bytes spill stores/ { spill = $0; next }
       /Used [0-9]+ registers/ { if (want == "" || index(name, want)) printf "%-44s %s | %s\n", name, $0, spill; next }
       /error|warning|Performance Loss/ { print }' | sed 's/ptxas info    ://g'
