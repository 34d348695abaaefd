"""Predictor recall vs the oracle: of the channels the dense FFN's own bank top-k would keep (top-k of the
true |act(g)·u| in every bank), the fraction the model actually kept. Measured per layer from forward hooks
while any evaluation runs (e.g. perplexity), so it costs one extra dense gate/up per layer, not a second pass.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from codesign.sparse.topk import indices_to_mask
from codesign.sparse.upcycle import sparse_modules


@dataclass
class RecallTracker:
    """Accumulates per-layer hits / oracle channels / kept channels over every forward while active."""

    hits: dict[int, int] = field(default_factory=dict)
    oracle: dict[int, int] = field(default_factory=dict)
    kept: dict[int, int] = field(default_factory=dict)
    slots: dict[int, int] = field(default_factory=dict)  # tokens × I, for the kept density

    @torch.no_grad()
    def observe(self, module, args, _output) -> None:
        x = args[0].reshape(-1, module.hidden)  # (N, d)
        oracle = indices_to_mask(module.oracle_indices(x), module.intermediate)  # (N, I)
        kept = module.last_mask.reshape(-1, module.intermediate)
        i = module.layer_idx
        self.hits[i] = self.hits.get(i, 0) + int((kept & oracle).sum())
        self.oracle[i] = self.oracle.get(i, 0) + int(oracle.sum())
        self.kept[i] = self.kept.get(i, 0) + int(kept.sum())
        self.slots[i] = self.slots.get(i, 0) + kept.numel()

    def per_layer(self) -> list[float]:
        return [self.hits[i] / self.oracle[i] for i in sorted(self.hits)]

    def density_per_layer(self) -> list[float]:
        return [self.kept[i] / self.slots[i] for i in sorted(self.kept)]

    def summary(self) -> dict:
        recall = self.per_layer()
        density = self.density_per_layer()
        return {
            "recall_mean": sum(recall) / len(recall),
            "recall_min": min(recall),
            "recall_per_layer": recall,
            "kept_density_mean": sum(density) / len(density),
            "kept_density_per_layer": density,
        }


@contextmanager
def track_recall(model: nn.Module):
    """`with track_recall(model) as tracker: perplexity(model, ...)`, then `tracker.summary()`."""
    tracker = RecallTracker()
    hooks = [m.register_forward_hook(tracker.observe) for m in sparse_modules(model)]
    try:
        yield tracker
    finally:
        for h in hooks:
            h.remove()
