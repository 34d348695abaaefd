"""Channel selection: bank-wise top-k, global top-k, and the estimators that let gradients through it.

Ties break toward the lower channel index everywhere (a stable descending sort), so a selection is a pure
function of the scores: the Triton kernels and the simulator can reproduce it bit for bit.
"""

from __future__ import annotations

import torch

# One definition of bank top-k and of ids -> mask, shared with the kernels' torch path (codesign.kernels.routing).
from codesign.kernels.routing import bank_topk_indices, indices_to_mask

__all__ = [
    "bank_threshold",
    "bank_topk_indices",
    "estimator_multiplier",
    "global_topk_indices",
    "indices_to_mask",
]


def global_topk_indices(scores: torch.Tensor, count: int) -> torch.Tensor:
    """The `count` highest-scoring channels of each row, (..., I) -> (..., count) int64, ascending."""
    top = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :count]
    return top.sort(dim=-1).values


def bank_threshold(scores: torch.Tensor, bank_size: int, k: int) -> torch.Tensor:
    """Per-bank boundary between kept and dropped scores (midpoint of the k-th and (k+1)-th largest).

    (..., I) -> (..., I): each channel gets its bank's boundary, so `scores - boundary` is > 0 exactly for
    kept channels (up to ties). With k = B every channel is kept and the boundary sits one unit below the min.
    """
    *lead, intermediate = scores.shape
    banks = scores.reshape(*lead, intermediate // bank_size, bank_size)  # (..., nb, B)
    top = torch.sort(banks, dim=-1, descending=True).values
    if k == bank_size:
        boundary = top[..., -1:] - 1.0
    else:
        boundary = 0.5 * (top[..., k - 1 : k] + top[..., k : k + 1])  # (..., nb, 1)
    return boundary.expand_as(banks).reshape(*lead, intermediate)


def estimator_multiplier(
    logits: torch.Tensor, mask: torch.Tensor, boundary: torch.Tensor, estimator: str
) -> torch.Tensor:
    """A float tensor equal to `mask` in the forward pass whose backward reaches the predictor `logits`.

    ste:  mask + σ(l − b) − σ(l − b).detach(): a straight-through soft mask around the bank boundary b, so
          dropped channels learn whether keeping them would have lowered the loss (needs their dense value).
    gate: mask · σ(l) / σ(l).detach(): kept channels are gated by the predictor score, which is exactly 1 in
          the forward pass (an upcycled model starts equal to its dense parent) but carries dL/dl on kept ones.
    ste+gate: both.
    """
    logits = logits.float()  # the soft masks are computed in fp32: bf16 σ near 1 has no resolution
    hard = mask.to(logits.dtype)
    out = hard
    if "ste" in estimator:
        soft = torch.sigmoid(logits - boundary.float())
        out = out + soft - soft.detach()
    if "gate" in estimator:
        score = torch.sigmoid(logits).clamp_min(1e-6)  # clamp: σ underflows to 0 for very negative logits
        out = out * (score / score.detach())
    return out
