"""Steps: how a trace's tokens group into what one forward pass of a serving accelerator processes.

A decode step is a batch of up to `batch` decode tokens of *distinct* sequences at the same decode step —
consecutive decode tokens in processing order, until a sequence repeats (its next token needs this step's
output, so it belongs to the next step), the batch is full, or a prefill token intervenes. Sequences may join
and leave between steps (continuous batching). Consecutive prefill tokens of one sequence form chunks of
`prefill_chunk` tokens. Used by the simulator (codesign/sim/engine.py) and by `trace info`'s batch unions.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _step_starts(is_decode, seq_id, batch, prefill_chunk, out):
    """Fill `out` with step starts (see step_starts); returns how many. One pass; a decode step checks the
    sequences already in it (≤ batch of them), so O(tokens × batch)."""
    n = is_decode.shape[0]
    count = 0
    start = 0
    for i in range(n):
        new = i == 0 or is_decode[i] != is_decode[i - 1]
        if not new and not is_decode[i]:  # prefill: chunks of one sequence
            new = seq_id[i] != seq_id[i - 1] or i - start >= prefill_chunk
        elif not new:  # decode: distinct sequences of one decode step, at most `batch`
            new = i - start >= batch
            j = start
            while not new and j < i:
                new = seq_id[j] == seq_id[i]
                j += 1
        if new:
            out[count] = i
            count += 1
            start = i
    return count


def step_starts(is_decode: np.ndarray, seq_id: np.ndarray, batch: int, prefill_chunk: int) -> np.ndarray:
    """Index of the first token of every step (see module docstring)."""
    out = np.empty(len(is_decode), dtype=np.int64)
    n = _step_starts(np.ascontiguousarray(is_decode, dtype=np.bool_), np.ascontiguousarray(seq_id, dtype=np.int64),
                     int(batch), int(prefill_chunk), out)  # fmt: skip
    return out[:n]


def decode_concurrency(is_decode: np.ndarray, seq_id: np.ndarray) -> int:
    """The most sequences decoding at one decode step (the largest batch the tokens can form)."""
    n = len(is_decode)
    starts = step_starts(is_decode, seq_id, max(n, 1), 1)
    sizes = np.diff(np.append(starts, n))
    decode = np.asarray(is_decode, dtype=bool)[starts] if n else np.zeros(0, bool)
    return int(sizes[decode].max()) if decode.any() else 0
