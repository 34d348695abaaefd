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

from collections.abc import Iterator
from dataclasses import dataclass

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
            source=f"synthetic:{self.kind}",
            synthetic=True,
            extra={"synth": {k: getattr(self, k) for k in self.__dataclass_fields__}},
        )


def bank_topk_mask(scores: np.ndarray, bank_size: int, k: int) -> np.ndarray:
    """bool mask keeping the k largest scores in every bank of `bank_size` along the last axis.

    Ties go to the lower channel index (stable sort), matching the torch and Triton references.
    """
    *lead, I = scores.shape
    banks = scores.reshape(*lead, I // bank_size, bank_size)  # (..., nb, B)
    order = np.argsort(-banks, axis=-1, kind="stable")[..., :k]
    mask = np.zeros(banks.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=-1)
    return mask.reshape(*lead, I)


def global_topk_mask(scores: np.ndarray, kept: int) -> np.ndarray:
    """bool mask keeping the `kept` largest scores along the last axis (ties to the lower index)."""
    order = np.argsort(-scores, axis=-1, kind="stable")[..., :kept]
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=-1)
    return mask


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


def _token_order(spec: SynthSpec) -> Iterator[tuple[int, int, bool]]:
    """(seq, position, is_decode) in processing order: prefills one sequence at a time, then interleaved decode."""
    for seq in range(spec.sequences):
        for pos in range(spec.prefill_tokens):
            yield seq, pos, False
    for step in range(spec.decode_tokens):
        for seq in range(spec.sequences):
            yield seq, spec.prefill_tokens + step, True


def iter_synthetic(spec: SynthSpec, chunk_tokens: int = 256) -> Iterator[dict[str, np.ndarray]]:
    """Yield blocks of synthetic tokens: masks bool (T, L, I), logits float16 (T, L, I), per-token fields."""
    rng = np.random.default_rng(spec.seed)
    source = _ScoreSource(spec, rng)
    vocab_rng = np.random.default_rng(spec.seed + 1)
    block: list[tuple[int, int, bool, np.ndarray, np.ndarray]] = []
    for seq, pos, dec in _token_order(spec):
        scores, mask = source.draw(seq)
        block.append((seq, pos, dec, scores, mask))
        if len(block) == chunk_tokens:
            yield _stack(block, vocab_rng)
            block = []
    if block:
        yield _stack(block, vocab_rng)


def _stack(block, vocab_rng) -> dict[str, np.ndarray]:
    return {
        "seq_id": np.array([b[0] for b in block], dtype=np.int32),
        "position": np.array([b[1] for b in block], dtype=np.int32),
        "is_decode": np.array([b[2] for b in block], dtype=bool),
        "token_id": vocab_rng.integers(0, 32000, size=len(block), dtype=np.int32),
        "logits": np.stack([b[3] for b in block]).astype(np.float16),
        "masks": np.stack([b[4] for b in block]),
    }


def write_synthetic(
    spec: SynthSpec, path, *, with_logits: bool = False, force: bool = False, chunk_tokens: int = 1024
) -> int:
    """Write a synthetic trace store at `path`; returns the number of tokens written."""
    with TraceWriter.create(
        path, spec.meta(), with_logits=with_logits, chunk_tokens=chunk_tokens, force=force
    ) as w:
        for block in iter_synthetic(spec):
            logits = block.pop("logits")
            w.append(block.pop("masks"), logits=logits if with_logits else None, **block)
        return w.num_tokens
