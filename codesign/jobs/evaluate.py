"""One model point of a sweep, evaluated and recorded in one pass over the validation split.

The perplexity windows run once: recall vs the oracle is measured from hooks on that same forward, and the
routing capture records it (phase "eval"); then a batch of validation prompts is greedily continued with a
KV cache (prefill + decode steps, phase "generate") so the trace holds what a serving accelerator sees.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from torch import nn

from codesign.errors import ConfigError

MODES = ("bank_topk", "global_topk", "dense", "threshold")


def prepare_point(model: nn.Module, tokenizer, *, mode: str, bank_size: int, k: int, corpus: str = "kjv",
                  calib_tokens: int = 4096, context_len: int = 512) -> dict:  # fmt: skip
    """Put `model` at (bank_size, k) in `mode`. threshold: per-layer thresholds calibrated on `calib_tokens`
    train-split tokens so that 1 − k/B of |act(gate)| is dropped (the training-free baseline)."""
    from codesign.jobs.models import set_bank

    if mode not in MODES:
        raise ConfigError(f"point mode {mode!r} is not one of {', '.join(MODES)}")
    set_bank(model, bank_size, k, mode="bank_topk" if mode == "threshold" else mode)
    if mode != "threshold":
        return {}
    from codesign.data.corpus import load_corpus, windows_for_eval
    from codesign.sparse.baselines import calibrate_thresholds
    from codesign.sparse.fit import collect_mlp_inputs

    data = load_corpus(corpus, tokenizer)
    ids = torch.as_tensor(windows_for_eval(data.tokens("train"), context_len, calib_tokens))
    thresholds = calibrate_thresholds(model, collect_mlp_inputs(model, ids), sparsity=1.0 - k / bank_size)
    return {
        "threshold_calibration_tokens": int(ids.numel()),
        "thresholds_mean": float(np.mean(list(thresholds.values()))),
    }


def evaluate_point(
    model: nn.Module,
    tokenizer,
    trace_out: str | os.PathLike,
    *,
    model_name: str,
    corpus: str = "kjv",
    split: str = "validation",
    eval_tokens: int = 8192,
    context_len: int = 512,
    batch_size: int = 4,
    prompts: int = 8,
    prompt_len: int = 64,
    new_tokens: int = 32,
    force: bool = False,
) -> dict:
    """Validation perplexity + predictor recall of `model` as it is set now, and its routing trace.

    Recall is reported for the predictor modes (bank_topk, global_topk); the oracle it is measured against
    is the dense FFN's own bank top-k at the model's (B, k).
    """
    from codesign.data.corpus import load_corpus, windows_for_eval
    from codesign.eval.generate import greedy_generate, validation_prompts
    from codesign.eval.ppl import perplexity
    from codesign.eval.recall import track_recall
    from codesign.sparse.capture import RoutingCapture
    from codesign.sparse.upcycle import sparse_modules

    mods = sparse_modules(model)
    mode = mods[0].mode
    data = load_corpus(corpus, tokenizer)
    val = data.tokens(split)
    windows = windows_for_eval(val, context_len, eval_tokens)
    ids = torch.from_numpy(validation_prompts(val, prompts, prompt_len))
    capture = RoutingCapture(
        trace_out,
        force=force,
        model_name=model_name,
        dtype="bfloat16",
        source=f"sweep:eval+generate:{data.name}-{split}",
        extra={
            "mode": mode,
            "corpus": data.describe()["corpus"],
            "corpus_sha256": data.source_sha256,
            "eval_windows": int(len(windows)),
            "eval_len": context_len,
            "prompts": prompts,
            "prompt_len": prompt_len,
            "new_tokens": new_tokens,
            "decoding": "greedy, batch of all prompts, KV cache, bf16 autocast on CPU",
        },
    )
    capture.attach(model)
    hooks = {
        "before_forward": lambda batch: capture.arm(batch, phase="eval", split=split),
        "after_forward": capture.disarm,
    }
    t0 = time.perf_counter()
    recall = None
    try:
        if mode in ("bank_topk", "global_topk"):
            with track_recall(model) as tracker:
                res = perplexity(model, windows, batch_size=batch_size, **hooks)
            recall = tracker.summary()
        else:
            res = perplexity(model, windows, batch_size=batch_size, **hooks)
        t1 = time.perf_counter()
        greedy_generate(model, ids, new_tokens, capture=capture, split=split)
        t2 = time.perf_counter()
    finally:
        capture.close()
    kept = (
        float(np.mean([m.last_mask.float().mean().item() for m in mods]))
        if mods[0].last_mask is not None
        else None
    )
    return {
        "ppl": res.ppl,
        "nll_mean": res.nll_mean,
        "eval_tokens": res.tokens_evaluated,
        "eval_windows": res.windows,
        "context_len": res.context_len,
        "recall_mean": None if recall is None else recall["recall_mean"],
        "recall_min": None if recall is None else recall["recall_min"],
        "kept_density_mean": None if recall is None else recall["kept_density_mean"],
        "last_decode_kept_density": kept,
        "trace_tokens": capture.num_tokens,
        "decode_tokens": int(prompts * max(0, new_tokens - 1)),
        "ppl_s": t1 - t0,
        "generate_s": t2 - t1,
    }
