"""Perplexity over fixed-length windows of a token stream (non-overlapping, corpus order)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from codesign.errors import ConfigError, ModelError


@dataclass(frozen=True)
class PplResult:
    ppl: float
    nll_mean: float
    tokens_evaluated: int  # predicted tokens: windows × (context_len − 1)
    windows: int
    context_len: int

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def perplexity(
    model: nn.Module,
    windows: np.ndarray | torch.Tensor,
    batch_size: int = 4,
    progress: Callable[[int], None] | None = None,
    before_forward: Callable[[torch.Tensor], None] | None = None,
    after_forward: Callable[[], None] | None = None,
) -> PplResult:
    """exp(mean next-token NLL) over `windows` (n, L) int64; every window restarts the context.

    Each window predicts its tokens 1..L−1 from its own prefix, so the first token of a window is context only.
    `progress(n_windows_done)` is called after each batch (the CLI draws a bar; the library never prints).
    `before_forward(batch_ids)` / `after_forward()` run around each batch's forward (a routing capture arms
    and disarms there).
    """
    ids = torch.as_tensor(np.asarray(windows), dtype=torch.long)
    if ids.ndim != 2 or ids.shape[1] < 2:
        raise ConfigError(f"perplexity needs windows of shape (n, L >= 2), got {tuple(ids.shape)}")
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    was_training = model.training
    model.eval()
    nll_sum, count = 0.0, 0
    try:
        for start in range(0, ids.shape[0], batch_size):
            batch = ids[start : start + batch_size]  # (b, L)
            if before_forward is not None:
                before_forward(batch)
            logits = model(input_ids=batch).logits[:, :-1].float()  # (b, L-1, V)
            if after_forward is not None:
                after_forward()
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
            )
            nll_sum += float(nll)  # summed in Python floats (fp64) across batches
            count += batch[:, 1:].numel()
            if progress is not None:
                progress(min(start + batch_size, ids.shape[0]))
    finally:
        model.train(was_training)
    mean = nll_sum / count
    return PplResult(
        ppl=math.exp(mean),
        nll_mean=mean,
        tokens_evaluated=count,
        windows=int(ids.shape[0]),
        context_len=int(ids.shape[1]),
    )


def evaluate_checkpoint(
    model_spec: str | os.PathLike,
    *,
    split: str = "validation",
    max_tokens: int | None = None,
    context_len: int = 512,
    batch_size: int = 4,
    mode: str | None = None,
    recall: bool = True,
    progress: Callable[[int, int], None] | None = None,
    trace_out: str | os.PathLike | None = None,
    force: bool = False,
) -> dict:
    """`codesign eval ppl` as one call: KJV `split` perplexity of a dense or sparse checkpoint (+ recall).

    `mode` overrides the sparse model's mode (e.g. "oracle"); recall vs the oracle is measured per layer for
    sparse models. `progress(done, total)` counts windows.
    """
    from codesign.data.corpus import load_corpus, windows_for_eval
    from codesign.eval.recall import track_recall
    from codesign.sparse.io import check_checkpoint_dir, load_model
    from codesign.sparse.upcycle import current_config, set_mode, sparse_modules

    # Arguments first, then the files: a refusal costs milliseconds, never a model load.
    if context_len < 2:
        raise ConfigError(f"context length must be at least 2 tokens (one predicted), got {context_len}")
    if max_tokens is not None and max_tokens < context_len:
        raise ConfigError(f"max_tokens {max_tokens} is less than one window of context length {context_len}")
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    path = Path(model_spec)
    if path.is_dir() and (path / "config.json").is_file():
        check_checkpoint_dir(path, need_tokenizer=True)
        _check_context(context_len, _config_max_position(path / "config.json"), model_spec)
    model, tokenizer = load_model(model_spec)
    if tokenizer is None:
        raise ModelError(f"{model_spec} has no tokenizer files: cannot tokenise the corpus")
    _check_context(context_len, getattr(model.config, "max_position_embeddings", None), model_spec)
    sparse = bool(sparse_modules(model))
    if mode is not None:
        if not sparse:
            raise ModelError(f"--mode {mode} needs a sparse checkpoint; {model_spec} is dense")
        set_mode(model, mode)
    corpus = load_corpus("kjv", tokenizer)
    windows = windows_for_eval(corpus.tokens(split), context_len, max_tokens)
    report = (lambda done: progress(done, len(windows))) if progress else None
    capture = None
    if trace_out is not None:
        if not sparse:
            raise ModelError(f"--trace-out records sparse routing; {model_spec} is dense")
        from codesign.sparse.capture import RoutingCapture

        capture = RoutingCapture(
            trace_out, force=force, model_name=str(model_spec), source=f"eval:kjv-{split}"
        )
        capture.attach(model)
    hooks = {}
    if capture is not None:
        hooks = {
            "before_forward": lambda batch: capture.arm(batch, phase="eval", split=split),
            "after_forward": capture.disarm,
        }
    try:
        if sparse and recall:
            with track_recall(model) as tracker:
                res = perplexity(model, windows, batch_size=batch_size, progress=report, **hooks)
            recall_summary = tracker.summary()
        else:
            res = perplexity(model, windows, batch_size=batch_size, progress=report, **hooks)
            recall_summary = None
    finally:
        if capture is not None:
            capture.close()
    return {
        "model": str(model_spec),
        "split": split,
        **res.to_dict(),
        "sparsity": current_config(model).to_dict() if sparse else None,
        "recall": recall_summary,
        "corpus": corpus.describe(),
        "trace": None if capture is None else {"path": str(trace_out), "tokens": capture.num_tokens},
    }


def _config_max_position(config_json: Path) -> int | None:
    try:
        value = json.loads(config_json.read_text()).get("max_position_embeddings")
    except (ValueError, UnicodeDecodeError):
        raise ModelError(f"{config_json} is not valid JSON") from None
    return value if isinstance(value, int) else None


def _check_context(context_len: int, max_position: int | None, model_spec) -> None:
    if max_position and context_len > max_position:
        raise ConfigError(
            f"context length {context_len} exceeds {model_spec}'s maximum position {max_position}"
        )
