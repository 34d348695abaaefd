"""The `ideal` DRAM model: bytes ÷ bandwidth plus one unloaded latency, no rows, banks or activation limits.

Kept beside `bank_timing` as the ablation the reports can quote ("what does the DRAM model add over
bytes / peak bandwidth?"). Same contract, parameters and state as every DRAM kernel (see base.py):

    time = stretch(tRCD + tCL + (ceil(bursts / C) − 1) × max(burst, tCCD_S) + burst)

i.e. the bursts spread perfectly over all C channels after one activation; refresh stretches it as in
bank_timing. Every burst counts as a row hit (there are no rows); the state is only the call counter.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from codesign.sim.dram.bank_stream import _div, _log2_or_minus1
from codesign.sim.dram.bank_timing import _refresh_stretch_ps, refresh_stretch_ps
from codesign.sim.dram.params import (
    P_BANKS,
    P_BURST_BYTES,
    P_BURST_PS,
    P_BUS_PS,
    P_CHANNELS,
    P_CL_PS,
    P_RCD_PS,
    P_REFI_PS,
    P_RFC_PS,
)


@njit(cache=True)
def service_requests_ideal(starts_bytes, lengths_bytes, n, params, state):
    """bytes ÷ bandwidth + unloaded latency. -> (time_ns, bytes_moved, row_hits, row_misses)."""
    C = np.int64(params[P_CHANNELS])
    BB = np.int64(params[P_BURST_BYTES])
    counter = 2 * C * np.int64(params[P_BANKS])
    state[counter] += 1
    bursts = np.int64(0)
    sh = _log2_or_minus1(BB)  # shift instead of an int64 division per request (their main cost)
    for i in range(min(n, len(starts_bytes), len(lengths_bytes))):  # never read past the buffers
        s = np.int64(starts_bytes[i])
        length = np.int64(lengths_bytes[i])
        if length > 0:
            bursts += _div(s + length + BB - 1, BB, sh) - _div(s, BB, sh)
    if bursts == 0:
        return 0.0, np.int64(0), np.int64(0), np.int64(0)
    per_channel = (bursts + C - 1) // C
    total = (
        np.int64(params[P_RCD_PS])
        + np.int64(params[P_CL_PS])
        + (per_channel - 1) * np.int64(params[P_BUS_PS])
        + np.int64(params[P_BURST_PS])
    )
    total = _refresh_stretch_ps(total, np.int64(params[P_REFI_PS]), np.int64(params[P_RFC_PS]))
    return total / 1000.0, bursts * BB, bursts, np.int64(0)


def service_requests_ideal_py(starts_bytes, lengths_bytes, n, params, state):
    """Plain-Python twin of `service_requests_ideal`."""
    C, BB = int(params[P_CHANNELS]), int(params[P_BURST_BYTES])
    state[2 * C * int(params[P_BANKS])] += 1
    bursts = sum(
        -(-(int(s) + int(length)) // BB) - int(s) // BB
        for s, length in zip(starts_bytes[:n], lengths_bytes[:n], strict=False)  # n may exceed a buffer
        if length > 0
    )
    if bursts == 0:
        return 0.0, 0, 0, 0
    total = int(params[P_RCD_PS]) + int(params[P_CL_PS]) + (-(-bursts // C) - 1) * int(params[P_BUS_PS])
    total = refresh_stretch_ps(total + int(params[P_BURST_PS]), int(params[P_REFI_PS]), int(params[P_RFC_PS]))
    return total / 1000.0, bursts * BB, bursts, 0
