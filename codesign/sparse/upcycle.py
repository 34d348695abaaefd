"""Dense -> sparse by explicit transformation: swap every SwiGLU MLP of a model for a `SparseSwiGLU`.

No class is patched globally. `upcycle` walks `named_children`, replaces each MLP that has gate_proj, up_proj,
down_proj and act_fn, moves the very same weight tensors over (HF names kept, so state dicts load unchanged)
and returns what it replaced.
"""

from __future__ import annotations

import torch
from torch import nn

from codesign.errors import ModelError
from codesign.sparse.config import SparsityConfig
from codesign.sparse.module import SparseSwiGLU
from codesign.sparse.predictor import LowRankPredictor


def is_swiglu_mlp(module: nn.Module) -> bool:
    return all(
        isinstance(getattr(module, n, None), nn.Linear) for n in ("gate_proj", "up_proj", "down_proj")
    ) and (hasattr(module, "act_fn"))


def sparse_modules(model: nn.Module) -> list[SparseSwiGLU]:
    """The model's SparseSwiGLU modules ordered by layer_idx."""
    return sorted((m for m in model.modules() if isinstance(m, SparseSwiGLU)), key=lambda m: m.layer_idx)


def upcycle(model: nn.Module, cfg: SparsityConfig) -> dict[str, nn.Module]:
    """Replace every SwiGLU MLP of `model` in place; returns {qualified name: the replaced dense MLP}.

    Layer indices follow forward order (the i-th MLP found is layer i). The predictor is initialised from a
    truncated SVD of gate_proj when cfg.init == "svd" (fit.py refines it from data for init == "fit"; "random"
    keeps torch's default init). ModelError, with nothing changed, if there is no SwiGLU MLP, an MLP carries
    biases, or the bank size does not divide an intermediate size.
    """
    targets = [
        (n, m) for n, m in model.named_modules() if is_swiglu_mlp(m) and not isinstance(m, SparseSwiGLU)
    ]
    if not targets:
        raise ModelError(f"{type(model).__name__} has no SwiGLU MLP (gate_proj, up_proj, down_proj, act_fn)")
    for name, mlp in targets:  # validate everything before touching anything
        if any(getattr(mlp, p).bias is not None for p in ("gate_proj", "up_proj", "down_proj")):
            raise ModelError(f"{name}: MLP projections with bias are not supported")
        cfg.check_intermediate(mlp.gate_proj.out_features, where=name)
        if cfg.rank > min(mlp.gate_proj.in_features, mlp.gate_proj.out_features):
            raise ModelError(f"{name}: predictor rank={cfg.rank} exceeds min(hidden, intermediate)")
    replaced: dict[str, nn.Module] = {}
    for layer_idx, (name, mlp) in enumerate(targets):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _swap(mlp, cfg, layer_idx))
        replaced[name] = mlp
    return replaced


def _swap(mlp: nn.Module, cfg: SparsityConfig, layer_idx: int) -> SparseSwiGLU:
    w = mlp.gate_proj.weight
    factory = {
        "device": "meta"
    }  # build empty, then adopt the dense weights: no copy of the FFN, no init cost
    sparse = SparseSwiGLU(w.shape[1], w.shape[0], cfg, layer_idx, act_fn=mlp.act_fn, **factory)
    sparse.gate_proj, sparse.up_proj, sparse.down_proj = mlp.gate_proj, mlp.up_proj, mlp.down_proj
    sparse.predictor = LowRankPredictor(
        w.shape[1], w.shape[0], cfg.rank, cfg.predictor_bias, device=w.device, dtype=w.dtype
    )
    sparse.threshold = torch.zeros((), device=w.device, dtype=w.dtype)
    if cfg.init == "svd" or cfg.init == "fit":
        svd_init(sparse.predictor, mlp.gate_proj.weight)
    return sparse.train(mlp.training)  # a fresh module defaults to training mode; keep the model's


@torch.no_grad()
def svd_init(predictor: LowRankPredictor, gate_w: torch.Tensor) -> None:
    """logits ≈ x·Wgᵀ: the rank-r truncated SVD of gate_proj, split evenly (√S on both factors).

    Ranking channels by the gate pre-activation is a proxy for |silu(g)·u|: silu is monotone for g > −1.28
    and the kept channels sit far above that; it ignores |u|, which the data fit (fit.py) adds.
    """
    u, s, vh = torch.linalg.svd(gate_w.float(), full_matrices=False)  # (I, m), (m,), (m, d)
    r = predictor.rank
    root = s[:r].sqrt()
    predictor.set_factors((vh[:r].t() * root).to(gate_w.dtype), (u[:, :r] * root).t().to(gate_w.dtype))


def set_mode(model: nn.Module, mode: str) -> None:
    """Switch every SparseSwiGLU of `model` to `mode` (bank_topk, global_topk, dense, oracle, threshold)."""
    mods = _require_sparse(model)
    for m in mods:
        m.set_mode(mode)


def set_layer_k(model: nn.Module, layer_idx: int, k: int) -> None:
    """Override k of one layer (single-layer repair, sweeps)."""
    mods = {m.layer_idx: m for m in _require_sparse(model)}
    if layer_idx not in mods:
        raise ModelError(f"no sparse layer {layer_idx} (layers 0..{len(mods) - 1})")
    mods[layer_idx].set_k(k)


def current_config(model: nn.Module) -> SparsityConfig:
    """The SparsityConfig that rebuilds `model` as it is now (mode and per-layer k as currently set)."""
    mods = _require_sparse(model)
    base = mods[0].cfg
    overrides = {m.layer_idx: m.k for m in mods if m.k != base.k}
    return base.replace(mode=mods[0].mode, k_per_layer=overrides)


def collect_aux_loss(model: nn.Module) -> torch.Tensor | None:
    """Mean of the modules' aux losses from the last forward (None when the aux loss is off)."""
    losses = [m.aux_loss for m in sparse_modules(model) if m.aux_loss is not None]
    return torch.stack(losses).mean() if losses else None


def _require_sparse(model: nn.Module) -> list[SparseSwiGLU]:
    mods = sparse_modules(model)
    if not mods:
        raise ModelError(f"{type(model).__name__} has no SparseSwiGLU module (run upcycle first)")
    return mods
