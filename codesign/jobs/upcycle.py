"""`upcycle_checkpoint`: the whole `codesign upcycle` job as one library call (load, swap, init, save)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from codesign.errors import ModelError, OutputExistsError
from codesign.sparse.config import SparsityConfig
from codesign.sparse.fit import collect_mlp_inputs, fit_predictors
from codesign.sparse.io import load_dense, save_sparse
from codesign.sparse.predictor import predictor_param_count
from codesign.sparse.upcycle import sparse_modules, upcycle

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def upcycle_checkpoint(
    model_spec: str | os.PathLike,
    cfg: SparsityConfig,
    out_dir: str | os.PathLike,
    *,
    fit_tokens: int = 4096,
    context_len: int = 512,
    dtype: str = "float32",
    force: bool = False,
    status: Callable[[str], None] | None = None,
) -> dict:
    """Dense checkpoint -> sparse checkpoint in `out_dir`; returns a summary for rendering.

    With cfg.init == "fit" the predictors are fitted to the dense model's activations on `fit_tokens` tokens
    of the KJV train split (after the SVD init). Checks the output path first, so a refused run writes nothing.
    """
    out = Path(out_dir)
    if out.exists() and not force:
        raise OutputExistsError(out)
    if dtype not in DTYPES:
        raise ModelError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    say = status or (lambda _msg: None)
    say(f"loading {model_spec}")
    # not .to(): RoPE buffers stay fp32; only the fit reads text, so only it needs a tokenizer
    model, tokenizer = load_dense(model_spec, dtype=DTYPES[dtype], need_tokenizer=cfg.init == "fit")
    say("upcycling")
    upcycle(model, cfg)
    explained = None
    if cfg.init == "fit":
        from codesign.data.corpus import load_corpus, windows_for_eval

        say(f"fitting predictors on {fit_tokens} KJV train tokens")
        corpus = load_corpus("kjv", tokenizer)
        ids = torch.as_tensor(windows_for_eval(corpus.tokens("train"), context_len, fit_tokens))
        explained = fit_predictors(model, collect_mlp_inputs(model, ids))
    say(f"saving {out}")
    save_sparse(model, out, force=force, tokenizer=tokenizer)
    mods = sparse_modules(model)
    d, i = mods[0].hidden, mods[0].intermediate
    params = predictor_param_count(d, i, cfg.rank, cfg.predictor_bias) * len(mods)
    return {
        "out": str(out),
        "layers": len(mods),
        "hidden": d,
        "intermediate": i,
        "banks_per_layer": i // cfg.bank_size,
        "bank_size": cfg.bank_size,
        "k": cfg.k,
        "rank": cfg.rank,
        "init": cfg.init,
        "predictor_params": params,
        "predictor_bytes_bf16": 2 * params,
        "fit_explained_variance_mean": None
        if explained is None
        else sum(explained.values()) / len(explained),
        "dtype": dtype,
    }
