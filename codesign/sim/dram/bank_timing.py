"""The `bank_timing` DRAM model: address mapping, row buffers, bank parallelism and timing limits.

Contract (shared by every DRAM kernel, see base.py): the n requests are contiguous byte ranges (channel
bundles of the bundled layout) issued together at t = 0; the call returns when the last byte has arrived.

Address mapping (row : bank : column within a channel, channels interleaved every `interleave_bytes`):

    chunk   = addr // G                 G = interleave_bytes (a multiple of the burst)
    channel = chunk % C                 C = channels of all stacks
    local   = (chunk // C) * G + addr % G        # the channel's own, contiguous address space
    slot    = local // R                R = row_bytes (a multiple of the burst)
    bank    = slot % NB,  row = slot // NB      NB = banks_per_channel

so a request is, per channel, one contiguous local range, which splits into "row visits" (bursts of one
request to one row of one bank). The cost is O(requests × rows touched + channels), never O(bursts).

Per channel, visits are served first come first served in request order (open-page policy):
- a visit to the open row of its bank is a row hit; otherwise the bank is (pre)charged and activated:
  ACT at max(bank ready, previous ACT + tRRD_S, 4th previous ACT + tFAW); bank ready = max(ACT + tRC,
  max(ACT + tRAS, last RD + tRTP) + tRP) after a visit, tRP at t = 0 for a row left open by an earlier call;
- its bursts leave the data bus back to back, each `max(burst, tCCD_S)` after the previous one, the first
  no earlier than (ACT + tRCD, or t = 0 for a row already open) + tCL and than the bus is free;
- the channel is done when its last burst has arrived; the call when its slowest channel is.
Refresh is a bandwidth derate: the whole service time is stretched by 1 / (1 − tRFC/tREFI) (ceil to ps).
Not modelled: tCCD_L (bank groups are assumed interleaved below the column bits), writes, the command bus,
reordering beyond FCFS. Row hits/misses are counted per burst (a miss = a burst that needed an ACT).

`service_requests_py` is an independent per-burst twin (no row-visit grouping), equal to the njit kernel
exactly; the tests check that on random request lists.

State vector (int64, length 2·C·NB + 1, from `new_state`): [0, C·NB) the open row of each (channel, bank),
−1 = closed; [C·NB, 2·C·NB) the call that last touched each bank (lazy per-call scratch); [-1] a call counter.
A state belongs to one DRAM and must not be shared by concurrent calls.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from codesign.sim.dram.params import (
    P_BANKS,
    P_BURST_BYTES,
    P_BURST_PS,
    P_BUS_PS,
    P_CHANNELS,
    P_CL_PS,
    P_FAW_PS,
    P_INTERLEAVE_BYTES,
    P_RAS_PS,
    P_RC_PS,
    P_RCD_PS,
    P_REFI_PS,
    P_RFC_PS,
    P_ROW_BYTES,
    P_RP_PS,
    P_RRD_PS,
    P_RTP_PS,
)

_NEVER = -(1 << 60)  # "activated long ago": every ACT-relative limit is already met


def refresh_stretch_ps(total_ps: int, refi_ps: int, rfc_ps: int) -> int:
    """total / (1 − tRFC/tREFI), rounded up to the ps, in integers (no float rounding differences)."""
    if rfc_ps <= 0 or total_ps <= 0:
        return total_ps
    available = refi_ps - rfc_ps
    return total_ps + (total_ps * rfc_ps + available - 1) // available


_refresh_stretch_ps = njit(cache=True)(refresh_stretch_ps)


@njit(cache=True)
def service_requests(starts_bytes, lengths_bytes, n, params, state):
    """Serve n byte ranges issued at t = 0. -> (time_ns, bytes_moved, row_hits, row_misses). See module doc."""
    C = np.int64(params[P_CHANNELS])
    NB = np.int64(params[P_BANKS])
    R = np.int64(params[P_ROW_BYTES])
    G = np.int64(params[P_INTERLEAVE_BYTES])
    BB = np.int64(params[P_BURST_BYTES])
    burst = np.int64(params[P_BURST_PS])
    bus = np.int64(params[P_BUS_PS])
    rcd = np.int64(params[P_RCD_PS])
    cl = np.int64(params[P_CL_PS])
    rp = np.int64(params[P_RP_PS])
    ras = np.int64(params[P_RAS_PS])
    rc = np.int64(params[P_RC_PS])
    rtp = np.int64(params[P_RTP_PS])
    rrd = np.int64(params[P_RRD_PS])
    faw = np.int64(params[P_FAW_PS])
    slots = C * NB
    call = state[2 * slots] + 1
    state[2 * slots] = call

    # per-bank scratch, valid where state[slots + key] == call (initialised on first touch: O(rows touched))
    next_act = np.empty(slots, np.int64)
    act_time = np.empty(slots, np.int64)
    col_ready = np.empty(slots, np.int64)
    # per-channel scratch: O(channels)
    bus_free = np.zeros(C, np.int64)
    last_act = np.zeros(C, np.int64)
    act_count = np.zeros(C, np.int64)
    ring = np.zeros(4 * C, np.int64)  # the channel's last four ACT times

    # Work in burst units (G and R are multiples of the burst): no division inside the row-visit loop.
    Gb = G // BB  # bursts per interleave chunk
    Rb = R // BB  # bursts per row
    bursts = np.int64(0)
    hits = np.int64(0)
    misses = np.int64(0)
    for i in range(min(n, len(starts_bytes), len(lengths_bytes))):  # never read past the buffers
        length = np.int64(lengths_bytes[i])
        if length <= 0:
            continue
        s = np.int64(starts_bytes[i])
        sb = s // BB  # first burst
        eb = (s + length + BB - 1) // BB  # one past the last burst
        g0 = sb // Gb
        g1 = (eb - 1) // Gb
        nchunks = g1 - g0 + 1
        full, rem = nchunks // C, nchunks % C  # channel offset j holds full + (j < rem) chunks
        j_last = (nchunks - 1) % C  # the offset holding the last (possibly partial) chunk
        ch, q = g0 % C, g0 // C  # channel of chunk g0 + j, and that chunk's index inside the channel
        cached_q = np.int64(-1)
        cached_slot = cached_bank = cached_row = np.int64(0)
        for j in range(min(nchunks, C)):
            k = full + (1 if j < rem else 0)
            hi = (q + k - 1) * Gb + (
                eb - g1 * Gb if j == j_last else Gb
            )  # channel-local burst range [lo, hi)
            if j == 0:
                lo = q * Gb + (sb - g0 * Gb)
                slot = lo // Rb
                bank, row = slot % NB, slot // NB
            else:
                lo = q * Gb
                if q != cached_q:  # offsets j ≥ 1 share one of at most two q values: divide once per q
                    cached_q, cached_slot = q, lo // Rb
                    cached_bank, cached_row = cached_slot % NB, cached_slot // NB
                slot, bank, row = cached_slot, cached_bank, cached_row
            # this channel's scalars live in locals for the visit loop (arrays may alias: no reloads)
            bus_free_c, last_act_c, count_c = bus_free[ch], last_act[ch], act_count[ch]
            a = lo
            while a < hi:
                b = min(hi, (slot + 1) * Rb)
                nb = b - a  # bursts of this row visit
                key = ch * NB + bank
                if state[slots + key] != call:  # first touch of this bank in this call
                    state[slots + key] = call
                    ready = rp if state[key] >= 0 else np.int64(0)  # a row left open must be precharged
                    opened, rd_ready = _NEVER, np.int64(0)
                else:
                    ready, opened, rd_ready = next_act[key], act_time[key], col_ready[key]
                if state[key] != row:
                    t = ready
                    if count_c > 0:
                        t = max(t, last_act_c + rrd)
                    if count_c >= 4:
                        t = max(t, ring[4 * ch + (count_c & 3)] + faw)  # that slot holds ACT number count − 4
                    ring[4 * ch + (count_c & 3)] = t
                    count_c += 1
                    last_act_c = t
                    state[key] = row
                    opened, rd_ready = t, t + rcd
                    misses += 1
                    hits += nb - 1
                else:
                    hits += nb
                start = max(rd_ready + cl, bus_free_c)
                bus_free_c = start + nb * bus
                last_rd = bus_free_c - bus - cl
                next_act[key] = max(opened + rc, max(opened + ras, last_rd + rtp) + rp)
                act_time[key] = opened
                col_ready[key] = rd_ready
                bursts += nb
                a = b
                slot += 1
                bank += 1
                if bank == NB:
                    bank = 0
                    row += 1
            bus_free[ch], last_act[ch], act_count[ch] = bus_free_c, last_act_c, count_c
            ch += 1
            if ch == C:
                ch = 0
                q += 1
    return _finish(bus_free, bursts, hits, misses, bus, burst, BB, params)


@njit(cache=True)
def _finish(bus_free, bursts, hits, misses, bus, burst, BB, params):
    """The slowest channel, stretched by refresh; the result tuple of the kernel contract."""
    total = np.int64(0)
    for ch in range(bus_free.size):  # a channel's last burst ends one burst after it started
        total = max(total, bus_free[ch] - bus + burst)
    total = _refresh_stretch_ps(total, np.int64(params[P_REFI_PS]), np.int64(params[P_RFC_PS]))
    return total / 1000.0, bursts * BB, hits, misses


def service_requests_py(starts_bytes, lengths_bytes, n, params, state):
    """Plain-Python twin of `service_requests`, burst by burst; identical results, O(bursts)."""
    C, NB, R, G, BB = (
        int(params[i]) for i in (P_CHANNELS, P_BANKS, P_ROW_BYTES, P_INTERLEAVE_BYTES, P_BURST_BYTES)
    )
    burst, bus, rcd, cl = (int(params[i]) for i in (P_BURST_PS, P_BUS_PS, P_RCD_PS, P_CL_PS))
    rp, ras, rc, rtp, rrd, faw = (
        int(params[i]) for i in (P_RP_PS, P_RAS_PS, P_RC_PS, P_RTP_PS, P_RRD_PS, P_FAW_PS)
    )
    slots = C * NB
    call = int(state[2 * slots]) + 1
    state[2 * slots] = call
    bank_ready, opened_at, rd_ready = {}, {}, {}  # per (channel, bank) touched in this call
    bus_free, finish = [0] * C, [0] * C
    acts: list[list[int]] = [[] for _ in range(C)]  # every ACT time of each channel, in order
    bursts = hits = misses = 0
    for i in range(min(n, len(starts_bytes), len(lengths_bytes))):  # never read past the buffers
        s, length = int(starts_bytes[i]), int(lengths_bytes[i])
        if length <= 0:
            continue
        for addr in range(s - s % BB, s + length, BB):  # every burst the range overlaps
            chunk = addr // G
            ch = chunk % C
            local = (chunk // C) * G + addr % G
            bank, row = (local // R) % NB, (local // R) // NB
            key = ch * NB + bank
            if key not in bank_ready:
                bank_ready[key] = rp if state[key] >= 0 else 0
                opened_at[key] = _NEVER
                rd_ready[key] = 0
            if state[key] != row:
                t = bank_ready[key]
                if acts[ch]:
                    t = max(t, acts[ch][-1] + rrd)
                if len(acts[ch]) >= 4:
                    t = max(t, acts[ch][-4] + faw)
                acts[ch].append(t)
                state[key] = row
                opened_at[key], rd_ready[key] = t, t + rcd
                misses += 1
            else:
                hits += 1
            start = max(rd_ready[key] + cl, bus_free[ch])
            bus_free[ch] = start + bus
            finish[ch] = max(finish[ch], start + burst)
            bank_ready[key] = max(opened_at[key] + rc, max(opened_at[key] + ras, start - cl + rtp) + rp)
            bursts += 1
    total = refresh_stretch_ps(max(finish), int(params[P_REFI_PS]), int(params[P_RFC_PS]))
    return total / 1000.0, bursts * BB, hits, misses
