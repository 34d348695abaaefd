"""Per-layer k at equal total density: measure each layer's perplexity sensitivity, reallocate greedily.

Layers are not equally sensitive to sparsity. As TEAL allocates per-layer thresholds greedily by measured
loss, this measures, for every layer l alone, the perplexity when l keeps `step` channels fewer per bank
(cost of giving) and `step` more (gain of taking), everything else at the uniform k. A greedy pass then pairs
the layers with the largest gain against those with the smallest cost — one step each, and only while the
predicted gain exceeds the predicted cost — so the total number of kept channels (the average density, and
the bytes a banked accelerator reads) is unchanged. The allocation is then measured, not trusted: the caller
keeps it only if it beats uniform k on held-out windows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from torch import nn

from codesign.errors import ConfigError
from codesign.eval.ppl import perplexity
from codesign.sparse.upcycle import set_layer_k, sparse_modules


@dataclass(frozen=True)
class LayerSensitivity:
    uniform_k: int
    step: int
    base_ppl: float
    give_ppl: list[float]  # ppl with layer l at k - step (others at k)
    take_ppl: list[float]  # ppl with layer l at k + step

    @property
    def cost(self) -> np.ndarray:
        return np.asarray(self.give_ppl) - self.base_ppl

    @property
    def gain(self) -> np.ndarray:
        return self.base_ppl - np.asarray(self.take_ppl)

    def to_dict(self) -> dict:
        return {**asdict(self), "cost": self.cost.tolist(), "gain": self.gain.tolist()}


def _uniform_k(model: nn.Module) -> tuple[int, int]:
    mods = sparse_modules(model)
    ks = {m.k for m in mods}
    if len(ks) != 1:
        raise ConfigError(f"sensitivity is measured from uniform k; the model has per-layer k {sorted(ks)}")
    return ks.pop(), mods[0].cfg.bank_size


def layer_sensitivity(
    model: nn.Module,
    windows: np.ndarray,
    step: int,
    progress: Callable[[int, int], None] | None = None,
) -> LayerSensitivity:
    """Per-layer ppl at k ± `step` (one layer at a time) on `windows`; the model is left at uniform k."""
    k, bank = _uniform_k(model)
    if not 0 < step < k or k + step > bank:
        raise ConfigError(f"step {step} must leave 0 < k - step and k + step <= B (k={k}, B={bank})")
    layers = len(sparse_modules(model))
    base = perplexity(model, windows).ppl
    give, take = [], []
    for layer in range(layers):
        for delta, out in ((-step, give), (step, take)):
            set_layer_k(model, layer, k + delta)
            try:
                out.append(perplexity(model, windows).ppl)
            finally:
                set_layer_k(model, layer, k)
        if progress is not None:
            progress(layer + 1, layers)
    return LayerSensitivity(uniform_k=k, step=step, base_ppl=base, give_ppl=give, take_ppl=take)


def greedy_allocation(sens: LayerSensitivity, max_moves: int | None = None) -> list[int]:
    """Per-layer k with the same total as uniform: `step` channels move from the cheapest givers to the
    largest takers, each layer moving at most once, while the predicted gain exceeds the predicted cost."""
    k, step = sens.uniform_k, sens.step
    gain, cost = sens.gain, sens.cost
    takers = [int(i) for i in np.argsort(-gain, kind="stable")]
    givers = [int(i) for i in np.argsort(cost, kind="stable")]
    ks = [k] * len(gain)
    used: set[int] = set()
    moves = 0
    for t in takers:
        if t in used:
            continue
        g = next((g for g in givers if g not in used and g != t), None)
        if g is None or gain[t] <= cost[g] or (max_moves is not None and moves >= max_moves):
            break
        ks[t], ks[g] = k + step, k - step
        used |= {t, g}
        moves += 1
    return ks


def apply_layer_k(model: nn.Module, ks: list[int]) -> None:
    mods = sparse_modules(model)
    if len(ks) != len(mods):
        raise ConfigError(f"{len(ks)} per-layer k values for a model with {len(mods)} sparse layers")
    for layer, k in enumerate(ks):
        set_layer_k(model, layer, k)
