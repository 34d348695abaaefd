"""Streaming statistics of a routing trace (`codesign trace info`): density, bank load, reuse, batch union."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from codesign.errors import TraceError
from codesign.trace.steps import step_starts
from codesign.trace.store import TraceReader

DEFAULT_BATCHES = (1, 2, 4, 8, 16)


@dataclass
class TraceStats:
    """Summary of a trace at one bank size; every field is computed from the stored masks."""

    tokens: int
    prefill_tokens: int
    decode_tokens: int
    sequences: int
    bank_size: int
    density_per_layer: list[float]
    bank_load_histogram: list[int]  # counts of (token, layer, bank) with j kept channels, j = 0..B
    reuse_per_layer: list[float]  # kept channels shared with the sequence's previous token / kept channels
    union_density: dict[
        int, float
    ]  # batch b → mean fraction of channels kept by any token of a decode step of b
    union_density_uniform: dict[int, float] = field(default_factory=dict)  # 1 − (1 − d)^b for comparison

    @property
    def density(self) -> float:
        return float(np.mean(self.density_per_layer))

    def to_dict(self) -> dict:
        return {
            "tokens": self.tokens,
            "prefill_tokens": self.prefill_tokens,
            "decode_tokens": self.decode_tokens,
            "sequences": self.sequences,
            "bank_size": self.bank_size,
            "density": self.density,
            "density_per_layer": self.density_per_layer,
            "bank_load_histogram": self.bank_load_histogram,
            "reuse_per_layer": self.reuse_per_layer,
            "union_density": {str(b): v for b, v in self.union_density.items()},
            "union_density_uniform": {str(b): v for b, v in self.union_density_uniform.items()},
        }


def trace_stats(
    reader: TraceReader, *, bank_size: int | None = None, batches=DEFAULT_BATCHES, chunk_tokens: int = 1024
) -> TraceStats:
    """Stream the trace once and summarise it; `bank_size` re-banks (default: the recorded B)."""
    meta = reader.meta
    B = bank_size or meta.bank_size
    if B <= 0 or meta.intermediate % B:
        raise TraceError(f"bank size {B} does not divide the trace's intermediate size {meta.intermediate}")
    if reader.num_tokens == 0:
        raise TraceError(f"{reader.path} holds no committed tokens")
    L, I = meta.layers, meta.intermediate
    kept_per_layer = np.zeros(L, dtype=np.int64)
    hist = np.zeros(B + 1, dtype=np.int64)
    reuse_shared = np.zeros(L, dtype=np.int64)
    reuse_kept = np.zeros(L, dtype=np.int64)
    union_sum = {b: 0.0 for b in batches}
    union_groups = {b: 0 for b in batches}
    pending: dict[
        int, tuple
    ] = {}  # per batch: the open step's (masks, is_decode, seq_id), completed next chunk
    prev: dict[int, np.ndarray] = {}
    n_prefill = n_decode = 0
    seqs: set[int] = set()
    # Batch unions are taken over the simulator's decode steps (codesign/trace/steps.py): b decode tokens of
    # distinct sequences at one decode step; only full steps of exactly b count. A step may straddle chunks:
    # the last (open) step of each chunk is carried into the next.
    for chunk in reader.iter_chunks(chunk_tokens, with_logits=False):
        masks = chunk.masks()  # (T, L, I)
        kept_per_layer += masks.sum(axis=(0, 2))
        loads = masks.reshape(masks.shape[0], L, I // B, B).sum(axis=-1)
        hist += np.bincount(loads.ravel(), minlength=B + 1)
        n_decode += int(chunk.is_decode.sum())
        n_prefill += int((~chunk.is_decode).sum())
        seqs.update(np.unique(chunk.seq_id).tolist())
        for t in range(masks.shape[0]):
            s = int(chunk.seq_id[t])
            if s in prev:
                reuse_shared += (masks[t] & prev[s]).sum(axis=-1)
                reuse_kept += masks[t].sum(axis=-1)
            prev[s] = masks[t]
        keys = (masks, np.asarray(chunk.is_decode, dtype=bool), np.asarray(chunk.seq_id))
        for b in batches:
            m, dec, seq = (
                (np.concatenate([p, k]) for p, k in zip(pending[b], keys, strict=True))
                if b in pending
                else keys
            )
            starts = step_starts(dec, seq, b, 1)
            full = [
                (lo, hi) for lo, hi in zip(starts[:-1], starts[1:], strict=True) if hi - lo == b and dec[lo]
            ]
            for lo, hi in full:
                union_sum[b] += float(m[lo:hi].any(axis=0).mean())
                union_groups[b] += 1
            cut = starts[-1] if len(starts) else len(dec)
            pending[b] = (m[cut:], dec[cut:], seq[cut:])
    for b, (m, dec, _) in pending.items():  # the trace's last step
        if len(dec) == b and dec[0]:
            union_sum[b] += float(m.any(axis=0).mean())
            union_groups[b] += 1
    density = kept_per_layer / (reader.num_tokens * I)
    d = float(density.mean())
    return TraceStats(
        tokens=reader.num_tokens,
        prefill_tokens=n_prefill,
        decode_tokens=n_decode,
        sequences=len(seqs),
        bank_size=B,
        density_per_layer=density.tolist(),
        bank_load_histogram=hist.tolist(),
        reuse_per_layer=np.divide(reuse_shared, np.maximum(reuse_kept, 1)).tolist(),
        union_density={b: union_sum[b] / union_groups[b] for b in batches if union_groups[b]},
        union_density_uniform={b: 1.0 - (1.0 - d) ** b for b in batches},
    )
