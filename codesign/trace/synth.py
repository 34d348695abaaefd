"""Synthetic routing traces with controlled statistics, for the simulator before (and beside) real traces.

Every kind draws a score per token × layer × channel and keeps the top k of every bank of B (or the top
k·I/B of the whole layer for `global_topk`), so the scores double as predictor logits: a synthetic trace
written with logits can be re-selected offline at any other (B, k) exactly like a recorded one.

    uniform      scores i.i.d. N(0, 1): every bank keeps a uniformly random k-subset
    zipf         scores = log(popularity) + Gumbel, popularity ∝ rank^-s over a random channel permutation
                 per layer (Gumbel-top-k = sampling without replacement ∝ popularity)
    correlated   each token reuses exactly round(reuse·k) of its sequence's previous token's channels per
                 bank; the rest are fresh uniform picks
    global_topk  uniform scores, top k·I/B per layer: same density, no bank balance

Tokens are laid out as serving would see them: `sequences` streams, each a prefill of `prefill_tokens`
followed by `decode_tokens` decode steps; decode steps are interleaved across sequences (step 0 of every
sequence, then step 1, ...) so that consecutive decode tokens are concurrent requests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codesign.errors import TraceError
from codesign.trace.store import TraceMeta, TraceWriter

KINDS = ("uniform", "zipf", "correlated", "global_topk")

# Model shapes by exact preset name: (hidden, intermediate, layers).
PRESETS: dict[str, tuple[int, int, int]] = {
    "smollm2-135m": (576, 1536, 30),
    "qwen2.5-0.5b": (896, 4864, 24),
    "qwen2.5-7b": (3584, 18944, 28),
    "llama-3.1-8b": (4096, 14336, 32),
}
# The rest of each preset's decoder (from its Hugging Face config.json): what whole-model simulation needs.
DECODERS: dict[str, dict] = {
    "smollm2-135m": {"heads": 9, "kv_heads": 3, "head_dim": 64, "vocab": 49152, "tied_embeddings": True},
    "qwen2.5-0.5b": {"heads": 14, "kv_heads": 2, "head_dim": 64, "vocab": 151936, "tied_embeddings": True},
    "qwen2.5-7b": {"heads": 28, "kv_heads": 4, "head_dim": 128, "vocab": 152064, "tied_embeddings": False},
    "llama-3.1-8b": {"heads": 32, "kv_heads": 8, "head_dim": 128, "vocab": 128256, "tied_embeddings": False},
}


@dataclass(frozen=True)
class SynthSpec:
    """Everything that determines a synthetic trace (with the seed, it is reproducible bit for bit)."""

    kind: str
    hidden: int
    intermediate: int
    layers: int
    bank_size: int = 64
    k: int = 16
    sequences: int = 4
    prefill_tokens: int = 0
    decode_tokens: int = 64
    zipf_s: float = 1.0
    reuse: float = 0.5
    seed: int = 0
    model_name: str = "synthetic"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TraceError(f"unknown synthetic trace kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.bank_size <= 0 or self.intermediate % self.bank_size:
            raise TraceError(f"bank size {self.bank_size} does not divide intermediate {self.intermediate}")
        if not 0 < self.k <= self.bank_size:
            raise TraceError(f"k must be in 1..{self.bank_size} (the bank size), got {self.k}")
        if self.sequences <= 0 or self.prefill_tokens < 0 or self.decode_tokens < 0:
            raise TraceError("sequences must be positive; prefill/decode token counts non-negative")
        if self.prefill_tokens + self.decode_tokens == 0:
            raise TraceError("a trace needs at least one token: set --prefill-tokens or --decode-tokens")
        if not 0.0 <= self.reuse <= 1.0:
            raise TraceError(f"reuse must be within [0, 1], got {self.reuse}")
        if self.zipf_s < 0:
            raise TraceError(f"zipf exponent must be non-negative, got {self.zipf_s}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.hidden, self.intermediate, self.layers

    @property
    def num_tokens(self) -> int:
        return self.sequences * (self.prefill_tokens + self.decode_tokens)

    def meta(self) -> TraceMeta:
        return TraceMeta(
            model_name=self.model_name,
            hidden=self.hidden,
            intermediate=self.intermediate,
            layers=self.layers,
            bank_size=self.bank_size,
            k=self.k,
            decoder=DECODERS.get(self.model_name) if PRESETS.get(self.model_name) == self.shape else None,
            source=f"synthetic:{self.kind}",
            synthetic=True,
            extra={"synth": {k: getattr(self, k) for k in self.__dataclass_fields__}},
        )


def topk_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """bool mask keeping the k largest scores along the last axis; ties go to the lower index.

    Partial selection, O(n) per row: the k-th largest value v by np.partition, then every score > v and
    the lowest-index scores == v until k are kept — the same set as a stable descending argsort's first k
    (the torch and Triton references), without sorting.
    """
    n = scores.shape[-1]
    if k >= n:
        return np.ones(scores.shape, dtype=bool)
    if k <= 0:
        return np.zeros(scores.shape, dtype=bool)
    kth = np.partition(scores, n - k, axis=-1)[..., n - k : n - k + 1]  # (..., 1) the k-th largest
    mask = scores > kth
    short = k - mask.sum(axis=-1, keepdims=True)  # ≥ 1: how many ties at the threshold to keep
    eq = scores == kth
    rows = (short < eq.sum(axis=-1, keepdims=True))[..., 0]  # rows where some ties must be dropped
    if rows.any():
        eq[rows] &= np.cumsum(eq[rows], axis=-1) <= short[rows]
    return mask | eq


def bank_topk_mask(scores: np.ndarray, bank_size: int, k: int) -> np.ndarray:
    """bool mask keeping the k largest scores in every bank of `bank_size` along the last axis.

    Ties go to the lower channel index, matching the torch and Triton references (see topk_mask).
    """
    *lead, I = scores.shape
    banks = scores.reshape(*lead, I // bank_size, bank_size)  # (..., nb, B)
    return topk_mask(banks, k).reshape(*lead, I)


def global_topk_mask(scores: np.ndarray, kept: int) -> np.ndarray:
    """bool mask keeping the `kept` largest scores along the last axis (ties to the lower index)."""
    return topk_mask(scores, kept)


class _ScoreSource:
    """Draws the scores of one token (all layers) for one sequence, keeping per-sequence state."""

    def __init__(self, spec: SynthSpec, rng: np.random.Generator):
        self.spec, self.rng = spec, rng
        L, I = spec.layers, spec.intermediate
        if spec.kind == "zipf":
            ranks = np.arange(1, I + 1, dtype=np.float64)
            log_pop = -spec.zipf_s * np.log(ranks)
            self.log_pop = np.stack([log_pop[rng.permutation(I)] for _ in range(L)]).astype(np.float32)
        self.prev: dict[int, np.ndarray] = {}  # seq → previous token's mask (L, I)

    def draw(self, seq: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 (L, I), mask bool (L, I)) for the next token of sequence `seq`."""
        s, rng = self.spec, self.rng
        L, I, B, k = s.layers, s.intermediate, s.bank_size, s.k
        if s.kind == "zipf":
            scores = self.log_pop + rng.gumbel(size=(L, I)).astype(np.float32)
        else:
            scores = rng.standard_normal((L, I), dtype=np.float32)
        if s.kind == "correlated" and seq in self.prev:
            scores = self._reuse(scores, self.prev[seq])
        # Select on the fp16-rounded scores, so the stored logits reproduce these masks exactly.
        scores = scores.astype(np.float16).astype(np.float32)
        if s.kind == "global_topk":
            mask = global_topk_mask(scores, kept=I // B * k)
        else:
            mask = bank_topk_mask(scores, B, k)
        self.prev[seq] = mask
        return scores, mask

    def _reuse(self, scores: np.ndarray, prev: np.ndarray) -> np.ndarray:
        """Shift scores so that exactly round(reuse·k) of the previous kept channels stay kept in each bank."""
        s = self.spec
        L, I, B, k = s.layers, s.intermediate, s.bank_size, s.k
        r = int(round(s.reuse * k))
        # Large offsets keep the order within each group; fp16 logits resolve ±16 easily.
        bonus = np.where(prev, -16.0, 0.0).astype(np.float32)  # drop previous channels by default...
        keep_draw = np.where(prev, self.rng.random((L, I), dtype=np.float32), -1.0).reshape(L, I // B, B)
        reused = np.argsort(-keep_draw, axis=-1, kind="stable")[..., :r]  # ...except r of them per bank
        lift = np.zeros((L, I // B, B), dtype=np.float32)
        np.put_along_axis(lift, reused, 32.0, axis=-1)
        return np.clip(scores, -4.0, 4.0) + bonus + lift.reshape(L, I)


def _token_arrays(spec: SynthSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """seq_id, position, is_decode of every token in processing order (prefills one sequence at a time, then interleaved decode)."""
    S, P, D = spec.sequences, spec.prefill_tokens, spec.decode_tokens
    seq = np.concatenate([np.repeat(np.arange(S), P), np.tile(np.arange(S), D)]).astype(np.int32)
    pos = np.concatenate([np.tile(np.arange(P), S), P + np.repeat(np.arange(D), S)]).astype(np.int32)
    dec = np.concatenate([np.zeros(S * P, dtype=bool), np.ones(S * D, dtype=bool)])
    return seq, pos, dec


# Scores drawn per call when tokens are independent (uniform, zipf, global_topk): one call for n tokens
# draws the same numbers as n calls of one token (numpy fills in C order), so the trace is unchanged.
DRAW_FLOATS = 1 << 22
BLOCK_BYTES = 1 << 25  # masks per yielded block: 32 MiB (about 64 Qwen2.5-7B tokens)


def _draw_block(
    spec: SynthSpec, source: _ScoreSource, seqs: np.ndarray, want_scores: bool, want_global: bool
):
    """(scores float16 (n, L, I) or None, bank masks bool (n, L, I), global masks or None) of the next n tokens.

    Independent kinds draw and select DRAW_FLOATS scores at a time, so temporaries stay small.
    """
    L, I, B, k = spec.layers, spec.intermediate, spec.bank_size, spec.k
    kept = I // B * k
    n = len(seqs)
    if spec.kind == "correlated":  # each token depends on its sequence's previous one: token by token
        drawn = [source.draw(int(q)) for q in seqs]
        scores = np.stack([d[0] for d in drawn])
        glob = global_topk_mask(scores, kept) if want_global else None
        return (scores.astype(np.float16) if want_scores else None), np.stack([d[1] for d in drawn]), glob
    scores = np.empty((n, L, I), dtype=np.float16) if want_scores else None
    masks = np.empty((n, L, I), dtype=bool)
    glob = np.empty((n, L, I), dtype=bool) if want_global else None
    step = max(1, DRAW_FLOATS // (L * I))
    for lo in range(0, n, step):
        m = min(step, n - lo)
        if spec.kind == "zipf":
            part = source.log_pop + source.rng.gumbel(size=(m, L, I)).astype(np.float32)
        else:
            part = source.rng.standard_normal((m, L, I), dtype=np.float32)
        part = part.astype(np.float16).astype(np.float32)  # selected on fp16-rounded scores, as stored
        if spec.kind == "global_topk":
            masks[lo : lo + m] = global_topk_mask(part, kept)
        else:
            masks[lo : lo + m] = bank_topk_mask(part, B, k)
        if want_global:
            glob[lo : lo + m] = (
                masks[lo : lo + m] if spec.kind == "global_topk" else global_topk_mask(part, kept)
            )
        if want_scores:
            scores[lo : lo + m] = part
    return scores, masks, glob


def iter_synthetic(
    spec: SynthSpec, chunk_tokens: int = 256, *, with_logits: bool = True, with_global: bool = False
) -> Iterator[dict[str, np.ndarray]]:
    """Yield blocks of synthetic tokens: masks bool (T, L, I), per-token fields, and optionally logits
    float16 (T, L, I) and `global_masks` bool (T, L, I): global top-k at the same density, k·I/B per layer,
    selected from the same scores (so drawing them once serves both).

    Blocks hold at most `chunk_tokens` tokens and about BLOCK_BYTES of masks (fewer tokens for big models).
    """
    rng = np.random.default_rng(spec.seed)
    source = _ScoreSource(spec, rng)
    vocab_rng = np.random.default_rng(spec.seed + 1)
    seq, pos, dec = _token_arrays(spec)
    chunk_tokens = max(1, min(chunk_tokens, BLOCK_BYTES // (spec.layers * spec.intermediate)))
    for lo in range(0, len(seq), chunk_tokens):
        hi = min(lo + chunk_tokens, len(seq))
        scores, masks, glob = _draw_block(spec, source, seq[lo:hi], with_logits, with_global)
        block = {
            "seq_id": seq[lo:hi],
            "position": pos[lo:hi],
            "is_decode": dec[lo:hi],
            "token_id": vocab_rng.integers(0, 32000, size=hi - lo, dtype=np.int32),
            "masks": masks,
        }
        if with_logits:
            block["logits"] = scores
        if with_global:
            block["global_masks"] = glob
        yield block


GLOBAL_TOPK_STORE = "global_topk"  # sub-store of a synthetic trace: its global top-k masks


def write_synthetic(
    spec: SynthSpec,
    path,
    *,
    with_logits: bool = False,
    force: bool = False,
    chunk_tokens: int = 1024,
    with_global: bool = True,
) -> int:
    """Write a synthetic trace store at `path`; returns the number of tokens written.

    with_global: also write the global top-k masks at the same density, selected from the same scores, as
    a trace store of its own at `path/global_topk`. The simulator's global top-k baseline then reads them
    instead of re-drawing every score (which costs more than the whole simulation at 7B scale).
    """
    with TraceWriter.create(
        path, spec.meta(), with_logits=with_logits, chunk_tokens=chunk_tokens, force=force
    ) as w:
        g = None
        if with_global and spec.kind != "global_topk":
            meta = dataclasses.replace(spec.meta(), source=f"synthetic:{spec.kind} | global_topk")
            g = TraceWriter.create(Path(path) / GLOBAL_TOPK_STORE, meta, chunk_tokens=chunk_tokens)
        try:
            for block in iter_synthetic(spec, with_logits=with_logits, with_global=g is not None):
                fields = {name: block[name] for name in ("seq_id", "position", "token_id", "is_decode")}
                if g is not None:
                    g.append(block["global_masks"], **fields)
                w.append(block["masks"], logits=block.get("logits"), **fields)
        finally:
            if g is not None:
                g.close()
        return w.num_tokens
