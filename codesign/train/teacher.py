"""Distillation targets: the frozen teacher's logits, kept as top-k and cached on disk across runs.

A KL term toward the dense teacher costs a teacher forward per step and two full-vocabulary log-softmaxes in
fp32 (SmolLM2: 49,152 logits a token). Runs that share a base model and data order — the dense control, every
sparse run of a sweep, every ablation — ask the teacher the same questions, so its answers are computed once:
per step, the top-`k` logits and their indices plus the log-partition (logsumexp) of the full distribution,
saved under a key of (teacher weights, batch contents, temperature, k). The KL is then taken over the
teacher's top-k tokens plus one "everything else" bucket, which is exact for the mass the teacher puts
outside its top-k as a whole (not for how it spreads there):

    KL(p || q) ≈ Σ_{i ∈ top-k} p_i (log p_i − log q_i) + r_p (log r_p − log r_q),   r = 1 − Σ_{top-k}

With k = 64 the teacher's tail mass r_p on KJV is small (measured in bench/train_step_speed.py).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from codesign.atomic import atomic_path


@dataclass
class TopKTargets:
    values: torch.Tensor  # (N, k) teacher logits / T, fp32
    indices: torch.Tensor  # (N, k) int64 token ids
    logsumexp: torch.Tensor  # (N,) log Σ exp(logits / T) over the full vocabulary


def topk_targets(teacher_logits: torch.Tensor, k: int, temperature: float) -> TopKTargets:
    """Top-k of (b, T, V) teacher logits at `temperature`, flattened to N = b·T rows."""
    z = teacher_logits.float().reshape(-1, teacher_logits.shape[-1]) / temperature
    values, indices = z.topk(k, dim=-1)
    return TopKTargets(values=values, indices=indices, logsumexp=torch.logsumexp(z, dim=-1))


def kl_topk(student_logp: torch.Tensor, target: TopKTargets, temperature: float) -> torch.Tensor:
    """KL(teacher || student) per token over the teacher's top-k + one tail bucket, × T² (as kl_loss).

    `student_logp` is log_softmax(student logits / T) in fp32, (N, V) — computed once and shared with the
    cross-entropy when T = 1."""
    log_p = target.values - target.logsumexp[:, None]  # (N, k)
    log_q = student_logp.gather(1, target.indices)  # (N, k)
    p = log_p.exp()
    head = (p * (log_p - log_q)).sum(-1)
    # Tail bucket: 1 - Σ, clamped so a teacher (or student) with all its mass in the top-k stays finite.
    eps = 1e-12
    r_p = (1 - p.sum(-1)).clamp_min(eps)
    r_q = (1 - log_q.exp().sum(-1)).clamp_min(eps)
    tail = r_p * (r_p.log() - r_q.log())
    return (head + tail).mean() * temperature**2


class TeacherCache:
    """Top-k teacher targets on disk, one file per batch, keyed by teacher × batch × (k, T, dtype)."""

    def __init__(self, root: str | os.PathLike, teacher_id: str, k: int, temperature: float, dtype: str):
        self.dir = Path(root) / "teacher-topk" / f"{teacher_id}-k{k}-T{temperature:g}-{dtype}"
        self.k, self.temperature = k, temperature
        self.hits = self.misses = 0

    def _path(self, batch: torch.Tensor) -> Path:
        key = hashlib.sha256(batch.detach().cpu().numpy().tobytes() + str(tuple(batch.shape)).encode())
        return self.dir / f"{key.hexdigest()[:24]}.pt"

    def get(self, batch: torch.Tensor, compute_logits) -> TopKTargets:
        """Cached targets for `batch`, or `compute_logits(batch)` reduced to top-k and cached (atomic)."""
        path = self._path(batch)
        if path.is_file():
            try:
                d = torch.load(path, map_location="cpu", weights_only=True)
                self.hits += 1
                return TopKTargets(d["values"].float(), d["indices"].long(), d["logsumexp"].float())
            except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed, never trusted
                path.unlink(missing_ok=True)
        self.misses += 1
        target = topk_targets(compute_logits(batch), self.k, self.temperature)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                torch.save(
                    {
                        "values": target.values,
                        "indices": target.indices.to(torch.int32),
                        "logsumexp": target.logsumexp,
                    },
                    tmp,
                )
        except OSError:
            pass  # the cache is an optimisation: an unwritable cache dir must not stop training
        return target


def fused_lm_and_kl(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    target: TopKTargets | None,
    temperature: float,
    want_lm: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(next-token CE, top-k KL) from one fp32 log-softmax of the student when T = 1 (two otherwise).

    The KL rows are every position of (b, T) (as kl_loss); the CE rows are positions 0..T-2 (as lm_loss)."""
    v = logits.shape[-1]
    flat = logits.float().reshape(-1, v)  # (b·T, V)
    logp = F.log_softmax(flat, dim=-1)
    lm = None
    if want_lm:
        b, t = input_ids.shape
        lp = logp.reshape(b, t, v)[:, :-1]  # (b, T-1, V)
        lm = -lp.gather(-1, input_ids[:, 1:, None]).mean()
    kl = None
    if target is not None:
        student = logp if temperature == 1.0 else F.log_softmax(flat / temperature, dim=-1)
        kl = kl_topk(student, target, temperature)
    return lm, kl
