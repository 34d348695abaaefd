"""Weight packing: Hugging Face gate/up/down projections <-> the bundled channel-major layout, losslessly.

The layout is defined in codesign.layout (bundle[c] = [gate_proj.weight[c, :] | up_proj.weight[c, :] |
down_proj.weight[:, c]] -> (I, 3, d) per layer, layers back to back). The kernels read exactly these bytes, so
"bytes a kernel loads" and "bytes the simulator predicts" from BundleLayout are the same quantity.
Packing is a pure copy (no dtype change), so unpack(pack(w)) == w bit for bit.
"""

from __future__ import annotations

import torch

from codesign.errors import ModelError
from codesign.layout import DOWN, GATE, UP

# Hugging Face parameter names of one SwiGLU MLP, relative to the layer's MLP prefix.
HF_KEYS = {"gate": "gate_proj.weight", "up": "up_proj.weight", "down": "down_proj.weight"}


def pack_bundles(gate_w: torch.Tensor, up_w: torch.Tensor, down_w: torch.Tensor) -> torch.Tensor:
    """HF weights gate (I, d), up (I, d), down (d, I) -> bundled (I, 3, d), contiguous."""
    _check_shapes(gate_w, up_w, down_w)
    return torch.stack([gate_w, up_w, down_w.t()], dim=1).contiguous()  # (I, 3, d)


def unpack_bundles(bundles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bundled (I, 3, d) -> HF (gate (I, d), up (I, d), down (d, I)), each contiguous."""
    if bundles.dim() != 3 or bundles.shape[1] != 3:
        raise ModelError(f"bundled weights must have shape (I, 3, d), got {tuple(bundles.shape)}")
    gate = bundles[:, GATE].contiguous()
    up = bundles[:, UP].contiguous()
    down = bundles[:, DOWN].t().contiguous()  # (d, I)
    return gate, up, down


def bundle_views(bundles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Strided (I, d) views of a bundled tensor: gate rows, up rows, down columns (as rows). No copy."""
    return bundles[:, GATE], bundles[:, UP], bundles[:, DOWN]


def pack_model(state_dict: dict[str, torch.Tensor], mlp_prefixes: list[str]) -> torch.Tensor:
    """Layers' HF MLP weights -> (L, I, 3, d), layers back to back as codesign.layout.BundleLayout addresses.

    `mlp_prefixes` are the MLP module paths in layer order, e.g. "model.layers.0.mlp".
    """
    layers = []
    for prefix in mlp_prefixes:
        keys = {role: f"{prefix}.{name}" for role, name in HF_KEYS.items()}
        missing = [key for key in keys.values() if key not in state_dict]
        if missing:
            raise ModelError(f"state dict has no {missing[0]} (needed to pack {prefix})")
        layers.append(pack_bundles(*(state_dict[keys[role]] for role in ("gate", "up", "down"))))
    return torch.stack(layers)  # (L, I, 3, d)


def unpack_model(packed: torch.Tensor, mlp_prefixes: list[str]) -> dict[str, torch.Tensor]:
    """(L, I, 3, d) -> the HF state-dict entries of every layer's MLP (inverse of pack_model)."""
    if packed.dim() != 4 or packed.shape[0] != len(mlp_prefixes):
        raise ModelError(
            f"packed weights {tuple(packed.shape)} do not hold {len(mlp_prefixes)} layers of (I, 3, d)"
        )
    out = {}
    for prefix, layer in zip(mlp_prefixes, packed, strict=True):
        for role, tensor in zip(("gate", "up", "down"), unpack_bundles(layer), strict=True):
            out[f"{prefix}.{HF_KEYS[role]}"] = tensor
    return out


def _check_shapes(gate_w: torch.Tensor, up_w: torch.Tensor, down_w: torch.Tensor) -> None:
    if gate_w.dim() != 2 or up_w.shape != gate_w.shape or down_w.shape != gate_w.shape[::-1]:
        raise ModelError(
            f"SwiGLU weights must be gate (I, d), up (I, d), down (d, I); got gate {tuple(gate_w.shape)}, "
            f"up {tuple(up_w.shape)}, down {tuple(down_w.shape)}"
        )
    if not (gate_w.dtype == up_w.dtype == down_w.dtype):
        raise ModelError(f"SwiGLU weights differ in dtype: {gate_w.dtype}, {up_w.dtype}, {down_w.dtype}")
