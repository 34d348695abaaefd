"""The stage pipeline of one layer-step, as a DAG, and the numba kernels that cost and time layer-steps.

A layer-step is one layer of one step (b concurrent decode tokens, or a prefill chunk). Its stages
(scope `model`; at scope `ffn` the attention, vector and head stages are left out):

    prefetch ─▶ attention ─▶ vector ─▶ predictor (─ pred_sram) ─▶ topk ─▶ {fetch, sram, compute} ─▶ head
                                                              (double_buffer: false — fetch ─▶ sram ─▶ compute)

prefetch:  DRAM traffic known before the layer's routing: the predictor weights (own call, unless
           predictor.resident), QKV/O weights, the KV cache rows each sequence has (read) and appends
           (written), embedding rows (layer 0) and the LM head (last layer);
attention: QKV/O projection MACs and q·k, p·v over every attended row, on the compute array;
vector:    norms, residual adds, RoPE and softmax, one op per lane per cycle (a lane per SRAM bank);
predictor: the low-rank GEMV/GEMM (hidden·rank + rank·I MACs per token) on the compute array;
pred_sram: predictor.resident — its weights read through the SRAM ports (striped over every bank);
topk:      bank top-k selection, `topk_cycles_per_bank` per (token, model bank), on the vector lanes;
fetch:     DRAM service time of the step's FFN misses (bundles), after top-k (they depend on routing);
sram:      port cycles of the busiest SRAM bank (reads + fill writes, one line per port per
           `sram_line_interval_cycles`). With `sram.fill_bypass` (default) missed bundles stream from DRAM
           straight to the lanes: only hits are read from SRAM, and a miss is written only when the residency
           policy keeps it (lru, lfu; never for none or pinned_hot). Without it every miss is written, then
           read back through the same ports. (per_token_gather reads every token's channels from SRAM.)
compute:   FFN MACs on `macs_per_cycle`;
head:      LM head MACs (last layer).
double_buffer streams fetch, SRAM reads and compute of the same layer-step as tiles (parallel branches; the
layer-step takes the longest) and, across layer-steps, hides the prefetch stage in the DRAM time the previous
layer-step left idle (schedule_layer_steps). A dense model (k = B) has no predictor and no top-k: those nodes
are left out. The DAG is built with networkx from the config and compiled to arrays (topological order +
predecessor lists) that the kernel evaluates for every layer-step: the layer-step time is its critical path.

Two passes per block of steps: `_layer_step` costs each layer-step (DRAM calls, SRAM ports, MACs → stage
cycles in stage_buf; layers in parallel when the DRAM model allows), then `schedule_layer_steps` walks the
layer-steps in order and turns stage cycles into time (the prefetch overlap carries from one to the next).

Bottleneck accounting. Each stage runs on one resource (STAGE_RESOURCE). Per resource the report gives its
busy cycles (the sum of its stages' cycles; for the SRAM ports, the busiest bank's) and its utilisation
(busy / total cycles). Per layer-step, the critical path is traced back through the DAG and the resource with
the most cycles on it *owns* the layer-step: all of the layer-step's cycles count as bound by that resource
(ties: dram, sram_port, compute, vector). Unlike a split that peels stages off in a fixed order, this does
not depend on an order, and a resource that is not on the critical path is never blamed.

SRAM placement (`sram.placement`): `modulo` maps model bank j of every layer to SRAM bank j mod N (a model
with fewer banks than N leaves banks idle); `stripe` deals each layer-step's line accesses round-robin over
all N banks (each bundle striped along the hidden dimension), so the busiest bank serves ceil(lines / N).
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


STAGES = (
    "prefetch",
    "attention",
    "vector",
    "predictor",
    "pred_sram",
    "topk",
    "fetch",
    "sram",
    "compute",
    "head",
)
(PREFETCH, ATTENTION, VECTOR, PREDICTOR, PRED_SRAM, TOPK, FETCH, SRAM, COMPUTE, HEAD) = range(10)
NUM_STAGES = len(STAGES)
ST_PREFETCH_FFN = NUM_STAGES  # stage_buf slot: the prefetch cycles of the FFN part alone (predictor weights)
STAGE_BUF_WIDTH = NUM_STAGES + 1
ATTENTION_STAGES = (ATTENTION, VECTOR, HEAD)  # zero at FFN scope
RESOURCES = ("dram", "sram_port", "compute", "vector")  # also the tie order of the critical-path owner
R_DRAM, R_SRAM, R_COMPUTE, R_VECTOR = range(4)
STAGE_RESOURCE = np.array(
    [R_DRAM, R_COMPUTE, R_VECTOR, R_COMPUTE, R_SRAM, R_VECTOR, R_DRAM, R_SRAM, R_COMPUTE, R_COMPUTE],
    dtype=np.int64,
)  # by stage id
PLACEMENTS = ("stripe", "modulo")

# int64 parameter vector of the kernel (ip[...])
(IP_NB, IP_W, IP_B, IP_NS, IP_LINES, IP_PORTS, IP_MPC, IP_TOPK, IP_HIDDEN, IP_INTER, IP_RANK, IP_UNION,
 IP_BUNDLE, IP_LAYER_BYTES, IP_PRED_BASE, IP_PRED_BYTES, IP_SPARSE, IP_INTERVAL, IP_STRIPE, IP_BYPASS,
 IP_KEEP_FILLS, IP_MODEL, IP_ATTN_BYTES, IP_ATTN_BASE, IP_KV_ROW, IP_KV_BASE, IP_PROJ_MACS, IP_SCORE_MACS,
 IP_HEAD_BYTES, IP_HEAD_BASE, IP_EMBED_ROW, IP_VEC_TOKEN, IP_VEC_CTX, IP_PRED_RESIDENT, IP_LAYERS,
 IP_DOUBLE_BUFFER, IP_LINE_BYTES, IP_HEAD_MACS) = range(38)  # fmt: skip
NUM_IP = 38
KV_SEQ_SLOTS = 1 << 12  # KV cache address map: (layer, sequence mod slots) regions of KV_MAX_ROWS rows each
KV_MAX_ROWS = 1 << 17

# per-layer accumulator columns (acc_layer[l, C_...], int64); the kernel indexes them by these names.
# Attention, KV cache, the LM head and embeddings count in the layer that runs them (LM head: the last layer,
# embeddings: the first); `ffn_scope_cycles` is the same schedule with only the FFN part of every layer-step.
LAYER_COLUMNS = (
    "steps", "tokens", "cycles", "ffn_scope_cycles",
    "dram_bound_cycles", "sram_port_bound_cycles", "compute_bound_cycles", "vector_bound_cycles",
    "dram_busy_cycles", "sram_port_busy_cycles", "compute_busy_cycles", "vector_busy_cycles",
    "predictor_compute_cycles", "ffn_compute_cycles", "attention_compute_cycles", "head_compute_cycles",
    "topk_cycles", "vector_work_cycles", "predictor_dram_cycles", "predictor_sram_cycles",
    "prefetch_dram_cycles", "prefetch_hidden_cycles", "ffn_fetch_cycles",
    "dram_read_bytes", "dram_write_bytes", "dram_ffn_bytes", "dram_predictor_bytes", "dram_attention_bytes",
    "dram_kv_read_bytes", "dram_kv_write_bytes", "dram_head_bytes", "dram_requests", "dram_row_hits",
    "dram_row_misses", "sram_read_lines", "sram_write_lines", "sram_predictor_lines", "ffn_macs",
    "predictor_macs", "attention_macs", "head_macs", "vector_ops",
    "union_channels", "miss_channels", "token_channels", "bank_max_cycles", "bank_total_cycles",
)  # fmt: skip
(C_STEPS, C_TOKENS, C_CYCLES, C_FFN_SCOPE_CYCLES, C_DRAM_BOUND, C_SRAM_BOUND, C_COMPUTE_BOUND, C_VECTOR_BOUND,
 C_DRAM_BUSY, C_SRAM_BUSY, C_COMPUTE_BUSY, C_VECTOR_BUSY, C_PRED_COMPUTE, C_FFN_COMPUTE, C_ATTN_COMPUTE,
 C_HEAD_COMPUTE, C_TOPK_CYCLES, C_VECTOR_WORK, C_PRED_DRAM, C_PRED_SRAM, C_PREFETCH_DRAM, C_PREFETCH_HIDDEN,
 C_FFN_FETCH, C_DRAM_BYTES, C_DRAM_WRITE_BYTES, C_DRAM_FFN_BYTES, C_DRAM_PRED_BYTES, C_DRAM_ATTN_BYTES,
 C_DRAM_KV_READ, C_DRAM_KV_WRITE, C_DRAM_HEAD_BYTES, C_DRAM_REQUESTS, C_ROW_HITS, C_ROW_MISSES,
 C_SRAM_READ_LINES, C_SRAM_WRITE_LINES, C_SRAM_PRED_LINES, C_FFN_MACS, C_PRED_MACS, C_ATTN_MACS, C_HEAD_MACS,
 C_VECTOR_OPS, C_UNION, C_MISS, C_TOKEN_CH, C_BANK_MAX, C_BANK_TOTAL) = range(len(LAYER_COLUMNS))  # fmt: skip
COL = {name: i for i, name in enumerate(LAYER_COLUMNS)}
BOUND_COLUMNS = tuple(f"{r}_bound_cycles" for r in RESOURCES)  # C_DRAM_BOUND + resource id
SRAM_COLUMNS = ("read_lines", "write_lines", "port_cycles")
S_READ, S_WRITE, S_PORT = range(3)


def build_pipeline(
    double_buffer: bool, sparse: bool, model: bool = True, predictor_resident: bool = False
) -> nx.DiGraph:
    """The stage DAG of a layer-step (see module docstring)."""
    g = nx.DiGraph()

    def node(name):
        g.add_node(name, kind=STAGES.index(name))
        return name

    last = [node("prefetch")]
    if model:
        nx.add_path(g, [last[0], node("attention"), node("vector")])
        last = ["vector"]
    if sparse:
        heads = [node("predictor")] + ([node("pred_sram")] if predictor_resident else [])
        for a in last:
            for h in heads:
                g.add_edge(a, h)
        node("topk")
        for h in heads:
            g.add_edge(h, "topk")
        last = ["topk"]
    ffn = [node("fetch"), node("sram"), node("compute")]
    if double_buffer:  # fetch, SRAM reads and compute stream tile by tile: parallel branches
        for a in last:
            for f in ffn:
                g.add_edge(a, f)
        last = ffn
    else:
        for a in last:
            g.add_edge(a, "fetch")
        nx.add_path(g, ffn)
        last = ["compute"]
    if model:
        node("head")
        for a in last:
            g.add_edge(a, "head")
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
def critical_owner(stage_cycles, kinds, preds):
    """(length of the longest path through the DAG, the resource with the most cycles on that path)."""
    n = kinds.shape[0]
    finish = np.zeros(n, dtype=np.int64)
    via = np.full(n, -1, dtype=np.int64)  # the predecessor the longest path comes through
    end = 0
    for i in range(n):
        start = 0
        for p in preds[i]:
            if p >= 0 and finish[p] > start:
                start = finish[p]
                via[i] = p
        finish[i] = start + stage_cycles[kinds[i]]
        if finish[i] > finish[end]:
            end = i
    on_path = np.zeros(4, dtype=np.int64)
    i = end
    while i >= 0:
        on_path[STAGE_RESOURCE[kinds[i]]] += stage_cycles[kinds[i]]
        i = via[i]
    owner = 0
    for r in range(1, 4):
        if on_path[r] > on_path[owner]:
            owner = r
    return finish[end] if n else 0, owner


def critical_owner_py(stage_cycles, pipeline: CompiledPipeline) -> tuple[int, int]:
    """Twin of critical_owner: every longest path, the owner read off the first one found."""
    finish, via = [], []
    for i, kind in enumerate(pipeline.kinds):
        ps = [int(p) for p in pipeline.preds[i] if p >= 0]
        best = max(ps, key=lambda q: (finish[q], -ps.index(q)), default=None)
        start = finish[best] if best is not None and finish[best] > 0 else 0
        via.append(best if best is not None and finish[best] > 0 else -1)
        finish.append(start + int(stage_cycles[kind]))
    if not finish:
        return 0, 0
    end = finish.index(max(finish))
    on_path = [0, 0, 0, 0]
    i = end
    while i >= 0:
        on_path[int(STAGE_RESOURCE[pipeline.kinds[i]])] += int(stage_cycles[pipeline.kinds[i]])
        i = via[i]
    return finish[end], on_path.index(max(on_path))


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


@njit(cache=True, inline="always")
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


@njit(cache=True, inline="always")
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
def schedule_layer_steps(stage_buf, S, kinds, preds, double_buffer, carry, acc_layer):
    """Turn the stage cycles of S steps × L layers (in order) into time: each layer-step's critical path
    through the stage DAG, accumulated as cycles and as cycles bound by the resource that owns the path.

    Double buffering across layer-steps: what can be fetched before a layer's routing is known (its
    `prefetch` stage: predictor and attention weights, KV cache, LM head) streams into a staging buffer
    while the previous layer-step leaves DRAM idle, so up to that idle time is taken off the prefetch stage.
    carry[0] / carry[1]: the idle DRAM cycles the last layer-step left, at the configured scope / FFN only
    (carried from one call to the next). The FFN-only schedule runs beside (ffn_scope_cycles).
    """
    L = stage_buf.shape[1]
    cyc = np.zeros(NUM_STAGES, dtype=np.int64)
    for t in range(S):
        for l in range(L):
            st = stage_buf[t, l]
            for scope in range(2):
                for i in range(NUM_STAGES):
                    cyc[i] = st[i]
                if scope == 1:
                    cyc[ATTENTION] = 0
                    cyc[VECTOR] = 0
                    cyc[HEAD] = 0
                    cyc[PREFETCH] = st[ST_PREFETCH_FFN]
                hidden = 0
                if double_buffer:
                    hidden = min(cyc[PREFETCH], carry[scope])
                    cyc[PREFETCH] -= hidden
                total, owner = critical_owner(cyc, kinds, preds)
                idle = total - cyc[PREFETCH] - cyc[FETCH]
                carry[scope] = idle if idle > 0 else 0
                if scope == 0:
                    acc_layer[l, C_CYCLES] += total
                    acc_layer[l, C_DRAM_BOUND + owner] += total
                    acc_layer[l, C_PREFETCH_HIDDEN] += hidden
                else:
                    acc_layer[l, C_FFN_SCOPE_CYCLES] += total


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
            _layer_step(need, miss, tok_ch, step_tokens[t], t, l, ip, frequency_ghz, dram_kernel, dram_params,
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
            _layer_step(need, miss, tok_ch, step_tokens[t0], t0, l, ip, frequency_ghz, dram_kernel, dram_params,
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
                _layer_step(need, miss, tok_ch, step_tokens[t], t, l, ip, frequency_ghz, dram_kernel,
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
