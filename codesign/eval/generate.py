"""Greedy generation over validation prompts, recording prefill and decode-step routing.

Decode is what an accelerator serving the model sees: one token per sequence per step, each step choosing its
own channels. `greedy_generate` runs a batch of prompts through one prefill and then `new_tokens` decode
steps with a KV cache; when given a RoutingCapture it records the prefill (is_decode False) and every decode
step (is_decode True, positions continuing the prompt, the same sequence ids), in processing order.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from codesign.errors import ConfigError


@torch.no_grad()
def greedy_generate(
    model: nn.Module,
    prompts: torch.Tensor,
    new_tokens: int,
    *,
    capture=None,
    split: str = "validation",
    autocast: bool = True,
) -> torch.Tensor:
    """prompts int64 (B, P) -> generated ids (B, new_tokens), argmax decoding with a KV cache."""
    if new_tokens < 0:
        raise ConfigError(f"new_tokens must be >= 0, got {new_tokens}")
    b, p = prompts.shape
    model.eval()
    seq_ids = capture.new_seq_ids(b) if capture is not None else None
    ctx = torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast)
    if capture is not None:
        capture.arm(prompts, phase="generate", split=split, seq_ids=seq_ids)
    with ctx:
        out = model(input_ids=prompts, use_cache=True)
    if capture is not None:
        capture.disarm()
    cache, nxt = out.cache, out.logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
    generated = [nxt]
    for t in range(1, new_tokens):
        if capture is not None:
            pos = np.full((b, 1), p + t - 1)
            capture.arm(nxt, phase="generate", split=split, is_decode=True, positions=pos, seq_ids=seq_ids)
        with ctx:
            out = model(input_ids=nxt, cache=cache, use_cache=True)
        if capture is not None:
            capture.disarm()
        cache, nxt = out.cache, out.logits[:, -1].argmax(-1, keepdim=True)
        generated.append(nxt)
    return torch.cat(generated, 1)[:, :new_tokens]  # (B, new_tokens)


def validation_prompts(tokens: np.ndarray, prompts: int, prompt_len: int) -> np.ndarray:
    """int64 (prompts, prompt_len): windows spread evenly over the split (different books / passages)."""
    if prompts <= 0 or prompt_len <= 0:
        raise ConfigError(f"prompts and prompt_len must be positive (got {prompts}, {prompt_len})")
    last = len(tokens) - prompt_len
    if last < 0:
        raise ConfigError(f"validation split has {len(tokens)} tokens, fewer than one prompt of {prompt_len}")
    starts = np.linspace(0, last, prompts).astype(np.int64)
    return np.stack([tokens[s : s + prompt_len] for s in starts])


@torch.no_grad()
def eval_prefill(model: nn.Module, windows: np.ndarray, capture, *, split: str = "validation") -> None:
    """Run evaluation windows (n, L) as prefill passes, recording their routing as phase "eval"."""
    model.eval()
    for row in windows:
        x = torch.from_numpy(np.ascontiguousarray(row[None]))
        capture.arm(x, phase="eval", split=split)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(input_ids=x)
        capture.disarm()


def generate_from_corpus(
    model: nn.Module,
    tokenizer,
    *,
    corpus: str = "kjv",
    prompts: int = 4,
    prompt_len: int = 128,
    new_tokens: int = 32,
    eval_windows: int = 0,
    eval_len: int = 256,
    trace_out: str | os.PathLike | None = None,
    force: bool = False,
    model_name: str = "model",
    source_note: str = "",
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Greedy-continue `prompts` validation prompts; with `trace_out`, record `eval_windows` validation
    windows (prefill, phase "eval") and then the prompts' prefill + decode steps (phase "generate")."""
    from codesign.data.corpus import load_corpus, windows_for_eval
    from codesign.sparse.capture import RoutingCapture

    data = load_corpus(corpus, tokenizer)
    val = data.tokens("validation")
    ids = torch.from_numpy(validation_prompts(val, prompts, prompt_len))
    capture = None
    if trace_out is not None:
        capture = RoutingCapture(
            trace_out,
            force=force,
            model_name=model_name,
            dtype="bfloat16",
            source=f"eval+generate:{data.name}-validation",
            extra={
                "provenance": source_note,
                "corpus": data.describe()["corpus"],
                "corpus_sha256": data.source_sha256,
                "validation_books": data.split_books["validation"],
                "eval_windows": eval_windows,
                "eval_len": eval_len,
                "prompts": prompts,
                "prompt_len": prompt_len,
                "new_tokens": new_tokens,
                "decoding": "greedy, batch of all prompts, KV cache, bf16 autocast on CPU",
            },
        )
        capture.attach(model)
    try:
        if capture is not None and eval_windows > 0:
            eval_prefill(model, windows_for_eval(val, eval_len, eval_windows * eval_len), capture)
        out = greedy_generate(model, ids, new_tokens, capture=capture)
        if progress is not None:
            progress(prompts)
    finally:
        if capture is not None:
            capture.close()
    texts = [tokenizer.decode(row.tolist()) for row in out]
    return {
        "texts": texts,
        "generated_ids": out.tolist(),
        "prefill_tokens": int(ids.numel()) + (eval_windows * eval_len if capture is not None else 0),
        "decode_tokens": int(out.shape[0] * max(0, new_tokens - 1)),
        "trace": None if trace_out is None else str(trace_out),
    }
