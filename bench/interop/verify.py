#!/usr/bin/env python3
# Verifies that HARPE checkpoints exported by harpe run in Hugging Face transformers (GPU machine:
# `deno task interop`): each case is converted with explicit bases (`harpe plan --schedule explicit`, then
# `harpe convert --plan`), exported with `harpe export --hf-remote-code`, loaded with trust_remote_code in
# float32 and float64 and compared with the golden reference logits and with harpe's own CPU model (`harpe verify-reference` on a case made from
# the transformers run); plain loading without remote code is tried and what happens is printed.
# Usage: python3 bench/interop/verify.py RESULTS.md [--sources FILE]; on the GPU machine, whose node_modules
# is the slim copy from tools/device-prep.sh: `deno task --node-modules-dir=manual interop` (plain
# `deno task` would try to download the missing plotting packages there).
import argparse
import inspect
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[2]
HARPE = ["deno", "run", "--cached-only", "--node-modules-dir=manual", "--allow-read", "--allow-write", "--allow-env",
         "--allow-ffi", str(ROOT / "cli/main.ts")]  # manual: the device's node_modules lacks the plotting packages
TOLERANCE_F32 = 1e-4  # max |a - b| / max |b| of logits, issue 8
TINY_SEQ, TINY_BATCH = 32, 2
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# Golden cases (fixtures/golden) and their bases; extra cases use tiny random checkpoints made here.
QUERY_BASES_8 = [1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6]
TINY = {
    "mistral": dict(cls="MistralConfig", kwargs=dict(sliding_window=None)),
    "qwen2": dict(cls="Qwen2Config", kwargs=dict(use_sliding_window=False)),
    "qwen3": dict(cls="Qwen3Config", kwargs=dict(head_dim=24)),
}
lines = []


def say(text=""):
    print(text, flush=True)
    lines.append(text)


def rel_err(actual, expected):
    actual, expected = actual.double().cpu(), expected.double().cpu()
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def harpe(*args, ok=(0,)):
    """Runs the harpe CLI; returns stdout, raises with its stderr on an exit code not in `ok`."""
    done = subprocess.run(HARPE + [str(a) for a in args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode not in ok:
        raise RuntimeError(f"harpe {args[0]} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def target_length(checkpoint):
    """Twice the checkpoint's context length: the length the HARPE conversion targets here."""
    return 2 * json.loads((Path(checkpoint) / "config.json").read_text())["max_position_embeddings"]


def make_tiny(arch, path, seed):
    """A tiny random checkpoint of `arch` (4 query heads, 2 key heads), saved in float32."""
    torch.manual_seed(seed)
    spec = TINY[arch]
    config = getattr(transformers, spec["cls"])(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, **spec["kwargs"])
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # sharp attention, so that wrong positions or bases show in the logits
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(6)
            layer.self_attn.k_proj.weight.mul_(6)
            if layer.self_attn.q_proj.bias is not None:
                layer.self_attn.q_proj.bias.normal_(0, 0.5)
                layer.self_attn.k_proj.bias.normal_(0, 0.5)
    model.save_pretrained(path)
    return model.config.architectures[0]


def load_remote(path, dtype, attention="sdpa"):
    return AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True, dtype=dtype,
                                                attn_implementation=attention).to(DEVICE).eval()


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=ids.to(DEVICE)).logits.cpu()


def cache_error(model, ids):
    """Relative error of the last position's logits decoded with the KV cache vs the full forward."""
    ids = ids.to(DEVICE)
    with torch.no_grad():
        full = model(input_ids=ids).logits[:, -1]
        prefix = model(input_ids=ids[:, :-1], use_cache=True)
        step = model(input_ids=ids[:, -1:], past_key_values=prefix.past_key_values, use_cache=True).logits[:, -1]
    return rel_err(step, full)


def write_case(case_dir, checkpoint, arch_class, bases_q, bases_k, granularity, ids, model64, plain64):
    """A reference case (fixtures/golden format) whose expected values come from the transformers run."""
    case_dir.mkdir(parents=True)
    (case_dir / "checkpoint").symlink_to(checkpoint.resolve())
    ids = ids.to(DEVICE)
    with torch.no_grad():
        logits_plain = plain64(input_ids=ids).logits
    model64.zero_grad()
    out = model64(input_ids=ids, labels=ids)
    out.loss.backward()
    tensors = {"input_ids": ids.to(torch.int32).cpu(), "logits.plain": logits_plain.float().cpu(),
               "logits.harpe": out.logits.detach().float().cpu(), "loss.harpe": out.loss.detach().float().reshape(1).cpu()}
    for name, param in model64.named_parameters():
        tensors[f"grad.{name}"] = param.grad.float().cpu()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(case_dir / "reference.safetensors"))
    meta = {"architecture": arch_class, "granularity": granularity, "q_bases": bases_q,
            "k_bases": bases_k if granularity == "kv" else None, "seq": ids.shape[1], "batch": ids.shape[0]}
    (case_dir / "meta.json").write_text(json.dumps(meta))


def try_plain(path, label):
    """Plain loading (no remote code): prints what transformers does with the HARPE config."""
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except Exception as error:  # the outcome we want: a refusal
        message = " ".join(str(error).split())[:300]
        say(f"- plain `AutoModelForCausalLM.from_pretrained` on {label}: **refused**: `{type(error).__name__}: {message}`")
        return None
    rope = getattr(model.config, "rope_parameters", None)
    say(f"- plain `AutoModelForCausalLM.from_pretrained` on {label}: **LOADED SILENTLY** as "
        f"{type(model).__name__} with rope_parameters {rope}")
    return model


def run_case(work, name, source, arch_class, granularity, bases_q, bases_k, ids, golden=None):
    """Convert + export + load + compare one case; returns its table row."""
    started = time.time()
    case = work / name
    case.mkdir()
    head_bases = bases_k if granularity == "kv" else bases_q
    target = target_length(source)
    harpe("plan", source, "--schedule", "explicit", "--bases", ",".join(str(b) for b in head_bases),
          "--granularity", granularity, "--target-length", target, "-o", case / "plan.yaml")
    harpe("convert", source, "--plan", case / "plan.yaml", "--target-length", target, "-o", case / "harpe")
    export = case / f"export_{name}"  # transformers caches remote code by folder name: one per case
    harpe("export", case / "harpe", "-o", export, "--dtype", "f32", "--hf-remote-code")
    model32 = load_remote(export, torch.float32)
    model64 = load_remote(export, torch.float64)
    kind = type(model32).__name__, type(model32.model.rotary_emb).__name__, type(model32.model.layers[0].self_attn).__name__
    logits32, logits64 = logits_of(model32, ids), logits_of(model64, ids)
    row = {"case": name, "granularity": granularity, "classes": "/".join(kind),
           "bases": " ".join(f"{b:.0e}" for b in head_bases),
           "f32 vs f64": rel_err(logits32, logits64), "kv cache": cache_error(model32, ids),
           "eager vs sdpa": rel_err(logits_of(load_remote(export, torch.float32, "eager"), ids), logits32)}
    if golden is not None:
        row["f32 vs golden"] = rel_err(logits32, golden)
        row["f64 vs golden"] = rel_err(logits64, golden)
    plain64 = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float64).to(DEVICE).eval()
    write_case(case / "case", case / "harpe", arch_class, bases_q, bases_k, granularity, ids, model64, plain64)
    report = json.loads(harpe("verify-reference", case / "case", "--json", ok=(0, 1)))  # 1: over tolerance
    row["harpe CPU vs transformers"] = report["logitsHarpe"]
    row["harpe grads (max)"] = report["maxGradient"]
    row["harpe check"] = "passed" if report["passed"] else "FAILED"
    row["seconds"] = time.time() - started
    checked = [row[k] for k in ("f32 vs f64", "kv cache", "eager vs sdpa", "f32 vs golden", "harpe CPU vs transformers")
               if k in row]
    row["pass"] = all(e <= TOLERANCE_F32 for e in checked) and report["passed"]
    return row


def golden_cases():
    for case in sorted((ROOT / "fixtures/golden").iterdir()):
        if (case / "meta.json").exists():
            yield case, json.loads((case / "meta.json").read_text())


def dump_sources(path):
    """Writes the transformers code HARPE's remote code builds on, for whoever debugs a failure."""
    from transformers.models.llama import modeling_llama
    parts = [f"# transformers {transformers.__version__}"]
    for obj in (modeling_llama.LlamaRotaryEmbedding, modeling_llama.LlamaAttention, modeling_llama.LlamaDecoderLayer,
                modeling_llama.LlamaModel.forward, modeling_llama.LlamaForCausalLM.__init__,
                modeling_llama.eager_attention_forward):
        try:
            parts.append(inspect.getsource(inspect.unwrap(obj)))
        except (OSError, TypeError) as error:
            parts.append(f"# no source for {obj!r}: {error}")
    Path(path).write_text("\n\n".join(parts))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", help="markdown file the report is written to")
    parser.add_argument("--sources", help="also write the transformers sources the remote code builds on here")
    args = parser.parse_args()
    if args.sources:
        dump_sources(args.sources)
    say("# HARPE checkpoints in Hugging Face transformers (issue 8)")
    say()
    say(f"`python3 bench/interop/verify.py` (`deno task interop`), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"transformers {transformers.__version__}, torch {torch.__version__}, device {DEVICE}"
        f"{' (' + torch.cuda.get_device_name() + ')' if DEVICE == 'cuda' else ''}.")
    say()
    rows, failures = [], []
    with tempfile.TemporaryDirectory(prefix="harpe-interop-") as tmp:
        work = Path(tmp)
        cases = []
        for case, meta in golden_cases():
            ref = load_file(str(case / "reference.safetensors"))
            ids, golden = ref["input_ids"].long(), ref["logits.harpe"]
            src = case / "checkpoint"
            cases.append((case.name, src, meta["architecture"], meta["granularity"], meta["q_bases"],
                          meta["k_bases"], ids, golden))
            if meta["granularity"] == "kv" and meta["q_bases"] != meta["k_bases"]:
                # The same bases given per query head must give the same logits through the query path.
                cases.append((case.name + "_as_query", src, meta["architecture"], "query", meta["q_bases"], None,
                              ids, golden))
                if len(meta["q_bases"]) == len(QUERY_BASES_8):
                    cases.append((case.name + "_query_distinct", src, meta["architecture"], "query", QUERY_BASES_8,
                                  None, ids, None))
        generator = torch.Generator().manual_seed(8)
        for seed, (arch, granularity) in enumerate(
                [("mistral", "kv"), ("qwen2", "query"), ("qwen3", "kv"), ("qwen3", "query")]):
            src = work / f"tiny_{arch}_{granularity}_src"
            arch_class = make_tiny(arch, src, seed)
            ids = torch.randint(0, 256, (TINY_BATCH, TINY_SEQ), generator=generator)
            bases_q = [1e4, 3e4, 1e5, 3e5] if granularity == "query" else [1e4, 1e4, 1e6, 1e6]
            bases_k = [1e4, 1e6] if granularity == "kv" else None
            cases.append((f"tiny_{arch}_{granularity}", src, arch_class, granularity, bases_q, bases_k, ids, None))
        for name, src, arch_class, granularity, bases_q, bases_k, ids, golden in cases:
            try:
                row = run_case(work, name, src, arch_class, granularity, bases_q, bases_k, ids, golden)
            except Exception:
                failures.append((name, traceback.format_exc()))
                print(failures[-1][1], file=sys.stderr, flush=True)
                continue
            rows.append(row)
            print(json.dumps(row), flush=True)

        say("## Logits through `trust_remote_code=True`")
        say()
        say("Max relative error max|a-b|/max|b| of the logits; the bar is 1e-4 in float32. `f32/f64 vs golden`: "
            "against the golden `logits.harpe` (transformers 5.17, float64, per-head bases by hand); "
            "`harpe CPU vs transformers`: `harpe verify-reference` (harpe's own CPU model, f32) on a case whose "
            "expected logits, loss and gradients come from the exported model in float64 (`harpe check`: its verdict "
            "on plain and HARPE logits, loss and every gradient, tolerance 1e-4 / 1e-3); `kv cache`: last "
            "position decoded with the cache vs the full forward (float32); `eager vs sdpa`: the two attention "
        "implementations (float32).")
        say()
        columns = ["case", "granularity", "bases", "f32 vs golden", "f64 vs golden", "f32 vs f64", "kv cache", "eager vs sdpa",
                   "harpe CPU vs transformers", "harpe grads (max)", "harpe check", "pass"]
        say("| " + " | ".join(columns) + " |")
        say("|" + "---|" * len(columns))
        for row in rows:
            cells = [row.get(c, "-") for c in columns]
            say("| " + " | ".join(f"{c:.2e}" if isinstance(c, float) else str(c) for c in cells) + " |")
        say()
        if rows:
            say(f"Classes loaded: {rows[0]['classes']} (model / rotary module / attention of layer 0).")
            say()
        for name, trace in failures:
            say(f"- **{name} FAILED**:")
            say("```")
            say(trace.strip()[-3000:])
            say("```")

        say("## Plain loading (no remote code)")
        say()
        name, *_, ids, golden = cases[0]
        export = work / name / f"export_{name}"
        if export.exists():
            silent = try_plain(work / name / "harpe", "the `harpe convert` output (model_type llama, rope_type harpe)")
            if silent is not None:
                say(f"  - its logits vs golden `logits.harpe`: {rel_err(logits_of(silent.to(DEVICE), ids), golden):.2e}")
            try_plain(export, "the `harpe export --hf-remote-code` output without trust_remote_code")
            config = AutoConfig.from_pretrained(export, trust_remote_code=True)
            say(f"- with trust_remote_code, AutoConfig gives {type(config).__name__} (model_type "
                f"{config.model_type}), rope_parameters {config.rope_parameters}")
        say()
    passed = not failures and rows and all(r["pass"] for r in rows)
    say(f"**{'PASSED' if passed else 'FAILED'}**: {len(rows)} cases ran, {len(failures)} failed to run.")
    Path(args.results).write_text("\n".join(lines) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
