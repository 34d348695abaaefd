"""What a stage trains and how: parameter selection, AdamW + LR schedule, and the stage's losses."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from codesign.train.recipe import Stage


def is_trainable(name: str, trainable: str) -> bool:
    """Whether parameter `name` trains under the stage setting `trainable`."""
    is_pred = ".predictor." in name
    is_ffn = ".mlp." in name and not is_pred
    is_norm = "norm" in name.rsplit(".", 2)[-2] if name.count(".") >= 1 else False
    return {
        "all": True,
        "ffn": is_ffn,
        "predictor": is_pred,
        "predictor+ffn": is_pred or is_ffn,
        "predictor+norms": is_pred or is_norm,
    }[trainable]


def select_trainable(model: nn.Module, trainable: str) -> list[str]:
    """Set requires_grad per the stage; returns the names of the parameters that train."""
    names = []
    for name, p in model.named_parameters():
        p.requires_grad_(is_trainable(name, trainable))
        if p.requires_grad:
            names.append(name)
    return names


def make_optimizer(model: nn.Module, stage: Stage) -> torch.optim.Optimizer:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if ".predictor." not in n], "lr": stage.lr}]
    groups.append(
        {"params": [p for n, p in named if ".predictor." in n], "lr": stage.predictor_lr or stage.lr}
    )
    groups = [g for g in groups if g["params"]]
    # foreach=False: the single-tensor path is bit-reproducible across a save / load on CPU.
    return torch.optim.AdamW(groups, betas=(0.9, 0.95), weight_decay=stage.weight_decay, foreach=False)


def lr_factor(step: int, stage: Stage) -> float:
    """Multiplier of the stage's peak LR at step `step` of the stage: linear warm-up, then the schedule."""
    if stage.warmup_steps and step < stage.warmup_steps:
        return (step + 1) / stage.warmup_steps
    if stage.schedule == "constant":
        return 1.0
    span = max(1, stage.steps - stage.warmup_steps)
    progress = min(1.0, (step - stage.warmup_steps) / span)
    floor = stage.min_lr_ratio
    if stage.schedule == "linear":
        return floor + (1 - floor) * (1 - progress)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(opt: torch.optim.Optimizer, stage: Stage) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, stage))


def lm_loss(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy in fp32; logits (b, T, V), input_ids (b, T)."""
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, v), input_ids[:, 1:].reshape(-1))


def kl_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) per token, averaged, scaled by T² (Hinton et al.) so its gradient scale does
    not shrink with the temperature. Both (b, T, V); computed in fp32."""
    v = student.shape[-1]
    s = F.log_softmax(student.float().reshape(-1, v) / temperature, dim=-1)
    t = F.log_softmax(teacher.float().reshape(-1, v) / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature**2
