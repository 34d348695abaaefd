"""The stage pipeline of one layer-step, as a DAG; its constants, the critical path and the schedule. The
kernels that cost layer-steps are in codesign/sim/layer_step.py.

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

Two passes per block of steps: `layer_step._layer_step` costs each layer-step (DRAM calls, SRAM ports, MACs → stage
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

from dataclasses import dataclass

import networkx as nx
import numpy as np
from numba import njit

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
                    for i in ATTENTION_STAGES:
                        cyc[i] = 0
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
