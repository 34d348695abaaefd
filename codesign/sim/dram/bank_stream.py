"""The `bank_stream` DRAM model: bank_timing's address mapping in closed form, O(requests + channels) per call.

An approximation of `bank_timing` (same parameters, same address mapping) for long traces, where
bank_timing's cost — one step per (channel, row) visit, ≈ 180 K per Qwen2.5-7B layer-step — dominates the
simulator. Per call it counts, per channel c, exactly the bursts mapped to c, and the row activations as
the (request, row) pairs of c (a request that touches a row of c needs one ACT there), then

    time_c = first + max((bursts_c − 1) × max(burst, tCCD_S), (acts_c − 1) × max(tRRD_S, ⌈tFAW / 4⌉)) + burst
    first  = tRCD + tCL, plus tRP when an earlier call used channel c (its rows may be open)

and the call takes the slowest channel, stretched by refresh as in bank_timing. Every request's per-channel
bursts and rows form a periodic pattern over the channels (a request of n interleave chunks gives every
channel ⌊n / C⌋ chunks and a cyclic run of n mod C channels one more), so a request is O(1): difference
arrays over the channels, one prefix sum per call.

What it approximates (vs bank_timing): no open-row state across or within calls (two requests touching the
same row each pay an ACT: misses can only be over-counted, never hidden); no per-bank tRC / tRAS (a channel
is bus- or ACT-rate-bound, never bank-bound: random reads that keep hitting one bank are too fast); the bus
and ACT limits overlap perfectly instead of FCFS. Measured deviation from bank_timing: docs/HWCONFIG.md.

State: the first C·NB entries stay −1 (no open rows are tracked); entry C·NB + c is the last call that used
channel c; the last entry is the call counter (same length as bank_timing's state).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from codesign.sim.dram.bank_timing import _refresh_stretch_ps, refresh_stretch_ps
from codesign.sim.dram.params import (
    P_BANKS,
    P_BURST_BYTES,
    P_BURST_PS,
    P_BUS_PS,
    P_CHANNELS,
    P_CL_PS,
    P_FAW_PS,
    P_INTERLEAVE_BYTES,
    P_RCD_PS,
    P_REFI_PS,
    P_RFC_PS,
    P_ROW_BYTES,
    P_RP_PS,
    P_RRD_PS,
)


@njit(cache=True, inline="always")
def _log2_or_minus1(d):
    """log2(d) for a power of two d > 0, else −1: lets the kernel shift instead of divide (int64 division
    dominated its cost)."""
    if d <= 0 or (d & (d - 1)) != 0:
        return np.int64(-1)
    sh = np.int64(0)
    while (np.int64(1) << sh) < d:
        sh += 1
    return sh


@njit(cache=True, inline="always")
def _div(x, d, sh):
    """x // d for x ≥ 0 (a shift when d is a power of two)."""
    return x >> sh if sh >= 0 else x // d


@njit(cache=True, inline="always")
def _add_cyclic(diff, C, first, count, value):
    """diff (C + 1) += value on the cyclic channel run [first, first + count), 0 ≤ count < C.

    Branch-free (the wrap is data-dependent, a branch mispredicts half the time): a wrapping run is
    [first, C) plus [0, end − C); diff[C] is a sentinel no prefix sum reads.
    """
    end = first + count
    wrap = np.int64(end > C)
    diff[first] += value
    diff[end - wrap * C] -= value
    diff[0] += wrap * value


@njit(cache=True)
def service_requests_stream(starts_bytes, lengths_bytes, n, params, state):
    """Serve n byte ranges issued at t = 0. -> (time_ns, bytes_moved, row_hits, row_misses). See module doc."""
    C = np.int64(params[P_CHANNELS])
    NB = np.int64(params[P_BANKS])
    BB = np.int64(params[P_BURST_BYTES])
    Gb = np.int64(params[P_INTERLEAVE_BYTES]) // BB  # bursts per interleave chunk
    Hc = C * (np.int64(params[P_ROW_BYTES]) // np.int64(params[P_INTERLEAVE_BYTES]))  # chunks per row group
    slots = C * NB
    call = state[2 * slots] + 1
    state[2 * slots] = call
    burst_diff = np.zeros(C + 1, np.int64)  # cyclic runs of one more chunk (in bursts)
    burst_point = np.zeros(C, np.int64)  # partial first / last chunks
    act_diff = np.zeros(C + 1, np.int64)
    burst_all = np.int64(0)  # added to every channel
    act_all = np.int64(0)
    sh_bb, sh_gb, sh_c, sh_hc = (
        _log2_or_minus1(BB),
        _log2_or_minus1(Gb),
        _log2_or_minus1(C),
        _log2_or_minus1(Hc),
    )
    for i in range(min(n, len(starts_bytes), len(lengths_bytes))):  # never read past the buffers
        length = np.int64(lengths_bytes[i])
        if length <= 0:
            continue
        s = np.int64(starts_bytes[i])
        sb = _div(s, BB, sh_bb)
        eb = _div(s + length + BB - 1, BB, sh_bb)
        g0 = _div(sb, Gb, sh_gb)
        g1 = _div(eb - 1, Gb, sh_gb)
        nch = g1 - g0 + 1
        q0 = _div(g0, C, sh_c)
        c0 = g0 - q0 * C
        full = _div(nch, C, sh_c)
        burst_all += full * Gb
        _add_cyclic(burst_diff, C, c0, nch - full * C, Gb)  # a run of 0 adds nothing
        burst_point[c0] -= sb - g0 * Gb
        burst_point[g1 - _div(g1, C, sh_c) * C] -= (g1 + 1) * Gb - eb
        # rows: chunk g lies in row group g // Hc; a group's chunks cover each channel once every C chunks.
        # Branch-free (min / max / 0-1 factors): which case a request falls in is data-dependent.
        h0 = _div(g0, Hc, sh_hc)
        h1 = _div(g1, Hc, sh_hc)
        first_len = min(nch, (h0 + 1) * Hc - g0)  # chunks in the first row group
        last_len = (g1 - h1 * Hc + 1) * np.int64(h1 > h0)  # chunks in the last, if not the first
        act_all += max(h1 - h0 - 1, np.int64(0))  # whole row groups between them: one row per channel
        first_all = np.int64(first_len >= C)
        last_all = np.int64(last_len >= C)
        act_all += first_all + last_all
        _add_cyclic(act_diff, C, c0, first_len * (1 - first_all), 1)
        _add_cyclic(act_diff, C, np.int64(0), last_len * (1 - last_all), 1)  # a row group starts at channel 0
    burst = np.int64(params[P_BURST_PS])
    bus = np.int64(params[P_BUS_PS])
    act_gap = max(np.int64(params[P_RRD_PS]), (np.int64(params[P_FAW_PS]) + 3) // 4)
    first = np.int64(params[P_RCD_PS]) + np.int64(params[P_CL_PS])
    rp = np.int64(params[P_RP_PS])
    total = np.int64(0)
    bursts = np.int64(0)
    acts = np.int64(0)
    run_b = np.int64(0)
    run_a = np.int64(0)
    for c in range(C):
        run_b += burst_diff[c]
        run_a += act_diff[c]
        b = burst_all + run_b + burst_point[c]
        if b <= 0:
            continue
        a = act_all + run_a
        t = first + (rp if state[slots + c] > 0 else np.int64(0))
        t += max((b - 1) * bus, (a - 1) * act_gap) + burst
        total = max(total, t)
        state[slots + c] = call
        bursts += b
        acts += a
    total = _refresh_stretch_ps(total, np.int64(params[P_REFI_PS]), np.int64(params[P_RFC_PS]))
    return total / 1000.0, bursts * BB, bursts - acts, acts


def service_requests_stream_py(starts_bytes, lengths_bytes, n, params, state):
    """Plain-Python twin of `service_requests_stream`, burst by burst (no closed forms); identical results."""
    C, NB, R, G, BB = (
        int(params[i]) for i in (P_CHANNELS, P_BANKS, P_ROW_BYTES, P_INTERLEAVE_BYTES, P_BURST_BYTES)
    )
    slots = C * NB
    call = int(state[2 * slots]) + 1
    state[2 * slots] = call
    bursts, acts = [0] * C, [0] * C
    for s, length in zip(starts_bytes[:n], lengths_bytes[:n], strict=False):  # n may exceed a buffer
        s, length = int(s), int(length)
        if length <= 0:
            continue
        rows = set()
        for addr in range(s - s % BB, s + length, BB):
            chunk = addr // G
            ch = chunk % C
            local = (chunk // C) * G + addr % G
            bursts[ch] += 1
            rows.add((ch, local // R))
        for ch, _row in rows:
            acts[ch] += 1
    bus, burst = int(params[P_BUS_PS]), int(params[P_BURST_PS])
    act_gap = max(int(params[P_RRD_PS]), -(-int(params[P_FAW_PS]) // 4))
    total = 0
    for c in range(C):
        if bursts[c] == 0:
            continue
        t = (
            int(params[P_RCD_PS])
            + int(params[P_CL_PS])
            + (int(params[P_RP_PS]) if state[slots + c] > 0 else 0)
        )
        total = max(total, t + max((bursts[c] - 1) * bus, (acts[c] - 1) * act_gap) + burst)
        state[slots + c] = call
    total = refresh_stretch_ps(total, int(params[P_REFI_PS]), int(params[P_RFC_PS]))
    return total / 1000.0, sum(bursts) * BB, sum(bursts) - sum(acts), sum(acts)
