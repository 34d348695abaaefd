"""Streaming statistics of a routing trace (`codesign trace info`): density, bank load, reuse, batch union."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from codesign.errors import TraceError
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
    union_density: dict[int, float]  # batch size b → mean fraction of channels kept by any of b tokens
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
    prev: dict[int, np.ndarray] = {}
    n_prefill = n_decode = 0
    seqs: set[int] = set()
    # Batch unions are taken over consecutive decode tokens (concurrent requests in serving order); a chunk
    # size that is a multiple of every batch keeps groups from straddling chunks.
    step = chunk_tokens - chunk_tokens % int(np.lcm.reduce(list(batches)))
    for chunk in reader.iter_chunks(max(step, max(batches)), with_logits=False):
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
        decode = masks[chunk.is_decode]
        for b in batches:
            n = (len(decode) // b) * b
            if n:
                groups = decode[:n].reshape(n // b, b, L, I).any(axis=1)  # (G, L, I)
                union_sum[b] += float(groups.mean(axis=(1, 2)).sum())
                union_groups[b] += n // b
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
