"""The low-rank routing predictor: x (…, d) -> one logit per intermediate channel (…, I).

logits = out_proj(in_proj(x)) with in_proj: d -> r (no bias) and out_proj: r -> I (bias by default: a channel's
base rate of being active is a per-channel constant the low-rank part need not spend rank on). No norm: the
MLP input is already RMS-normalised by the decoder layer. Parameters per layer: r·(d + I) + I.
"""

from __future__ import annotations

import torch
from torch import nn


class LowRankPredictor(nn.Module):
    def __init__(self, hidden: int, intermediate: int, rank: int, bias: bool = True, **factory) -> None:
        super().__init__()
        self.in_proj = nn.Linear(hidden, rank, bias=False, **factory)
        self.out_proj = nn.Linear(rank, intermediate, bias=bias, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.in_proj(x))

    @property
    def rank(self) -> int:
        return self.in_proj.out_features

    @torch.no_grad()
    def set_factors(self, a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Set logits = x·a·b + bias with a (d, r), b (r, I)."""
        self.in_proj.weight.copy_(a.t())
        self.out_proj.weight.copy_(b.t())
        if self.out_proj.bias is not None:
            self.out_proj.bias.copy_(bias if bias is not None else torch.zeros_like(self.out_proj.bias))


def predictor_param_count(hidden: int, intermediate: int, rank: int, bias: bool = True) -> int:
    return rank * (hidden + intermediate) + (intermediate if bias else 0)
