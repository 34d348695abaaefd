"""Re-select a recorded trace at another (B, k) from its stored predictor logits, offline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from codesign.errors import TraceError
from codesign.trace.store import TraceMeta, TraceReader, TraceWriter
from codesign.trace.synth import bank_topk_mask, global_topk_mask


def reselect(logits: np.ndarray, bank_size: int, k: int, *, global_topk: bool = False) -> np.ndarray:
    """bool masks (..., I) from logits (..., I): k per bank of `bank_size`, or k·I/B over the whole layer."""
    I = logits.shape[-1]
    scores = logits.astype(np.float32)
    if global_topk:
        return global_topk_mask(scores, kept=I // bank_size * k)
    return bank_topk_mask(scores, bank_size, k)


def rebanked_meta(meta: TraceMeta, bank_size: int, k: int, global_topk: bool) -> TraceMeta:
    mode = "global_topk" if global_topk else "bank_topk"
    return dataclasses.replace(
        meta,
        bank_size=bank_size,
        k=k,
        k_per_layer=None,
        source=f"{meta.source} | rebank:{mode}:{k}/{bank_size}",
        extra={**meta.extra, "rebanked_from": {"bank_size": meta.bank_size, "k": meta.k, "mode": mode}},
        created_at="",
    )


def rebank_trace(
    reader: TraceReader, out, *, bank_size: int, k: int, global_topk: bool = False, force: bool = False
) -> int:
    """Write a new store whose masks are re-selected from `reader`'s logits; returns tokens written."""
    if not reader.has_logits:
        raise TraceError(f"{reader.path} stores no logits, so it cannot be re-selected at another (B, k)")
    I = reader.meta.intermediate
    if bank_size <= 0 or I % bank_size:
        raise TraceError(f"bank size {bank_size} does not divide the trace's intermediate size {I}")
    if not 0 < k <= bank_size:
        raise TraceError(f"k must be in 1..{bank_size}, got {k}")
    src, dst = reader.path.resolve(), Path(out).resolve()  # symlinks and relative paths: the same store
    if dst == src or src in dst.parents or dst in src.parents:
        raise TraceError(
            f"rebank output {out} is (or holds) the source store {reader.path}: choose another OUT"
        )
    meta = rebanked_meta(reader.meta, bank_size, k, global_topk)
    with TraceWriter.create(out, meta, with_logits=True, chunk_tokens=reader.chunk_tokens, force=force) as w:
        for chunk in reader.iter_chunks():
            masks = reselect(chunk.logits, bank_size, k, global_topk=global_topk)
            w.append(
                masks,
                seq_id=chunk.seq_id,
                position=chunk.position,
                token_id=chunk.token_id,
                is_decode=chunk.is_decode,
                logits=chunk.logits,
            )
        return w.num_tokens
