"""The two baselines, run through the same SparseSwiGLU and the same evaluation harness.

* threshold (TEAL / CATS-style, training-free): per layer, keep channels whose |act(gate)| exceeds a
  threshold calibrated on held-in tokens so that a target fraction (75 %) of activations is dropped. The
  count per token varies (no bank balance) and the gate projection itself is computed densely, as in CATS.
* post-hoc predictor (Deja Vu-style): the same low-rank predictor trained offline on the frozen dense model
  with a BCE on the dense FFN's own bank top-k labels (positives up-weighted, as Deja Vu does), then applied
  with bank top-k. It differs from the method in that nothing downstream adapts to it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codesign.sparse.fit import dense_activation
from codesign.sparse.topk import bank_topk_indices, indices_to_mask
from codesign.sparse.upcycle import set_mode, sparse_modules


@torch.no_grad()
def calibrate_thresholds(
    model: nn.Module, inputs: dict[int, torch.Tensor], sparsity: float = 0.75
) -> dict[int, float]:
    """Set each layer's threshold to the `sparsity` quantile of |act(gate)| over `inputs`; mode -> threshold."""
    thresholds = {}
    for m in sparse_modules(model):
        x = inputs[m.layer_idx]
        mag = m.act_fn(x @ m.gate_proj.weight.float().t()).abs().flatten()
        rank = max(1, min(mag.numel(), round(sparsity * mag.numel())))
        t = float(mag.kthvalue(rank).values)
        m.threshold.fill_(t)
        thresholds[m.layer_idx] = t
    set_mode(model, "threshold")
    return thresholds


def train_posthoc_predictors(
    model: nn.Module,
    inputs: dict[int, torch.Tensor],
    steps: int = 300,
    batch_tokens: int = 1024,
    lr: float = 3e-3,
    seed: int = 0,
) -> dict[int, float]:
    """Train every layer's predictor offline on its frozen dense FFN (BCE on bank top-k labels).

    Starts from the predictor's current weights (the SVD init, so fewer steps are needed). Returns the final
    per-layer loss. The model's own weights are not touched; mode -> bank_topk.
    """
    gen = torch.Generator().manual_seed(seed)
    losses = {}
    for m in sparse_modules(model):
        x = inputs[m.layer_idx]
        with torch.no_grad():
            labels = indices_to_mask(
                bank_topk_indices(dense_activation(m, x).abs(), m.bank_size, m.k), m.intermediate
            )
        pos_weight = torch.tensor(
            (m.bank_size - m.k) / m.k
        )  # balance the 1-in-4 positives (Deja Vu up-weights them)
        params = list(m.predictor.parameters())
        dtype = params[0].dtype
        work = [p.detach().float().clone().requires_grad_(True) for p in params]  # fp32 master copy
        opt = torch.optim.Adam(work, lr=lr)
        for _ in range(steps):
            rows = torch.randint(0, x.shape[0], (batch_tokens,), generator=gen)
            logits = torch.nn.functional.linear(torch.nn.functional.linear(x[rows], work[0]), *work[1:])
            loss = F.binary_cross_entropy_with_logits(logits, labels[rows].float(), pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            for p, w in zip(params, work, strict=True):
                p.copy_(w.to(dtype))
        losses[m.layer_idx] = float(loss.detach())
    set_mode(model, "bank_topk")
    return losses
