"""Running CWE on a loaded model: greedy generation, the teacher-forced proxy, variants, and intervals.

Two scores per sample:
  generated  RULER's: greedy decoding (KV cache, stop at EOS or `tokens_to_generate`), substring score × 100.
  proxy      the teacher-forced mean log-likelihood per token of the reference answer " 1. w1 2. w2 ..."
             after the prompt: one forward pass, no decoding, so it costs one prefill. Higher is better.
Variants re-route one loaded sparse model without reloading it (see `VARIANT_HELP`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from codesign.errors import ConfigError
from codesign.eval.cwe import CweSample, CweSetting, score_prediction

VARIANT_HELP = (
    "model (as loaded), dense (every layer dense), oracle (dense top-k routing), dense@L (layer L dense, the "
    "rest as loaded), k@L=K (layer L keeps K channels per bank)"
)
_VARIANT = re.compile(r"^(model|dense|oracle|dense@(\d+)|k@(\d+)=(\d+))$")


def check_variant(model: nn.Module, name: str) -> None:
    """ConfigError naming the problem if `name` is not a variant of `model` (before any work)."""
    from codesign.sparse.upcycle import sparse_modules

    m = _VARIANT.match(name)
    if m is None:
        raise ConfigError(f"unknown variant {name!r}; variants are {VARIANT_HELP}")
    mods = sparse_modules(model)
    if name != "model" and not (mods or name == "dense"):
        raise ConfigError(
            f"variant {name!r} needs a sparse model; this one is dense (variants: model, dense)"
        )
    layer = m.group(2) or m.group(3)
    if layer is not None and int(layer) >= len(mods):
        raise ConfigError(f"variant {name!r}: the model has sparse layers 0..{len(mods) - 1}")
    if m.group(4) is not None and not 0 < int(m.group(4)) <= mods[0].bank_size:
        raise ConfigError(f"variant {name!r}: k must be in 1..{mods[0].bank_size}")


@contextmanager
def variant(model: nn.Module, name: str) -> Iterator[nn.Module]:
    """Re-route `model` as variant `name` inside the block; modes and k are restored afterwards."""
    from codesign.sparse.upcycle import sparse_modules

    check_variant(model, name)
    mods = sparse_modules(model)
    saved = [(m.mode, m.k) for m in mods]
    m = _VARIANT.match(name)
    try:
        if name in ("dense", "oracle"):
            for mod in mods:
                mod.set_mode(name)
        elif m.group(2) is not None:
            mods[int(m.group(2))].set_mode("dense")
        elif m.group(3) is not None:
            mods[int(m.group(3))].set_k(int(m.group(4)))
        yield model
    finally:
        for mod, (mode, k) in zip(mods, saved, strict=True):
            mod.set_mode(mode)
            mod.set_k(k)


@contextmanager
def masked_dense_compute(model: nn.Module) -> Iterator[nn.Module]:
    """Run long prefills through SparseSwiGLU's masked-dense path: the same kept channels and the same output
    (the project's "sparse equals masked dense" invariant; the straight-through multiplier is exactly the mask
    in a forward pass), up to summation order. On a CPU the gather path materialises (tokens, kept, d) weight
    copies per projection, ~0.5 GB per layer at 512 tokens; the masked-dense path costs one dense FFN."""
    from codesign.sparse.upcycle import sparse_modules

    mods = sparse_modules(model)
    flags = [m.training for m in mods]
    for m in mods:
        m.training = True  # module flag only: the decoder (attention, norms) stays in eval mode
    try:
        with torch.no_grad():
            yield model
    finally:
        for m, f in zip(mods, flags, strict=True):
            m.training = f


def prompt_ids(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor([tokenizer(text)["input_ids"]], dtype=torch.long)  # (1, P)


@torch.no_grad()
def greedy_answer(
    model: nn.Module, ids: torch.Tensor, max_new: int, eos_id: int | None, *, capture=None, seq_id: int = 0
) -> list[int]:
    """Greedy continuation of one prompt (1, P) with a KV cache, stopping at EOS; records routing if a
    RoutingCapture is given (prefill: is_decode False; each decode step: is_decode True, same sequence id)."""
    p = ids.shape[1]
    seq = np.array([seq_id])
    if capture is not None:
        capture.arm(ids, phase="cwe", seq_ids=seq)
    out = model(input_ids=ids, use_cache=True)
    if capture is not None:
        capture.disarm()
    cache, nxt = out.cache, out.logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
    generated = [int(nxt)]
    for t in range(1, max_new):
        if eos_id is not None and generated[-1] == eos_id:
            break
        if capture is not None:
            capture.arm(nxt, phase="cwe", is_decode=True, positions=np.array([[p + t - 1]]), seq_ids=seq)
        out = model(input_ids=nxt, cache=cache, use_cache=True)
        if capture is not None:
            capture.disarm()
        cache, nxt = out.cache, out.logits[:, -1].argmax(-1, keepdim=True)
        generated.append(int(nxt))
    return generated


@torch.no_grad()
def answer_loglik(model: nn.Module, tokenizer, sample: CweSample, **forward_kw) -> tuple[float, torch.Tensor]:
    """(mean log-likelihood per answer token, ids (1, P + A)) of the reference answer after the prompt."""
    ids, n_answer = proxy_ids(tokenizer, sample)
    logits = model(input_ids=ids, **forward_kw).logits[0, -n_answer - 1 : -1].float()  # (A, V)
    logp = torch.log_softmax(logits, -1).gather(-1, ids[0, -n_answer:, None])
    return float(logp.mean()), ids


def proxy_ids(tokenizer, sample: CweSample) -> tuple[torch.Tensor, int]:
    """(prompt + reference answer ids (1, P + A), A); the answer is tokenised as a continuation."""
    full = tokenizer(sample.prompt + sample.answer_text())["input_ids"]
    n_prompt = len(tokenizer(sample.prompt)["input_ids"])
    return torch.tensor([full], dtype=torch.long), len(full) - n_prompt


def bootstrap_ci(values, *, seed: int = 0, resamples: int = 2000, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of the mean (deterministic for a seed); [v, v] for a single value."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return [float(x.mean()), float(x.mean())]
    idx = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    means = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def score_samples(
    model: nn.Module,
    tokenizer,
    setting: CweSetting,
    samples: list[CweSample],
    variants: list[str],
    *,
    generate: bool = True,
    proxy: bool = True,
    capture=None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Per variant and length: generated scores (× 100) and proxy log-likelihoods, each with a 95 % interval.

    Routing is captured (if `capture`) for the first variant only, so a trace holds one model's serving.
    """
    for v in variants:
        check_variant(model, v)
    if not (generate or proxy):
        raise ConfigError("nothing to score: enable generation or the proxy")
    eos = getattr(tokenizer, "eos_token_id", None)
    model.eval()
    total, done = len(variants) * len(samples), 0
    out: dict = {}
    for vi, name in enumerate(variants):
        rows: dict[int, dict] = {}
        with variant(model, name):
            for s in samples:
                row = rows.setdefault(s.length, {"scores": [], "predictions": [], "loglik": []})
                if generate:
                    ids = torch.tensor([tokenizer(s.prompt)["input_ids"]], dtype=torch.long)
                    cap = capture if vi == 0 else None
                    with masked_dense_compute(model):
                        new = greedy_answer(
                            model, ids, setting.tokens_to_generate, eos, capture=cap, seq_id=done
                        )
                    text = tokenizer.decode(new, skip_special_tokens=True)
                    row["predictions"].append(text)
                    row["scores"].append(100.0 * score_prediction(text, s.answer))
                if proxy:
                    with masked_dense_compute(model):
                        row["loglik"].append(answer_loglik(model, tokenizer, s)[0])
                done += 1
                if progress is not None:
                    progress(done, total)
        out[name] = {str(length): summarise(r) for length, r in rows.items()}
    return out


def summarise(row: dict) -> dict:
    res = dict(row)
    if row["scores"]:
        res["mean"] = float(np.mean(row["scores"]))
        res["ci95"] = bootstrap_ci(row["scores"])
    if row["loglik"]:
        res["loglik_mean"] = float(np.mean(row["loglik"]))
        res["loglik_ci95"] = bootstrap_ci(row["loglik"])
    return res


def rank_agreement(scored: dict) -> dict:
    """How the proxy ranks variants against the generated score: Spearman rank correlation over variants of
    (mean generated score, mean proxy log-likelihood), pooled over lengths; plus per-length orders."""
    names = list(scored)
    gen = [np.mean([scored[n][L]["mean"] for L in scored[n]]) for n in names]
    prox = [np.mean([scored[n][L]["loglik_mean"] for L in scored[n]]) for n in names]
    return {
        "variants": names,
        "generated_mean": [float(g) for g in gen],
        "proxy_loglik_mean": [float(p) for p in prox],
        "spearman": spearman(gen, prox),
        "generated_order": [names[i] for i in np.argsort(gen)[::-1]],
        "proxy_order": [names[i] for i in np.argsort(prox)[::-1]],
    }


def spearman(a, b) -> float | None:
    """Spearman's rho with average ranks for ties; None when either side is constant or has < 2 points."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    ra, rb = _ranks(a), _ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):  # ties share their average rank
        ranks[x == v] = ranks[x == v].mean()
    return ranks


def max_context(model: nn.Module) -> int | None:
    """The longest sequence the model's position embeddings support (None if the config does not say)."""
    return int(getattr(model.config, "max_position_embeddings", 0) or 0) or None


def evaluate_cwe(
    model: nn.Module,
    tokenizer,
    *,
    model_name: str,
    setting: CweSetting,
    lengths: list[int],
    samples: int,
    seed: int = 42,
    variants: list[str] = ("model",),
    generate: bool = True,
    proxy: bool = True,
    trace_out=None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """`codesign eval cwe` as one call: samples at every length, scores per variant with intervals, the
    proxy's rank agreement with the generated score, and optionally the first variant's routing trace."""
    from codesign.errors import ModelError
    from codesign.eval.cwe import check_request, make_samples
    from codesign.sparse.upcycle import sparse_modules

    if tokenizer is None:
        raise ModelError(f"{model_name} has no tokenizer: CWE fits lengths in the model's own tokens")
    check_request(lengths, samples, max_context(model))
    for v in variants:
        check_variant(model, v)
    if trace_out is not None and not sparse_modules(model):
        raise ModelError(f"--trace-out records sparse routing; {model_name} is dense")
    sets = [s for L in lengths for s in make_samples(tokenizer, setting, L, samples, seed)]
    capture = None
    if trace_out is not None:
        from codesign.sparse.capture import RoutingCapture

        capture = RoutingCapture(
            trace_out,
            force=force,
            model_name=model_name,
            source=f"eval:cwe-{setting.name}",
            extra={"cwe_setting": setting.to_dict(), "seed": seed, "lengths": list(lengths),
                   "variant": variants[0], "decoding": "greedy, batch 1, KV cache, stop at EOS"},
        )  # fmt: skip
        capture.attach(model)
    try:
        scores = score_samples(
            model, tokenizer, setting, sets, list(variants), generate=generate, proxy=proxy, capture=capture,
            progress=progress,
        )  # fmt: skip
    finally:
        if capture is not None:
            capture.close()
    per_len = {str(L): [s for s in sets if s.length == L] for L in lengths}
    return {
        "model": model_name,
        "setting": setting.to_dict(),
        "seed": seed,
        "lengths": list(lengths),
        "samples_per_length": samples,
        "num_words": {L: [s.num_words for s in ss] for L, ss in per_len.items()},
        "prompt_tokens": {L: [s.prompt_tokens for s in ss] for L, ss in per_len.items()},
        "answers": {L: [s.answer for s in ss] for L, ss in per_len.items()},
        "scores": scores,
        "proxy_agreement": rank_agreement(scores) if generate and proxy and len(variants) > 1 else None,
        "decoding": f"greedy, fp32, KV cache, stop at EOS or {setting.tokens_to_generate} tokens",
        "interval": "95 % percentile bootstrap of the mean over samples (2000 resamples, seed 0)",
        "trace": None if capture is None else {"path": str(trace_out), "tokens": capture.num_tokens},
    }
