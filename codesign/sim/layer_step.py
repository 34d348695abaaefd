"""Costing layer-steps: the numba kernels that turn a layer-step's needed and missed channels into DRAM
requests and calls, SRAM port cycles, MACs and vector ops — its stage cycles — and then time them through the
stage DAG (codesign/sim/pipeline.py: stages, columns, the DAG and `schedule_layer_steps`). The stage model
is documented there; this module is its implementation.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from codesign.errors import ConfigError
from codesign.sim.dram import REGISTRY
from codesign.sim.dram.params import P_BANKS, P_CHANNELS
from codesign.sim.pipeline import (  # the constants the kernels index, as module globals (numba)
    ATTENTION,
    C_ATTN_COMPUTE,
    C_ATTN_MACS,
    C_BANK_MAX,
    C_BANK_TOTAL,
    C_COMPUTE_BUSY,
    C_DRAM_ATTN_BYTES,
    C_DRAM_BUSY,
    C_DRAM_BYTES,
    C_DRAM_FFN_BYTES,
    C_DRAM_HEAD_BYTES,
    C_DRAM_KV_READ,
    C_DRAM_KV_WRITE,
    C_DRAM_PRED_BYTES,
    C_DRAM_REQUESTS,
    C_DRAM_WRITE_BYTES,
    C_FFN_COMPUTE,
    C_FFN_FETCH,
    C_FFN_MACS,
    C_HEAD_COMPUTE,
    C_HEAD_MACS,
    C_MISS,
    C_PRED_COMPUTE,
    C_PRED_DRAM,
    C_PRED_MACS,
    C_PRED_SRAM,
    C_PREFETCH_DRAM,
    C_ROW_HITS,
    C_ROW_MISSES,
    C_SRAM_BUSY,
    C_SRAM_PRED_LINES,
    C_SRAM_READ_LINES,
    C_SRAM_WRITE_LINES,
    C_STEPS,
    C_TOKEN_CH,
    C_TOKENS,
    C_TOPK_CYCLES,
    C_UNION,
    C_VECTOR_BUSY,
    C_VECTOR_OPS,
    C_VECTOR_WORK,
    COMPUTE,
    FETCH,
    HEAD,
    IP_ATTN_BASE,
    IP_ATTN_BYTES,
    IP_B,
    IP_BUNDLE,
    IP_BYPASS,
    IP_DOUBLE_BUFFER,
    IP_EMBED_ROW,
    IP_HEAD_BASE,
    IP_HEAD_BYTES,
    IP_HEAD_MACS,
    IP_HIDDEN,
    IP_INTER,
    IP_INTERVAL,
    IP_KEEP_FILLS,
    IP_KV_BASE,
    IP_KV_ROW,
    IP_LAYER_BYTES,
    IP_LAYERS,
    IP_LINE_BYTES,
    IP_LINES,
    IP_MODEL,
    IP_MPC,
    IP_NS,
    IP_PORTS,
    IP_PRED_BASE,
    IP_PRED_BYTES,
    IP_PRED_RESIDENT,
    IP_PROJ_MACS,
    IP_RANK,
    IP_SCORE_MACS,
    IP_SPARSE,
    IP_STRIPE,
    IP_TOPK,
    IP_UNION,
    IP_VEC_CTX,
    IP_VEC_TOKEN,
    KV_MAX_ROWS,
    KV_SEQ_SLOTS,
    PRED_SRAM,
    PREDICTOR,
    PREFETCH,
    S_PORT,
    S_READ,
    S_WRITE,
    SRAM,
    ST_PREFETCH_FFN,
    TOPK,
    VECTOR,
    schedule_layer_steps,
)
from codesign.sim.residency import low_bit_index, popcount64

# The DRAM kernels the timing kernel can call, by model name: the registry's order. numba cannot cache a
# kernel that receives another njit function as an argument, so the engine dispatches on an index.
DRAM_KERNELS = tuple(REGISTRY)
_BANK_TIMING, _IDEAL, _BANK_STREAM = (DRAM_KERNELS.index(n) for n in ("bank_timing", "ideal", "bank_stream"))
_dram_bank_timing, _dram_ideal, _dram_bank_stream = (
    REGISTRY[n].kernel for n in ("bank_timing", "ideal", "bank_stream")
)
if len(DRAM_KERNELS) != 3:  # a model added to the registry needs its line in _service and order_free
    raise ImportError(f"sim/pipeline.py binds 3 DRAM kernels, the registry has {DRAM_KERNELS}")


def dram_kernel_id(model_name: str) -> int:
    if model_name not in DRAM_KERNELS:
        raise ConfigError(
            f"dram.model: {model_name!r} has no binding in the simulator engine ({', '.join(DRAM_KERNELS)})"
        )
    return DRAM_KERNELS.index(model_name)


@njit(cache=True, inline="always")
def _service(kernel_id, starts, lengths, n, params, state):
    if kernel_id == _BANK_TIMING:
        return _dram_bank_timing(starts, lengths, n, params, state)
    if kernel_id == _BANK_STREAM:
        return _dram_bank_stream(starts, lengths, n, params, state)
    return _dram_ideal(starts, lengths, n, params, state)


@njit(cache=True, inline="always")
def ceil_cycles(time_ns, frequency_ghz):
    """DRAM nanoseconds → whole clock cycles (1e-9 slack so that an exact product does not round up)."""
    if time_ns <= 0.0:
        return np.int64(0)
    return np.int64(math.ceil(time_ns * frequency_ghz - 1e-9))


@njit(cache=True, inline="always")
def _share(n, s, ns):
    """Bank s's share of n accesses dealt round-robin over ns banks (starting at bank 0)."""
    return n // ns + (1 if s < n % ns else 0)


@njit(cache=True, inline="always")
def _add_request(starts, lengths, n_req, start, length):
    if length > 0:
        starts[n_req] = start
        lengths[n_req] = length
        n_req += 1
    return n_req


# Not inlined: a layer-step makes up to three DRAM calls, and inlining the DRAM models at each of them (in
# both timing kernels) doubled the first run's compile time.
@njit(cache=True)
def _call_dram(dram_kernel, starts, lengths, n_req, dram_params, dram_state, frequency_ghz, acc):
    """One DRAM model call; counts its requests, row hits and misses in acc; returns (cycles, ns, moved)."""
    if n_req == 0:
        return np.int64(0), 0.0, np.int64(0)
    time_ns, moved, row_hits, row_misses = _service(
        dram_kernel, starts, lengths, n_req, dram_params, dram_state
    )
    acc[C_DRAM_REQUESTS] += n_req
    acc[C_ROW_HITS] += row_hits
    acc[C_ROW_MISSES] += row_misses
    return ceil_cycles(time_ns, frequency_ghz), time_ns, moved


# Not inlined, and called with int64 indices everywhere (prange's index is uint64, a constant start a literal):
# one compiled version serves the serial kernel, the parallel prefix and the parallel body.
@njit(cache=True)
def _layer_step(need, miss, tok_ch, tokens, t, l, ip, frequency_ghz, dram_kernel, dram_params, dram_state,
                step_ctx, kv_ptr, kv_seq, kv_before, kv_new, starts, lengths, bank_cycles, stage, acc_layer,
                acc_dram_ns, acc_sram, acc_bank):  # fmt: skip
    """Cost layer-step (t, l): its DRAM calls (prefetchable predictor / attention / KV / LM head traffic, then
    the FFN misses), SRAM port cycles and MACs; write its stage cycles into stage[...] and accumulate every
    count except cycles (schedule_layer_steps turns the stage cycles into time)."""
    nb, W = need.shape[2], need.shape[3]
    B, ns, lines, ports, mpc = ip[IP_B], ip[IP_NS], ip[IP_LINES], ip[IP_PORTS], ip[IP_MPC]
    bundle, hidden, rank, inter = ip[IP_BUNDLE], ip[IP_HIDDEN], ip[IP_RANK], ip[IP_INTER]
    sparse = ip[IP_SPARSE] != 0
    stripe = ip[IP_STRIPE] != 0
    bypass = ip[IP_BYPASS] != 0
    model = ip[IP_MODEL] != 0
    resident = ip[IP_PRED_RESIDENT] != 0
    a = acc_layer[l]
    # ---- prefetchable DRAM traffic: known before this layer's routing --------------------------------
    pred_bytes = ip[IP_PRED_BYTES] if sparse else 0
    n_req = 0
    if sparse and not resident:  # predictor weights, from their own region
        n_req = _add_request(starts, lengths, 0, ip[IP_PRED_BASE] + l * pred_bytes, pred_bytes)
    pred_cycles, ns_p, moved_p = _call_dram(dram_kernel, starts, lengths, n_req, dram_params, dram_state,
                                            frequency_ghz, a)  # fmt: skip
    attn_cycles = np.int64(0)
    ns_a = 0.0
    moved_a = np.int64(0)
    kv_write = 0
    ctx = step_ctx[t]
    if model:
        kv_row = ip[IP_KV_ROW]
        n_req = _add_request(starts, lengths, 0, ip[IP_ATTN_BASE] + l * ip[IP_ATTN_BYTES], ip[IP_ATTN_BYTES])
        kv_read = 0
        for i in range(kv_ptr[t], kv_ptr[t + 1]):  # one KV region per (layer, sequence)
            base = ip[IP_KV_BASE] + ((l * KV_SEQ_SLOTS + kv_seq[i] % KV_SEQ_SLOTS) * KV_MAX_ROWS) * kv_row
            n_req = _add_request(starts, lengths, n_req, base, kv_before[i] * kv_row)
            n_req = _add_request(starts, lengths, n_req, base + kv_before[i] * kv_row, kv_new[i] * kv_row)
            kv_read += kv_before[i] * kv_row
            kv_write += kv_new[i] * kv_row
        head = 0
        if l == 0:  # embedding rows of the step's tokens
            head += tokens * ip[IP_EMBED_ROW]
            n_req = _add_request(
                starts, lengths, n_req, ip[IP_HEAD_BASE] + ip[IP_HEAD_BYTES], tokens * ip[IP_EMBED_ROW]
            )
        if l == ip[IP_LAYERS] - 1:  # the LM head streams once per step
            head += ip[IP_HEAD_BYTES]
            n_req = _add_request(starts, lengths, n_req, ip[IP_HEAD_BASE], ip[IP_HEAD_BYTES])
        attn_cycles, ns_a, moved_a = _call_dram(dram_kernel, starts, lengths, n_req, dram_params, dram_state,
                                                frequency_ghz, a)  # fmt: skip
        a[C_DRAM_ATTN_BYTES] += ip[IP_ATTN_BYTES]
        a[C_DRAM_KV_READ] += kv_read
        a[C_DRAM_KV_WRITE] += kv_write
        a[C_DRAM_HEAD_BYTES] += head
    # ---- the FFN: misses → DRAM requests, SRAM port cycles --------------------------------------------
    bank_cycles[:] = 0
    read_ch = 0
    fill_ch = 0
    union_ch = 0
    miss_ch = 0
    token_ch = 0
    n_req = 0
    run_end = -2  # channel after the last one of the open request
    layer_base = l * ip[IP_LAYER_BYTES]
    s = -1  # SRAM bank of model bank j (j mod ns, without a division)
    for j in range(nb):
        s = s + 1 if s + 1 < ns else 0
        u = 0
        mch = 0
        for w in range(W):
            u += popcount64(need[t, l, j, w])
            x = miss[t, l, j, w]
            c0 = j * B + w * 64
            if x != np.uint64(0):  # fast path: the word's misses are one contiguous run (dense: all)
                lo_bit = low_bit_index(x)
                y = x >> np.uint64(lo_bit)
                if (y & (y + np.uint64(1))) == np.uint64(0):
                    c = c0 + lo_bit
                    n_run = popcount64(y)
                    mch += n_run
                    adj = np.int64(c == run_end)
                    r = n_req - adj
                    starts[r] = starts[r] * adj + (layer_base + c * bundle) * (1 - adj)
                    lengths[r] = lengths[r] * adj + n_run * bundle
                    n_req = r + 1
                    run_end = c + n_run
                    x = np.uint64(0)
            while x != np.uint64(0):  # contiguous missed channels → one request
                c = c0 + low_bit_index(x)
                x = x & (x - np.uint64(1))
                mch += 1
                # branch-free (whether a channel extends the run is data-dependent): adj = 1
                # extends request n_req − 1, adj = 0 opens request n_req
                adj = np.int64(c == run_end)
                r = n_req - adj
                starts[r] = starts[r] * adj + (layer_base + c * bundle) * (1 - adj)
                lengths[r] = lengths[r] * adj + bundle
                n_req = r + 1
                run_end = c + 1
        reads = u if ip[IP_UNION] != 0 else tok_ch[t, l, j]
        fills = mch
        if bypass:  # misses stream to the lanes: read back only hits; write only what the policy keeps
            if ip[IP_UNION] != 0:
                reads = u - mch
            fills = mch if ip[IP_KEEP_FILLS] != 0 else 0
        if not stripe:  # modulo: the whole bundle lives in SRAM bank s
            bank_cycles[s] += (reads + fills) * lines * ip[IP_INTERVAL]  # a port takes a line per interval
            acc_sram[s, S_READ] += reads * lines
            acc_sram[s, S_WRITE] += fills * lines
        acc_bank[l, j, 0] += reads
        acc_bank[l, j, 1] += mch
        read_ch += reads
        union_ch += u
        miss_ch += mch
        fill_ch += fills
        token_ch += tok_ch[t, l, j]
    if stripe:  # the layer-step's line accesses dealt round-robin over all banks
        for s in range(ns):
            r_s = _share(read_ch * lines, s, ns)
            w_s = _share(fill_ch * lines, s, ns)
            bank_cycles[s] = (r_s + w_s) * ip[IP_INTERVAL]
            acc_sram[s, S_READ] += r_s
            acc_sram[s, S_WRITE] += w_s
    bmax = 0
    btotal = 0
    for s in range(ns):
        c = (bank_cycles[s] + ports - 1) // ports
        acc_sram[s, S_PORT] += c
        btotal += c
        if c > bmax:
            bmax = c
    fetch_cycles, ns_f, moved_f = _call_dram(dram_kernel, starts, lengths, n_req, dram_params, dram_state,
                                             frequency_ghz, a)  # fmt: skip
    pred_lines = 0
    pred_sram = 0
    if sparse and resident:  # predictor weights read from SRAM, striped over every bank
        pred_lines = -(-pred_bytes // ip[IP_LINE_BYTES])
        for s in range(ns):
            share = _share(pred_lines, s, ns)
            acc_sram[s, S_READ] += share
            acc_sram[s, S_PORT] += (share * ip[IP_INTERVAL] + ports - 1) // ports
        pred_sram = (_share(pred_lines, 0, ns) * ip[IP_INTERVAL] + ports - 1) // ports
    ffn_macs = 3 * hidden * (union_ch * tokens if ip[IP_UNION] != 0 else token_ch)
    pred_macs = tokens * (hidden * rank + rank * inter) if sparse else 0
    attn_macs = tokens * ip[IP_PROJ_MACS] + ctx * ip[IP_SCORE_MACS] if model else 0
    head_macs = tokens * ip[IP_HEAD_MACS] if model and l == ip[IP_LAYERS] - 1 else 0
    vector_ops = tokens * ip[IP_VEC_TOKEN] + ctx * ip[IP_VEC_CTX] if model else 0
    stage[PREFETCH] = pred_cycles + attn_cycles
    stage[ATTENTION] = (attn_macs + mpc - 1) // mpc
    stage[VECTOR] = (vector_ops + ns - 1) // ns  # one op per lane per cycle, a lane per SRAM bank
    stage[PREDICTOR] = (pred_macs + mpc - 1) // mpc
    stage[PRED_SRAM] = pred_sram
    stage[TOPK] = ip[IP_TOPK] * ((tokens * nb + ns - 1) // ns) if sparse else 0
    stage[FETCH] = fetch_cycles
    stage[SRAM] = bmax
    stage[COMPUTE] = (ffn_macs + mpc - 1) // mpc
    stage[HEAD] = (head_macs + mpc - 1) // mpc
    stage[ST_PREFETCH_FFN] = pred_cycles
    a[C_STEPS] += 1
    a[C_TOKENS] += tokens
    a[C_DRAM_BUSY] += stage[PREFETCH] + stage[FETCH]
    a[C_SRAM_BUSY] += stage[SRAM] + stage[PRED_SRAM]
    a[C_COMPUTE_BUSY] += stage[ATTENTION] + stage[PREDICTOR] + stage[COMPUTE] + stage[HEAD]
    a[C_VECTOR_BUSY] += stage[TOPK] + stage[VECTOR]
    a[C_PRED_COMPUTE] += stage[PREDICTOR]
    a[C_FFN_COMPUTE] += stage[COMPUTE]
    a[C_ATTN_COMPUTE] += stage[ATTENTION]
    a[C_HEAD_COMPUTE] += stage[HEAD]
    a[C_TOPK_CYCLES] += stage[TOPK]
    a[C_VECTOR_WORK] += stage[VECTOR]
    a[C_PRED_DRAM] += pred_cycles
    a[C_PRED_SRAM] += pred_sram
    a[C_PREFETCH_DRAM] += stage[PREFETCH]
    a[C_FFN_FETCH] += fetch_cycles
    a[C_DRAM_BYTES] += moved_p + moved_a + moved_f - kv_write
    a[C_DRAM_WRITE_BYTES] += kv_write
    a[C_DRAM_FFN_BYTES] += miss_ch * bundle
    a[C_DRAM_PRED_BYTES] += pred_bytes if not resident else 0
    a[C_SRAM_READ_LINES] += read_ch * lines + pred_lines
    a[C_SRAM_WRITE_LINES] += fill_ch * lines
    a[C_SRAM_PRED_LINES] += pred_lines
    a[C_FFN_MACS] += ffn_macs
    a[C_PRED_MACS] += pred_macs
    a[C_ATTN_MACS] += attn_macs
    a[C_HEAD_MACS] += head_macs
    a[C_VECTOR_OPS] += vector_ops
    a[C_UNION] += union_ch
    a[C_MISS] += miss_ch
    a[C_TOKEN_CH] += token_ch
    a[C_BANK_MAX] += bmax + pred_sram
    a[C_BANK_TOTAL] += btotal + (pred_lines * ip[IP_INTERVAL] + ports - 1) // ports
    acc_dram_ns[l] += ns_p + ns_a + ns_f


@njit(cache=True)
def time_layer_steps(need, miss, tok_ch, step_tokens, ip, frequency_ghz, dram_kernel, dram_params, dram_state,
                     kinds, preds, step_ctx, kv_ptr, kv_seq, kv_before, kv_new, starts, lengths, stage_buf, carry,
                     acc_layer, acc_dram_ns, acc_sram, acc_bank):  # fmt: skip
    """Time S steps × L layers given the residency result; accumulate into acc_* (in place).

    need/miss: (S, L, nb, W) uint64 union and miss words; tok_ch: (S, L, nb) channels summed over the step's
    tokens; step_tokens: (S,) tokens per step; step_ctx (S,): context rows attended over the step's tokens;
    kv_ptr (S + 1,) into kv_seq / kv_before / kv_new: per (step, sequence) the KV rows read and written.
    starts/lengths: request buffers (≥ max(I // 2 + 2, KV requests of a step + 4) entries). stage_buf:
    (≥ S, L, STAGE_BUF_WIDTH). Layer-steps run in order on one core (the DRAM state carries between calls);
    see time_layer_steps_par.
    """
    S, L = need.shape[0], need.shape[1]
    bank_cycles = np.zeros(ip[IP_NS], dtype=np.int64)
    for t in range(S):
        for l in range(L):
            _layer_step(need, miss, tok_ch, step_tokens[t], np.int64(t), np.int64(l), ip, frequency_ghz, dram_kernel, dram_params,
                        dram_state, step_ctx, kv_ptr, kv_seq, kv_before, kv_new, starts, lengths, bank_cycles,
                        stage_buf[t, l], acc_layer, acc_dram_ns, acc_sram, acc_bank)  # fmt: skip
    schedule_layer_steps(stage_buf, S, kinds, preds, ip[IP_DOUBLE_BUFFER] != 0, carry, acc_layer)


# ---- layers in parallel, for the DRAM models whose state does not order their calls ----------------------
# `ideal` reads nothing from its state (it only counts calls); `bank_stream` reads one bit per channel —
# "has an earlier call used channel c" (it then pays tRP) — and that bit only ever turns on. Once every
# channel's bit is on, every later call returns the same whatever order the calls run in, so the layers
# can run on separate cores with bit-identical results. bank_timing's open rows carry from call to call:
# it always runs in order (time_layer_steps).
PARALLEL_DRAM_KERNELS = (_IDEAL, _BANK_STREAM)


@njit(cache=True)
def order_free(dram_kernel, dram_params, dram_state):
    """True when the DRAM kernel's next calls return the same in any order (see the comment above)."""
    if dram_kernel == _IDEAL:
        return True
    if dram_kernel == _BANK_STREAM:
        slots = np.int64(dram_params[P_CHANNELS]) * np.int64(dram_params[P_BANKS])
        for c in range(np.int64(dram_params[P_CHANNELS])):
            if dram_state[slots + c] <= 0:
                return False
        return True
    return False


@njit(cache=True, parallel=True)
def time_layer_steps_par(need, miss, tok_ch, step_tokens, ip, frequency_ghz, dram_kernel, dram_params, dram_state,
                         kinds, preds, step_ctx, kv_ptr, kv_seq, kv_before, kv_new, starts, lengths, stage_buf,
                         carry, sram_part, acc_layer, acc_dram_ns, acc_sram, acc_bank):  # fmt: skip
    """time_layer_steps with the layers on parallel cores, for the kernels in PARALLEL_DRAM_KERNELS.

    Bit-identical to time_layer_steps: steps run in order until the DRAM state is order-free (for
    bank_stream: every channel used once, normally after the first layer-step), then each layer costs its
    remaining steps in order on its own core with a private copy of the DRAM state; the schedule (stage
    cycles → time, which carries from one layer-step to the next) then runs in order on one core. Per-layer
    accumulators keep their per-layer order (acc_dram_ns adds floats in the same order); the SRAM-bank
    accumulator is summed per layer into sram_part (L, ns, 3) then added (integers). starts/lengths:
    (L, ≥ max(I // 2 + 2, KV requests of a step + 4)). Afterwards the state's call counter is exact; for
    bank_stream a channel's "last call" entry is only known to be > 0 (the only thing the kernel reads).
    """
    S, L = need.shape[0], need.shape[1]
    ns = ip[IP_NS]
    bank_cycles = np.zeros(ns, dtype=np.int64)
    t0 = 0
    while t0 < S and not order_free(dram_kernel, dram_params, dram_state):
        for l in range(L):
            _layer_step(need, miss, tok_ch, step_tokens[t0], np.int64(t0), np.int64(l), ip, frequency_ghz, dram_kernel, dram_params,
                        dram_state, step_ctx, kv_ptr, kv_seq, kv_before, kv_new, starts[0], lengths[0],
                        bank_cycles, stage_buf[t0, l], acc_layer, acc_dram_ns, acc_sram, acc_bank)  # fmt: skip
        t0 += 1
    if t0 < S:
        n_state = dram_state.shape[0]
        states = np.empty((L, n_state), dtype=np.int64)
        for l in prange(L):
            states[l] = dram_state
            sram_part[l] = 0
            my_cycles = np.zeros(ns, dtype=np.int64)
            for t in range(t0, S):
                _layer_step(need, miss, tok_ch, step_tokens[t], np.int64(t), np.int64(l), ip, frequency_ghz, dram_kernel,
                            dram_params, states[l], step_ctx, kv_ptr, kv_seq, kv_before, kv_new, starts[l],
                            lengths[l], my_cycles, stage_buf[t, l], acc_layer, acc_dram_ns, sram_part[l],
                            acc_bank)  # fmt: skip
        counter = n_state - 1  # every DRAM state ends with its call counter
        calls = 0
        for l in range(L):
            calls += states[l, counter] - dram_state[counter]
            for i in range(counter):
                dram_state[i] = max(dram_state[i], states[l, i])
            for s in range(ns):
                for k in range(3):
                    acc_sram[s, k] += sram_part[l, s, k]
        dram_state[counter] += calls
    schedule_layer_steps(stage_buf, S, kinds, preds, ip[IP_DOUBLE_BUFFER] != 0, carry, acc_layer)
