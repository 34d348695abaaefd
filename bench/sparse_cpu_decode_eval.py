"""Tokens/s of `codesign eval generate` and `eval ppl` on CPU: the torch gather path vs the fused decode kernel.

Runs the library functions those commands call (codesign.eval.generate.greedy_generate, codesign.eval.ppl
.perplexity) on one loaded sparse model, switching every SparseSwiGLU between kernel_backend="torch" (the path
before the fused kernel) and "auto" (the fused numba kernel for 1..16 tokens), interleaved rep by rep, so the
ratio is measured side by side. Generation = one prefill of the prompts (torch path on both sides: > 16 tokens)
plus greedy decode steps of `prompts` tokens each (the fused kernel's case); eval ppl runs windows of
`context` tokens × `batch` (> 16 tokens per forward at the CLI defaults: the torch path on both sides).

Model: SmolLM2-135M with the shipped trained adapter (adapters/smollm2-bank64-k16.safetensors, bf16 autocast
as `eval generate` runs it) by default; `--tiny` uses a random-init upcycled Qwen2 (hidden 512, I 2048, 4
layers) instead. Writes bench/results/sparse_cpu_decode_eval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _results import torch_host, write_result  # bench/_results.py

from codesign.eval.generate import greedy_generate
from codesign.eval.ppl import perplexity
from codesign.sparse import SparsityConfig, upcycle
from codesign.sparse.upcycle import sparse_modules

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "sparse_cpu_decode_eval.json"
ADAPTER = ROOT / "adapters" / "smollm2-bank64-k16.safetensors"


def tiny_model() -> tuple[torch.nn.Module, np.ndarray, str]:
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    config = Qwen2Config(
        hidden_size=512, intermediate_size=2048, num_hidden_layers=4, num_attention_heads=8,
        num_key_value_heads=2, vocab_size=1024, max_position_embeddings=512,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    upcycle(model, SparsityConfig(bank_size=64, k=16, rank=32, init="random"))
    tokens = np.random.default_rng(0).integers(0, 1024, 20000)
    return model, tokens, "tiny random Qwen2 (hidden 512, I 2048, 4 layers), upcycled 16/64"


def smollm2_model(adapter: Path) -> tuple[torch.nn.Module, np.ndarray, str]:
    from codesign.data.corpus import load_corpus
    from codesign.jobs.models import load_for_generate

    model, tokenizer, _ = load_for_generate(None, adapter)
    tokens = load_corpus("kjv", tokenizer).tokens("validation")
    return model, tokens, f"SmolLM2-135M + {adapter.relative_to(ROOT)} (KJV validation)"


def set_backend(model, backend: str) -> None:
    for m in sparse_modules(model):
        m.kernel_backend = backend


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="random tiny Qwen2 instead of SmolLM2 + adapter")
    ap.add_argument("--adapter", type=Path, default=ADAPTER)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    load_before = os.getloadavg()
    started = time.time()
    model, tokens, name = tiny_model() if args.tiny else smollm2_model(args.adapter)
    load_s = time.time() - started
    starts = np.linspace(0, len(tokens) - args.prompt_len, args.prompts).astype(np.int64)
    prompts = torch.from_numpy(np.stack([tokens[s : s + args.prompt_len] for s in starts]).astype(np.int64))
    windows = np.stack([tokens[i * args.context : (i + 1) * args.context] for i in range(args.windows)])
    autocast = not args.tiny  # eval generate runs SmolLM2 under bf16 autocast on CPU

    times: dict[str, dict[str, list[float]]] = {"generate": {}, "ppl": {}}
    outputs = {}
    for rep in range(args.reps + 1):  # rep 0 warms up (compilation / cache load, bundles)
        for backend in ("torch", "auto"):
            set_backend(model, backend)
            start = time.perf_counter()
            outputs[backend] = greedy_generate(model, prompts, args.new_tokens, autocast=autocast)
            gen_s = time.perf_counter() - start
            start = time.perf_counter()
            with torch.no_grad():
                ppl = perplexity(model, windows, batch_size=args.windows).ppl
            ppl_s = time.perf_counter() - start
            if rep:
                times["generate"].setdefault(backend, []).append(gen_s)
                times["ppl"].setdefault(backend, []).append(ppl_s)
                outputs[f"ppl_{backend}"] = ppl
    gen_tokens = args.prompts * args.new_tokens
    ppl_tokens = args.windows * (args.context - 1)
    result = {"benchmark": "sparse_cpu_decode_eval", "model": name, "load_s": load_s}
    for job, count in (("generate", gen_tokens), ("ppl", ppl_tokens)):
        med = {backend: statistics.median(t) for backend, t in times[job].items()}
        result[job] = {
            "tokens": count,
            "tokens_per_s": {
                "before_torch_path": count / med["torch"],
                "after_fused_kernel": count / med["auto"],
            },
            "speedup": med["torch"] / med["auto"],
            "median_s": med,
        }
    result["generate"].update(
        prompts=args.prompts, prompt_len=args.prompt_len, new_tokens=args.new_tokens,
        note="one prefill (torch path on both sides) + decode steps of `prompts` tokens (fused kernel after)",
        same_greedy_tokens_fraction=float((outputs["torch"] == outputs["auto"]).float().mean()),
    )  # fmt: skip
    result["ppl"].update(
        windows=args.windows, context=args.context,
        note="each forward holds windows x context > 16 tokens: the torch path before and after",
        ppl={"torch": outputs["ppl_torch"], "auto": outputs["ppl_auto"]},
    )  # fmt: skip
    result.update(
        reps=args.reps,
        load_average_before_after=[load_before, os.getloadavg()],
        wall_s=time.time() - started,
        host=torch_host("shared 2-core VM running training jobs; ratios of interleaved reps in one run"),
    )
    write_result(args.out, result)
    print(json.dumps({k: result[k] for k in ("model", "generate", "ppl")}, indent=1))


if __name__ == "__main__":
    main()
