"""The stage pipeline of one layer-step, as a DAG, and the numba kernel that times layer-steps through it.

A layer-step is one layer of one step (b concurrent decode tokens, or a prefill chunk). Its stages:

    predictor ─▶ topk ─▶ fetch ─▶ sram ─▶ compute        (double_buffer: false — each waits for the last)
    predictor ─▶ topk ─▶ {fetch, sram, compute}          (double_buffer: true — streamed tile by tile)

predictor: the low-rank GEMV/GEMM (hidden·rank + rank·I MACs per token) on the compute array;
topk:      bank top-k selection, `topk_cycles_per_bank` per (token, model bank), SRAM-bank lanes in parallel;
fetch:     DRAM service time of the step's misses (bundles) and the predictor weights (streamed each step);
sram:      port cycles of the busiest SRAM bank (reads + fill writes, one line per port per
           `sram_line_interval_cycles`);
compute:   FFN MACs on `macs_per_cycle`.
The fetch of a layer depends on its top-k (which channels to fetch), so double buffering overlaps fetch, SRAM
reads and compute of the same layer-step as a stream of tiles: the DAG then has them as parallel branches
and the layer-step takes the longest. A dense model (k = B) has no predictor and no top-k: those nodes are
left out. The DAG is built with networkx from the config and compiled to arrays (topological order +
predecessor lists) that the kernel evaluates for every layer-step: the layer-step time is its critical path.

Stall breakdown (integers, summing to the layer-step time T): with T_sram = critical path with the DRAM stage
at 0 and T_comp = critical path with DRAM and SRAM stages at 0, compute = T_comp, sram_bank_conflict =
T_sram − T_comp, dram = T − T_sram — "what removing the DRAM (then the SRAM) bottleneck would save".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx
import numpy as np
from numba import njit, prange

from codesign.errors import ConfigError
from codesign.sim.dram import REGISTRY
from codesign.sim.dram.params import P_BANKS, P_CHANNELS
from codesign.sim.residency import low_bit_index, popcount64

# The DRAM kernels the timing kernel can call, by model name. numba cannot cache a kernel that receives
# another njit function as an argument, so the engine dispatches on an index over the registered kernels.
DRAM_KERNELS = ("bank_timing", "ideal", "bank_stream")
_dram_bank_timing = REGISTRY["bank_timing"][0]
_dram_ideal = REGISTRY["ideal"][0]
_dram_bank_stream = REGISTRY["bank_stream"][0]


def dram_kernel_id(model_name: str) -> int:
    if model_name not in DRAM_KERNELS:
        raise ConfigError(
            f"dram.model: {model_name!r} has no binding in the simulator engine ({', '.join(DRAM_KERNELS)})"
        )
    return DRAM_KERNELS.index(model_name)


@njit(cache=True, inline="always")
def _service(kernel_id, starts, lengths, n, params, state):
    if kernel_id == 0:
        return _dram_bank_timing(starts, lengths, n, params, state)
    if kernel_id == 2:
        return _dram_bank_stream(starts, lengths, n, params, state)
    return _dram_ideal(starts, lengths, n, params, state)


STAGES = ("predictor", "topk", "fetch", "sram", "compute")
PREDICTOR, TOPK, FETCH, SRAM, COMPUTE = range(5)
# stage → stall class: 0 compute, 1 sram, 2 dram
STAGE_CLASS = np.array([0, 0, 2, 1, 0], dtype=np.int64)
ZERO_DRAM, ZERO_DRAM_SRAM = 0b100, 0b110  # class bit masks of stages set to 0

# int64 parameter vector of the kernel (ip[...])
(IP_NB, IP_W, IP_B, IP_NS, IP_LINES, IP_PORTS, IP_MPC, IP_TOPK, IP_HIDDEN, IP_INTER, IP_RANK, IP_UNION,
 IP_BUNDLE, IP_LAYER_BYTES, IP_PRED_BASE, IP_PRED_BYTES, IP_SPARSE, IP_INTERVAL) = range(18)  # fmt: skip
NUM_IP = 18

# per-layer accumulator columns (acc_layer[l, ...], int64)
LAYER_COLUMNS = (
    "steps", "tokens", "cycles", "compute_cycles", "sram_bank_conflict_cycles", "dram_stall_cycles",
    "predictor_stage_cycles", "fetch_stage_cycles", "sram_stage_cycles", "ffn_stage_cycles",
    "dram_read_bytes", "dram_ffn_bytes", "dram_predictor_bytes", "dram_requests", "dram_row_hits",
    "dram_row_misses", "sram_read_lines", "sram_write_lines", "ffn_macs", "predictor_macs",
    "union_channels", "miss_channels", "token_channels", "bank_max_cycles", "bank_total_cycles",
)  # fmt: skip
COL = {name: i for i, name in enumerate(LAYER_COLUMNS)}
SRAM_COLUMNS = ("read_lines", "write_lines", "port_cycles")


def build_pipeline(double_buffer: bool, sparse: bool) -> nx.DiGraph:
    """The stage DAG of a layer-step (see module docstring)."""
    g = nx.DiGraph()
    chain = ["predictor", "topk"] if sparse else []
    for name in chain + ["fetch", "sram", "compute"]:
        g.add_node(name, kind=STAGES.index(name))
    nx.add_path(g, chain)
    tail = chain[-1:] if chain else []
    if double_buffer:
        for name in ("fetch", "sram", "compute"):
            nx.add_path(g, tail + [name])
    else:
        nx.add_path(g, tail + ["fetch", "sram", "compute"])
    return g


@dataclass(frozen=True)
class CompiledPipeline:
    """A stage DAG as arrays: nodes in topological order, kinds[i] a stage id, preds[i] padded with -1."""

    kinds: np.ndarray
    preds: np.ndarray
    nodes: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]


def compile_pipeline(g: nx.DiGraph) -> CompiledPipeline:
    order = list(nx.topological_sort(g))
    index = {n: i for i, n in enumerate(order)}
    width = max([g.in_degree(n) for n in order] + [1])
    preds = np.full((len(order), width), -1, dtype=np.int64)
    for n in order:
        for i, p in enumerate(sorted(g.predecessors(n), key=index.get)):
            preds[index[n], i] = index[p]
    kinds = np.array([g.nodes[n]["kind"] for n in order], dtype=np.int64)
    return CompiledPipeline(kinds, preds, tuple(order), tuple(g.edges))


@njit(cache=True)
def critical_path(stage_cycles, kinds, preds, zero_classes):
    """Longest path through the DAG; stages whose class bit is in `zero_classes` count 0."""
    n = kinds.shape[0]
    finish = np.zeros(n, dtype=np.int64)
    total = 0
    for i in range(n):
        start = 0
        for p in preds[i]:
            if p >= 0 and finish[p] > start:
                start = finish[p]
        own = stage_cycles[kinds[i]]
        if (zero_classes >> STAGE_CLASS[kinds[i]]) & 1:
            own = 0
        finish[i] = start + own
        if finish[i] > total:
            total = finish[i]
    return total


def critical_path_py(stage_cycles, pipeline: CompiledPipeline, zero_classes: int) -> int:
    finish = []
    for i, kind in enumerate(pipeline.kinds):
        start = max([finish[p] for p in pipeline.preds[i] if p >= 0] + [0])
        own = 0 if (zero_classes >> int(STAGE_CLASS[kind])) & 1 else int(stage_cycles[kind])
        finish.append(start + own)
    return max(finish + [0])


@njit(cache=True, inline="always")
def ceil_cycles(time_ns, frequency_ghz):
    """DRAM nanoseconds → whole clock cycles (1e-9 slack so that an exact product does not round up)."""
    if time_ns <= 0.0:
        return np.int64(0)
    return np.int64(math.ceil(time_ns * frequency_ghz - 1e-9))


@njit(cache=True, inline="always")
def _layer_step(need, miss, tok_ch, tokens, t, l, ip, frequency_ghz, dram_kernel, dram_params, dram_state, kinds,
                preds, starts, lengths, bank_cycles, stage, acc_layer, acc_dram_ns, acc_sram, acc_bank):  # fmt: skip
    """Time layer-step (t, l): build its DRAM requests, call the DRAM model, run the stage DAG, accumulate."""
    nb, W = need.shape[2], need.shape[3]
    B, ns, lines, ports, mpc = ip[IP_B], ip[IP_NS], ip[IP_LINES], ip[IP_PORTS], ip[IP_MPC]
    bundle, hidden, rank, inter = ip[IP_BUNDLE], ip[IP_HIDDEN], ip[IP_RANK], ip[IP_INTER]
    sparse = ip[IP_SPARSE] != 0
    bank_cycles[:] = 0
    union_ch = 0
    miss_ch = 0
    token_ch = 0
    n_req = 0
    if sparse:  # predictor weights, streamed every layer-step from their own region
        starts[0] = ip[IP_PRED_BASE] + l * ip[IP_PRED_BYTES]
        lengths[0] = ip[IP_PRED_BYTES]
        n_req = 1
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
        bank_cycles[s] += (reads + mch) * lines * ip[IP_INTERVAL]  # a port takes a line per interval
        acc_sram[s, 0] += reads * lines
        acc_sram[s, 1] += mch * lines
        acc_bank[l, j, 0] += reads
        acc_bank[l, j, 1] += mch
        union_ch += u
        miss_ch += mch
        token_ch += tok_ch[t, l, j]
    bmax = 0
    btotal = 0
    for s in range(ns):
        c = (bank_cycles[s] + ports - 1) // ports
        acc_sram[s, 2] += c
        btotal += c
        if c > bmax:
            bmax = c
    time_ns = 0.0
    moved = 0
    if n_req > 0:
        time_ns, moved, row_hits, row_misses = _service(
            dram_kernel, starts, lengths, n_req, dram_params, dram_state
        )
        acc_layer[l, 13] += n_req
        acc_layer[l, 14] += row_hits
        acc_layer[l, 15] += row_misses
    ffn_macs = 3 * hidden * (union_ch * tokens if ip[IP_UNION] != 0 else token_ch)
    pred_macs = tokens * (hidden * rank + rank * inter) if sparse else 0
    stage[PREDICTOR] = (pred_macs + mpc - 1) // mpc
    stage[TOPK] = ip[IP_TOPK] * ((tokens * nb + ns - 1) // ns) if sparse else 0
    stage[FETCH] = ceil_cycles(time_ns, frequency_ghz)
    stage[SRAM] = bmax
    stage[COMPUTE] = (ffn_macs + mpc - 1) // mpc
    total = critical_path(stage, kinds, preds, 0)
    t_sram = critical_path(stage, kinds, preds, 0b100)
    t_comp = critical_path(stage, kinds, preds, 0b110)
    a = acc_layer[l]
    a[0] += 1
    a[1] += tokens
    a[2] += total
    a[3] += t_comp
    a[4] += t_sram - t_comp
    a[5] += total - t_sram
    a[6] += stage[PREDICTOR] + stage[TOPK]
    a[7] += stage[FETCH]
    a[8] += stage[SRAM]
    a[9] += stage[COMPUTE]
    a[10] += moved
    a[11] += miss_ch * bundle
    a[12] += ip[IP_PRED_BYTES] if sparse else 0
    a[16] += union_ch * lines if ip[IP_UNION] != 0 else token_ch * lines
    a[17] += miss_ch * lines
    a[18] += ffn_macs
    a[19] += pred_macs
    a[20] += union_ch
    a[21] += miss_ch
    a[22] += token_ch
    a[23] += bmax
    a[24] += btotal
    acc_dram_ns[l] += time_ns


@njit(cache=True)
def time_layer_steps(need, miss, tok_ch, step_tokens, ip, frequency_ghz, dram_kernel, dram_params, dram_state,
                     kinds, preds, starts, lengths, acc_layer, acc_dram_ns, acc_sram, acc_bank):  # fmt: skip
    """Time S steps × L layers given the residency result; accumulate into acc_* (in place).

    need/miss: (S, L, nb, W) uint64 union and miss words; tok_ch: (S, L, nb) channels summed over the step's
    tokens; step_tokens: (S,) tokens per step. starts/lengths: request buffers of ≥ I // 2 + 2 entries.
    Layer-steps run in order on one core (the DRAM state carries between calls); see time_layer_steps_par.
    """
    S, L = need.shape[0], need.shape[1]
    bank_cycles = np.zeros(ip[IP_NS], dtype=np.int64)
    stage = np.zeros(5, dtype=np.int64)
    for t in range(S):
        for l in range(L):
            _layer_step(need, miss, tok_ch, step_tokens[t], t, l, ip, frequency_ghz, dram_kernel, dram_params,
                        dram_state, kinds, preds, starts, lengths, bank_cycles, stage, acc_layer, acc_dram_ns,
                        acc_sram, acc_bank)  # fmt: skip


# ---- layers in parallel, for the DRAM models whose state does not order their calls ----------------------
# `ideal` reads nothing from its state (it only counts calls); `bank_stream` reads one bit per channel —
# "has an earlier call used channel c" (it then pays tRP) — and that bit only ever turns on. Once every
# channel's bit is on, every later call returns the same whatever order the calls run in, so the layers
# can run on separate cores with bit-identical results. bank_timing's open rows carry from call to call:
# it always runs in order (time_layer_steps).
PARALLEL_DRAM_KERNELS = (1, 2)  # ideal, bank_stream (indices into DRAM_KERNELS)


@njit(cache=True)
def order_free(dram_kernel, dram_params, dram_state):
    """True when the DRAM kernel's next calls return the same in any order (see the comment above)."""
    if dram_kernel == 1:
        return True
    if dram_kernel == 2:
        slots = np.int64(dram_params[P_CHANNELS]) * np.int64(dram_params[P_BANKS])
        for c in range(np.int64(dram_params[P_CHANNELS])):
            if dram_state[slots + c] <= 0:
                return False
        return True
    return False


@njit(cache=True, parallel=True)
def time_layer_steps_par(need, miss, tok_ch, step_tokens, ip, frequency_ghz, dram_kernel, dram_params, dram_state,
                         kinds, preds, starts, lengths, sram_part, acc_layer, acc_dram_ns, acc_sram, acc_bank):  # fmt: skip
    """time_layer_steps with the layers on parallel cores, for the kernels in PARALLEL_DRAM_KERNELS.

    Bit-identical to time_layer_steps: steps run in order until the DRAM state is order-free (for
    bank_stream: every channel used once, normally after the first layer-step), then each layer runs its
    remaining steps in order on its own core with a private copy of the DRAM state. Per-layer accumulators
    keep their per-layer order (acc_dram_ns adds floats in the same order); the SRAM-bank accumulator is
    summed per layer into sram_part (L, ns, 3) then added (integers). starts/lengths: (L, ≥ I // 2 + 2).
    Afterwards the state's call counter is exact; for bank_stream a channel's "last call" entry is only
    known to be > 0 (the only thing the kernel reads).
    """
    S, L = need.shape[0], need.shape[1]
    ns = ip[IP_NS]
    bank_cycles = np.zeros(ns, dtype=np.int64)
    stage = np.zeros(5, dtype=np.int64)
    t0 = 0
    while t0 < S and not order_free(dram_kernel, dram_params, dram_state):
        for l in range(L):
            _layer_step(need, miss, tok_ch, step_tokens[t0], t0, l, ip, frequency_ghz, dram_kernel, dram_params,
                        dram_state, kinds, preds, starts[0], lengths[0], bank_cycles, stage, acc_layer,
                        acc_dram_ns, acc_sram, acc_bank)  # fmt: skip
        t0 += 1
    if t0 == S:
        return
    n_state = dram_state.shape[0]
    states = np.empty((L, n_state), dtype=np.int64)
    for l in prange(L):
        states[l] = dram_state
        sram_part[l] = 0
        my_cycles = np.zeros(ns, dtype=np.int64)
        my_stage = np.zeros(5, dtype=np.int64)
        for t in range(t0, S):
            _layer_step(need, miss, tok_ch, step_tokens[t], t, l, ip, frequency_ghz, dram_kernel, dram_params,
                        states[l], kinds, preds, starts[l], lengths[l], my_cycles, my_stage, acc_layer,
                        acc_dram_ns, sram_part[l], acc_bank)  # fmt: skip
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
