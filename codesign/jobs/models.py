"""Load a sparse model from whichever form the user has: an adapter, a training run directory, or a checkpoint.

Choosing among the three touches train (adapters, run directories) and sparse (checkpoints), so it is a job,
not part of eval: eval receives a loaded model.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from codesign.errors import ConfigError, ModelError


def load_for_generate(
    model_spec: str | None, adapter: str | os.PathLike | None
) -> tuple[nn.Module, object, str]:
    """(sparse model, tokenizer, name) from an adapter, a training run directory, or a sparse checkpoint."""
    if adapter is not None:
        from codesign.train.adapter import load_adapted, read_adapter

        header, _ = read_adapter(adapter)
        if model_spec not in (None, header["base"]):
            raise ModelError(f"adapter {adapter} applies to base {header['base']!r}, not {model_spec!r}")
        model, tok = load_adapted(adapter)
        # The model is the base architecture; which adapter routed it is provenance (meta.extra).
        return model, tok, header["base"]
    if model_spec is None:
        raise ConfigError("give --model (a sparse checkpoint or a training run directory) or --adapter")
    path = Path(model_spec)
    if (path / "checkpoint.pt").is_file():
        from codesign.train.rundir import load_run_model

        model, tok, name = load_run_model(path)
        return model, tok, name
    from codesign.sparse.io import load_model

    model, tok = load_model(model_spec)
    return model, tok, path.name


# ---- model sources named in a sweep spec --------------------------------------------------------------------
SOURCE_KINDS = ("adapter", "run", "checkpoint", "recipe")


def source_intermediate(kind: str, path: str | os.PathLike) -> int:
    """The FFN intermediate size of a model source, read without loading the model (spec validation).

    ModelError (one line) if the source is missing or unreadable, so a sweep fails before any work.
    """
    import json

    p = Path(path)
    if kind == "adapter":
        if not p.is_file():
            raise ModelError(f"adapter {p} does not exist")
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="np") as f:
                names = [n for n in f.keys() if n.endswith("predictor.out_proj.weight")]
                if not names:
                    raise ModelError(f"{p} holds no predictor tensors: not a sparse-model adapter")
                return int(f.get_slice(names[0]).get_shape()[0])  # out_proj: (I, rank)
        except ModelError:
            raise
        except Exception as exc:  # safetensors raises its own types for damaged headers
            raise ModelError(f"adapter {p} is unreadable ({exc.__class__.__name__})") from None
    if kind == "recipe":
        from codesign.train.recipe import load_recipe

        r = load_recipe(p)
        if r.model.source == "tiny":
            return r.model.tiny.intermediate
        return source_intermediate("checkpoint", r.model.source)
    if kind == "run":
        if not (p / "checkpoint.pt").is_file():
            raise ModelError(f"run directory {p} has no checkpoint.pt")
        import torch

        # mmap: only the recipe is read, not the weights
        state = torch.load(p / "checkpoint.pt", map_location="cpu", mmap=True, weights_only=False)
        model = state["recipe"]["model"]
        if model["source"] == "tiny":
            return int(model["tiny"]["intermediate"])
        return source_intermediate("checkpoint", model["source"])
    if kind == "checkpoint":
        if str(path) == "smollm2-135m":
            return 1536  # SmolLM2-135M: the GGUF's llama.feed_forward_length (docs/SPARSE.md)
        if not (p / "config.json").is_file():
            raise ModelError(f"checkpoint {p} does not exist or has no config.json")
        return int(json.loads((p / "config.json").read_text())["intermediate_size"])
    raise ConfigError(f"model source kind {kind!r} is not one of {', '.join(SOURCE_KINDS)}")


def load_source(kind: str, path: str | os.PathLike, *, seed: int = 0) -> tuple[nn.Module, object, str]:
    """(sparse model in eval mode, tokenizer, name) of a sweep's model source.

    `recipe` builds the recipe's model (a tiny random one for tests) and upcycles it with the recipe's
    sparsity at its init (no training); the others load what training left.
    """
    if kind == "adapter":
        return load_for_generate(None, path)
    if kind in ("run", "checkpoint"):
        return load_for_generate(str(path), None)
    if kind == "recipe":
        import torch

        from codesign.sparse.upcycle import upcycle
        from codesign.train.models import build_model, model_name
        from codesign.train.recipe import load_recipe, sparsity_config

        r = load_recipe(path)
        model, tok = build_model(r.model, r.seed + seed)
        with torch.random.fork_rng():
            torch.manual_seed(r.seed + seed)
            upcycle(model, sparsity_config(r))
        return model.eval(), tok, f"{model_name(r.model)}@{r.name}:init"
    raise ConfigError(f"model source kind {kind!r} is not one of {', '.join(SOURCE_KINDS)}")


def set_bank(model: nn.Module, bank_size: int, k: int, mode: str = "bank_topk") -> None:
    """Re-select every sparse layer at (bank_size, k) in `mode`, from the predictor's per-channel logits.

    The predictor scores all I channels whatever B is, so only the selection changes: each module gets a
    config with the new bank size and k (validated: B divides I, 0 < k <= B) and per-layer k cleared.
    """
    from codesign.sparse.upcycle import sparse_modules

    mods = sparse_modules(model)
    if not mods:
        raise ModelError(f"{type(model).__name__} has no SparseSwiGLU module (run upcycle first)")
    cfgs = []
    for m in mods:  # validate all before changing any
        cfg = m.cfg.replace(bank_size=bank_size, k=k, k_per_layer={}, mode=mode)
        cfg.check_intermediate(m.intermediate, where=f"layer {m.layer_idx} MLP")
        cfgs.append(cfg)
    for m, cfg in zip(mods, cfgs, strict=True):
        m.cfg, m.k = cfg, k
        m.set_mode(mode)
