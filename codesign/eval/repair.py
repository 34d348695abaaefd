"""Single-layer repair of a sparse model's long-context routing (design and rationale in docs/CWE.md).

Candidates for the culprit layer l, each measured on held-out CWE samples (the teacher-forced proxy):
  retrain   only layer l's predictor, on layer-l inputs from long CWE prompts (another seed) and KJV train
            text, with a BCE toward the dense layer's own bank top-k (distillation of the dense routing); no
            hardware cost;
  k=K       layer l keeps K > k channels per bank (costs bytes and cycles on every token: the simulator says
            how many);
  retrain+k the two together.
The chosen repair is the cheapest that recovers `target` of what making layer l fully dense recovers (the
ceiling of any single-layer repair), else the best one measured. It is left applied to the model; the result
holds the proxy before / after per length, KJV validation perplexity before / after (regression must be
<= `max_ppl_regression`), and the simulator's bytes and cycles for the repaired routing vs the original.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from codesign.errors import ConfigError
from codesign.eval.cwe import CweSetting, make_samples
from codesign.eval.cwe_score import answer_loglik, masked_dense_compute, proxy_ids, variant


def _mean_loglik(model, tok, samples) -> dict[int, float]:
    out: dict[int, list[float]] = {}
    with masked_dense_compute(model):
        for s in samples:
            out.setdefault(s.length, []).append(answer_loglik(model, tok, s)[0])
    return {L: float(np.mean(v)) for L, v in out.items()}


@torch.no_grad()
def collect_layer_inputs(model: nn.Module, layer: int, batches: list[torch.Tensor]) -> torch.Tensor:
    """FFN inputs (N, d) of sparse layer `layer` over `batches` of ids, with every layer routed as deployed."""
    from codesign.sparse.upcycle import sparse_modules

    mod = sparse_modules(model)[layer]
    got: list[torch.Tensor] = []
    hook = mod.register_forward_hook(lambda m, args, out: got.append(args[0].reshape(-1, m.hidden).clone()))
    try:
        with masked_dense_compute(model):
            for ids in batches:
                model(input_ids=ids)
    finally:
        hook.remove()
    return torch.cat(got)


def retrain_predictor(mod: nn.Module, x: torch.Tensor, *, steps: int, lr: float = 1e-3, batch: int = 1024,
                      seed: int = 0) -> list[float]:  # fmt: skip
    """Fit `mod.predictor` to the dense layer's bank top-k on inputs x (N, d) with BCE; returns the loss curve."""
    from codesign.sparse.topk import bank_topk_indices, indices_to_mask

    with torch.no_grad():
        h = mod.act_fn(mod.gate_proj(x)) * mod.up_proj(x)  # (N, I)
        target = indices_to_mask(bank_topk_indices(h.abs(), mod.bank_size, mod.k), mod.intermediate).float()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(mod.predictor.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (min(batch, x.shape[0]),), generator=gen)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(mod.predictor(x[idx]), target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def routing_masks(model: nn.Module, batches: list[torch.Tensor]) -> np.ndarray:
    """Kept-channel masks bool (T, L, I) of every token of `batches` (batch 1 each), in order."""
    from codesign.sparse.upcycle import sparse_modules

    mods = sparse_modules(model)
    per: list[list[torch.Tensor]] = [[] for _ in mods]
    hooks = [m.register_forward_hook(lambda m, a, o: per[m.layer_idx].append(m.last_mask.reshape(-1, m.intermediate)))
             for m in mods]  # fmt: skip
    try:
        with masked_dense_compute(model):
            for ids in batches:
                model(input_ids=ids)
    finally:
        for h in hooks:
            h.remove()
    return torch.stack([torch.cat(p) for p in per], 1).numpy()  # (T, L, I)


def _ppl(model, windows: np.ndarray) -> float:
    """exp(mean next-token NLL) over `windows` (n, L), as codesign.eval.ppl.perplexity, but through the
    masked-dense path (perplexity() calls model.eval(), which would switch it back to the gather path)."""
    nll, count = 0.0, 0
    with masked_dense_compute(model):
        for row in np.asarray(windows):
            ids = torch.as_tensor(row[None], dtype=torch.long)  # (1, L)
            logits = model(input_ids=ids).logits[0, :-1].float()
            nll += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            count += ids.shape[1] - 1
    return float(np.exp(nll / count))


def repair_layer(
    model: nn.Module,
    tokenizer,
    *,
    layer: int,
    setting: CweSetting,
    lengths: list[int],
    samples: int,
    val_windows: np.ndarray,
    train_windows: np.ndarray,
    seed: int = 42,
    train_seed: int = 1234,
    train_samples: int = 4,
    steps: int = 300,
    k_candidates: list[int] | None = None,
    target: float = 0.8,
    max_ppl_regression: float = 0.005,
    price: Callable[..., dict] | None = None,
    hwconfig: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Measure the single-layer repair candidates for `layer`, apply the chosen one, and report it.

    `val_windows` (n, L) token windows measure perplexity before / after; `train_windows` (m, L) are plain
    text mixed into the predictor's training data so that repairing long contexts does not unlearn text.
    `price(masks (T, L, I), hidden, predictor_rank, name) -> dict` costs the routing before and after on the
    simulator (codesign.jobs.simulate.simulate_masks, bound to a hwconfig by the caller: eval does not import
    the simulator); `hwconfig` only labels the report. Without `price` the report has no "sim" entry.
    """
    from codesign.sparse.upcycle import sparse_modules

    mods = sparse_modules(model)
    if not 0 <= layer < len(mods):
        raise ConfigError(f"repair layer {layer}: the model has sparse layers 0..{len(mods) - 1}")
    mod, k0, bank = mods[layer], mods[layer].k, mods[layer].bank_size
    ks = k_candidates or sorted({min(bank, k0 + d) for d in (8, 16, 32)} - {k0})
    model.eval()
    step, total = 0, 6 + 2 * len(ks)

    def tick() -> None:
        nonlocal step
        step += 1
        if progress is not None:
            progress(step, total)

    evals = [s for L in lengths for s in make_samples(tokenizer, setting, L, samples, seed)]
    val = np.asarray(val_windows)
    base = _mean_loglik(model, tokenizer, evals)
    with variant(model, f"dense@{layer}"):
        ceiling = _mean_loglik(model, tokenizer, evals)
    ppl_before = _ppl(model, val)
    tick()

    def recovered(ll: dict[int, float]) -> float:
        gain = np.mean([ceiling[L] - base[L] for L in lengths])
        return float(np.mean([ll[L] - base[L] for L in lengths]) / gain) if abs(gain) > 1e-9 else float("nan")

    # -- candidate: retrain the predictor on long-context aggregation data + text --------------------
    train = [
        proxy_ids(tokenizer, s)[0]
        for L in lengths
        for s in make_samples(tokenizer, setting, L, train_samples, train_seed)
    ]
    text = [torch.as_tensor(np.asarray(w)[None], dtype=torch.long) for w in train_windows]
    x = collect_layer_inputs(model, layer, train + text)
    tick()
    original = copy.deepcopy(mod.predictor.state_dict())
    losses = retrain_predictor(mod, x, steps=steps, seed=train_seed)
    retrained = copy.deepcopy(mod.predictor.state_dict())
    cands = {"retrain": {"k": k0, "retrain": True, "loglik": _mean_loglik(model, tokenizer, evals)}}
    tick()
    for K in ks:  # retrained predictor at a larger k, then the original predictor at that k
        mod.set_k(K)
        cands[f"retrain+k={K}"] = {"k": K, "retrain": True, "loglik": _mean_loglik(model, tokenizer, evals)}
        tick()
    mod.predictor.load_state_dict(original)
    for K in ks:
        mod.set_k(K)
        cands[f"k={K}"] = {"k": K, "retrain": False, "loglik": _mean_loglik(model, tokenizer, evals)}
        tick()
    mod.set_k(k0)
    for c in cands.values():
        c["recovered"] = recovered(c["loglik"])
    # cheapest first: extra channels, then no retraining (a shipped predictor stays as it is)
    ok = sorted(
        (n for n, c in cands.items() if c["recovered"] >= target),
        key=lambda n: (cands[n]["k"], cands[n]["retrain"]),
    )
    chosen = ok[0] if ok else max(cands, key=lambda n: cands[n]["recovered"])
    if cands[chosen]["retrain"]:
        mod.predictor.load_state_dict(retrained)
    mod.set_k(cands[chosen]["k"])
    ppl_after = _ppl(model, val)
    tick()

    # -- hardware cost of the repaired routing vs the original (same tokens) -------------------------
    sim_ids = [proxy_ids(tokenizer, s)[0] for s in evals[:2]]
    after_masks = routing_masks(model, sim_ids)
    mod.predictor.load_state_dict(original)
    mod.set_k(k0)
    before_masks = routing_masks(model, sim_ids)
    if cands[chosen]["retrain"]:
        mod.predictor.load_state_dict(retrained)
    mod.set_k(cands[chosen]["k"])
    rank = mod.predictor.rank
    sim = None
    if price is not None:
        sim_before = price(before_masks, mod.hidden, rank, "before")
        sim_after = price(after_masks, mod.hidden, rank, "after")
        sim = {"hwconfig": hwconfig, "replay": "CWE prompt tokens as decode steps at batch 1",
               "before": sim_before, "after": sim_after,
               "extra_dram_read_bytes": sim_after["dram_read_bytes"] - sim_before["dram_read_bytes"],
               "extra_cycles": sim_after["cycles"] - sim_before["cycles"],
               "cycles_ratio": sim_after["cycles"] / sim_before["cycles"],
               "dram_bytes_ratio": sim_after["dram_read_bytes"] / sim_before["dram_read_bytes"]}  # fmt: skip
    tick()
    regression = ppl_after / ppl_before - 1
    return {
        "layer": layer,
        "k_before": k0,
        "setting": setting.to_dict(),
        "lengths": lengths,
        "samples_per_length": samples,
        "loglik_before": base,
        "loglik_layer_dense": ceiling,
        "candidates": cands,
        "target_recovery": target,
        "chosen": chosen,
        "loglik_after": cands[chosen]["loglik"],
        "retrain": {"steps": steps, "tokens": int(x.shape[0]), "loss_first": losses[0], "loss_last": losses[-1],
                    "data": f"{train_samples} CWE prompts/length (seed {train_seed}) + {len(text)} text windows"},
        "ppl_before": ppl_before,
        "ppl_after": ppl_after,
        "ppl_regression": regression,
        "ppl_regression_ok": regression <= max_ppl_regression,
        "ppl_data": f"{val.shape[0]} windows of {val.shape[1]} tokens",
        "sim": sim,
        "summary": {"chosen": chosen, "recovered": cands[chosen]["recovered"], "ppl_regression": regression,
                    "cycles_ratio": sim["cycles_ratio"] if sim else None},
    }  # fmt: skip
