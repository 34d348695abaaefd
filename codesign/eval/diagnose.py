"""Layer-local diagnosis of a sparse model's CWE failure: which layer's routing costs the answer, with evidence.

Three measurements per layer l and context length, all teacher-forced on CWE samples (prompt + reference
answer, one forward pass each; no decoding, so 30 layer variants stay affordable on a CPU):
  ablation     layer l alone made dense: how much of the answer positions' KL(dense || sparse) it removes
               (`kl_gain`, `kl_removed` as a fraction) and how much it raises the reference answer's
               log-likelihood (`ablation_gain`, `recovered` as a fraction of the all-dense gain);
  recall       of the channels the dense FFN's own bank top-k keeps (top-k of |act(g)·u| per bank), the fraction
               the predictor kept, by token position bucket;
  divergence   relative L2 distance of the residual stream after layer l from the dense model's (cumulative),
               its jump over layer l − 1, and the layer's local FFN error (sparse vs dense output on the same
               input), which isolates the layer from what earlier layers did.
Layers are ranked by `kl_gain`: its sign is stable (making a layer dense can only move the model toward dense),
whereas the answer log-likelihood of a model whose dense parent is itself weak on the task can move either way
under a change unrelated to the fault; both are reported, and the repair is judged on the log-likelihood.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from codesign.errors import ConfigError
from codesign.eval.cwe import CweSample
from codesign.eval.cwe_score import proxy_ids, variant

POSITION_EDGES = (0, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


def bucket_of(positions: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(POSITION_EDGES), positions, side="right") - 1


class _LayerProbe:
    """Forward hooks on every SparseSwiGLU: recall vs the oracle by position bucket and local FFN error."""

    def __init__(self, mods: list[nn.Module]) -> None:
        n_l, n_b = len(mods), len(POSITION_EDGES)
        self.hits = np.zeros((n_l, n_b))
        self.tokens = np.zeros((n_l, n_b))
        self.local_err = np.zeros(n_l)
        self.local_n = np.zeros(n_l)
        self._hooks = [m.register_forward_hook(self._observe) for m in mods]

    @torch.no_grad()
    def _observe(self, module, args, output) -> None:
        from codesign.sparse.topk import bank_topk_indices, indices_to_mask

        x = args[0].reshape(-1, module.hidden)  # (T, d): batch 1
        h = module.act_fn(module.gate_proj(x)) * module.up_proj(x)  # (T, I) dense intermediate
        oracle = indices_to_mask(
            bank_topk_indices(h.abs().float(), module.bank_size, module.k), module.intermediate
        )
        kept = module.last_mask.reshape(-1, module.intermediate)
        per_token = (kept & oracle).sum(-1).float() / oracle.sum(-1).float()  # (T,)
        b = bucket_of(np.arange(x.shape[0]))
        i = module.layer_idx
        np.add.at(self.hits[i], b, per_token.numpy())
        np.add.at(self.tokens[i], b, 1.0)
        dense_out = module.down_proj(h)
        err = (output.reshape(-1, module.hidden) - dense_out).norm(dim=-1) / dense_out.norm(dim=-1).clamp_min(
            1e-12
        )
        self.local_err[i] += float(err.sum())
        self.local_n[i] += x.shape[0]

    def close(self) -> None:
        for h in self._hooks:
            h.remove()


@torch.no_grad()
def sample_evidence(model: nn.Module, tokenizer, sample: CweSample) -> dict:
    """Recall by position bucket, local FFN error and hidden-state divergence per layer for one sample, plus
    the dense model's answer log-probabilities and the dense / sparse answer scores from the same passes."""
    from codesign.sparse.upcycle import sparse_modules

    mods = sparse_modules(model)
    ids, n_answer = proxy_ids(tokenizer, sample)
    with variant(model, "dense"):
        out = model(input_ids=ids, output_hidden_states=True)
    dense_h, dense_logp = out.hidden_states, _answer_logp(out.logits, n_answer)  # L + 1 of (1, T, d); (A, V)
    probe = _LayerProbe(mods)
    try:
        out = model(input_ids=ids, output_hidden_states=True)
    finally:
        probe.close()
    sparse_h = out.hidden_states
    div = []
    for layer in range(1, len(mods) + 1):
        d, s = dense_h[layer][0].float(), sparse_h[layer][0].float()  # (T, d)
        div.append(float(((s - d).norm(dim=-1) / d.norm(dim=-1).clamp_min(1e-12)).mean()))
    return {
        "recall_hits": probe.hits,
        "recall_tokens": probe.tokens,
        "local_error": (probe.local_err / np.maximum(probe.local_n, 1)).tolist(),
        "divergence": div,
        "ids": ids,
        "n_answer": n_answer,
        "dense_logp": dense_logp,
        "dense": _answer_scores(dense_logp, dense_logp, ids, n_answer),
        "model": _answer_scores(_answer_logp(out.logits, n_answer), dense_logp, ids, n_answer),
    }


def _answer_logp(logits: torch.Tensor, n_answer: int) -> torch.Tensor:
    """log-probabilities (A, V) of the positions that predict the answer's A tokens."""
    return torch.log_softmax(logits[0, -n_answer - 1 : -1].float(), -1)


def _answer_scores(logp: torch.Tensor, dense_logp: torch.Tensor, ids: torch.Tensor, n_answer: int) -> tuple:
    """(mean log-likelihood of the reference answer tokens, mean KL(dense || this) over the answer positions)."""
    ll = float(logp.gather(-1, ids[0, -n_answer:, None]).mean())
    kl = float((dense_logp.exp() * (dense_logp - logp)).sum(-1).mean())
    return ll, kl


def diagnose(
    model: nn.Module,
    tokenizer,
    samples: list[CweSample],
    *,
    layers: list[int] | None = None,
    screen: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Per-layer ablation, recall and divergence over `samples` (any lengths); a ranked table and matrices
    indexed [layer][length] for the heatmap. The model must be sparse; it is left as it was.

    Ablation costs one forward per layer and sample. `screen=m` ablates only the m layers with the largest
    local FFN error (measured for every layer in the evidence pass), then ranks those by ablation gain,
    followed by the others by local error; `layers` fixes the ablated set instead.
    """
    from codesign.eval.cwe_score import masked_dense_compute
    from codesign.sparse.upcycle import sparse_modules

    mods = sparse_modules(model)
    if not mods:
        raise ConfigError("diagnose needs a sparse model (the dense model has no routing to diagnose)")
    if not samples:
        raise ConfigError("diagnose needs at least one CWE sample")
    if screen is not None and not 0 < screen <= len(mods):
        raise ConfigError(f"screen must be in 1..{len(mods)} layers, got {screen}")
    lengths = sorted({s.length for s in samples})
    model.eval()
    n_l = len(mods)
    n_ablate = len(layers) if layers is not None else (screen or n_l)
    total, done = len(samples) * (n_ablate + 3), 0  # evidence = dense + sparse pass (+ hooks)
    ll: dict = {"model": {L: [] for L in lengths}, "dense": {L: [] for L in lengths}}
    hits = {L: np.zeros((n_l, len(POSITION_EDGES))) for L in lengths}
    toks = {L: np.zeros((n_l, len(POSITION_EDGES))) for L in lengths}
    local: dict = {L: [] for L in lengths}
    div: dict = {L: [] for L in lengths}
    evidence: list[dict] = []

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    with masked_dense_compute(model):
        for s in samples:  # evidence for every layer, then the two reference variants
            ev = sample_evidence(model, tokenizer, s)
            hits[s.length] += ev["recall_hits"]
            toks[s.length] += ev["recall_tokens"]
            local[s.length].append(ev["local_error"])
            div[s.length].append(ev["divergence"])
            for name in ("model", "dense"):
                ll[name][s.length].append(ev[name])
            evidence.append(ev)
            tick(3)
        if layers is None:
            err = np.mean([e for L in lengths for e in local[L]], axis=0)  # (layers,)
            layers = sorted(np.argsort(-err)[: screen or n_l].tolist())
        ll.update({f"dense@{i}": {L: [] for L in lengths} for i in layers})
        for s, ev in zip(samples, evidence, strict=True):
            for i in layers:
                with variant(model, f"dense@{i}"):
                    logp = _answer_logp(model(input_ids=ev["ids"]).logits, ev["n_answer"])
                ll[f"dense@{i}"][s.length].append(
                    _answer_scores(logp, ev["dense_logp"], ev["ids"], ev["n_answer"])
                )
                tick()
    return _assemble(ll, hits, toks, local, div, lengths, layers, n_l, len(samples))


def _assemble(ll, hits, toks, local, div, lengths, layers, n_l, n_samples) -> dict:
    mean = {name: {L: float(np.mean([v[0] for v in vals[L]])) for L in lengths} for name, vals in ll.items()}
    kl = {name: {L: float(np.mean([v[1] for v in vals[L]])) for L in lengths} for name, vals in ll.items()}
    gain = np.full((n_l, len(lengths)), np.nan)  # [layer][length] loglik gain of making the layer dense
    kl_gain = np.full((n_l, len(lengths)), np.nan)  # [layer][length] KL-to-dense removed by it
    for i in layers:
        for j, L in enumerate(lengths):
            gain[i, j] = mean[f"dense@{i}"][L] - mean["model"][L]
            kl_gain[i, j] = kl["model"][L] - kl[f"dense@{i}"][L]
    full = np.array([mean["dense"][L] - mean["model"][L] for L in lengths])  # (lengths,)
    kl_model = np.array([kl["model"][L] for L in lengths])
    recall = np.array([[hits[L][i].sum() / max(toks[L][i].sum(), 1) for L in lengths] for i in range(n_l)])
    local_err = np.array([np.mean(local[L], axis=0) for L in lengths]).T  # (layers, lengths)
    divergence = np.array([np.mean(div[L], axis=0) for L in lengths]).T
    jump = np.diff(np.vstack([np.zeros((1, len(lengths))), divergence]), axis=0)
    tot_hits = sum(hits[L] for L in lengths)
    tot_toks = sum(toks[L] for L in lengths)
    by_pos = np.where(tot_toks > 0, tot_hits / np.maximum(tot_toks, 1), np.nan)  # (layers, buckets)
    used = [b for b in range(len(POSITION_EDGES)) if tot_toks[0, b] > 0]
    order = sorted(layers, key=lambda i: -np.nanmean(kl_gain[i]))
    order += sorted(set(range(n_l)) - set(layers), key=lambda i: -local_err[i].mean())  # not ablated
    table = []
    for rank, i in enumerate(order, 1):
        ablated = i in layers
        table.append(
            {
                "rank": rank,
                "layer": i,
                "ablated": ablated,
                "kl_gain": float(np.nanmean(kl_gain[i])) if ablated else None,
                "kl_removed": _safe_div(float(np.nanmean(kl_gain[i])), float(kl_model.mean()))
                if ablated
                else None,
                "ablation_gain": float(np.nanmean(gain[i])) if ablated else None,
                "recovered": _safe_div(float(np.nanmean(gain[i])), float(full.mean())) if ablated else None,
                "recall": float(recall[i].mean()),
                "recall_rank": int(np.argsort(np.argsort(recall.mean(1)))[i]) + 1,  # 1 = lowest recall
                "local_error": float(local_err[i].mean()),
                "divergence_jump": float(jump[i].mean()),
            }
        )
    return {
        "lengths": lengths,
        "layers": n_l,
        "ablated_layers": layers,
        "samples": n_samples,
        "loglik_model": [mean["model"][L] for L in lengths],
        "loglik_dense": [mean["dense"][L] for L in lengths],
        "all_dense_gain": full.tolist(),
        "kl_model_to_dense": kl_model.tolist(),
        "ablation_gain": _nan_to_none(gain),
        "kl_gain": _nan_to_none(kl_gain),
        "recall": recall.tolist(),
        "recall_by_position": {
            "edges": [POSITION_EDGES[b] for b in used] + [POSITION_EDGES[used[-1] + 1]],
            "recall": by_pos[:, used].tolist(),
        },
        "local_error": local_err.tolist(),
        "divergence": divergence.tolist(),
        "divergence_jump": jump.tolist(),
        "ranking": table,
        "culprit": order[0],
    }


def _safe_div(a: float, b: float) -> float | None:
    return a / b if abs(b) > 1e-12 else None


def _nan_to_none(a: np.ndarray) -> list:
    return [[None if np.isnan(v) else float(v) for v in row] for row in a]


@torch.no_grad()
def plant_fault(model: nn.Module, layer: int) -> None:
    """Corrupt one layer's predictor in place: negated logits make it keep the channels it ranks least active
    (a copy of the model should be passed when the original is still needed)."""
    from codesign.sparse.upcycle import sparse_modules

    mods = sparse_modules(model)
    if not 0 <= layer < len(mods):
        raise ConfigError(f"--plant-fault {layer}: the model has sparse layers 0..{len(mods) - 1}")
    pred = mods[layer].predictor
    pred.out_proj.weight.neg_()
    if pred.out_proj.bias is not None:
        pred.out_proj.bias.neg_()
