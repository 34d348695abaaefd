"""The same simulator model written straightforwardly: numpy per layer-step, Python dicts for residency.

It is the twin the tests compare the numba engine against (every integer accumulator must be equal), and the
"numpy" side of bench/sim_throughput.py. It shares only the step grouping and the DRAM model with the engine;
the residency (ResidencyPy), the SRAM/DRAM request bookkeeping and the DAG evaluation are its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from codesign.sim.engine import (
    DEFAULT_PREFILL_CHUNK_TOKENS,
    Block,
    SimParams,
    VariantResult,
    channel_frequency,
    group_steps,
    step_starts,
)
from codesign.sim.pipeline import (
    BOUND_COLUMNS,
    COL,
    COMPUTE,
    FETCH,
    NUM_STAGES,
    PREDICTOR,
    PREFETCH,
    SRAM,
    TOPK,
    build_pipeline,
    compile_pipeline,
    critical_owner_py,
)
from codesign.sim.residency import ResidencyPy, choose_pinned


def _channels(words: np.ndarray, bank_size: int) -> np.ndarray:
    """Set channels of one layer's words (nb, W) as sorted layer-channel indices."""
    bits = np.unpackbits(words.view(np.uint8).reshape(words.shape[0], -1), axis=-1, bitorder="little")
    return np.flatnonzero(bits[:, :bank_size].reshape(-1))


def _round_robin(n: int, banks: int) -> np.ndarray:
    """n accesses dealt one at a time to banks 0, 1, ..., banks − 1, 0, ...: accesses per bank."""
    out = np.zeros(banks, dtype=np.int64)
    np.add.at(out, np.arange(n) % banks, 1)
    return out


def simulate_variant_ref(
    name: str,
    params: SimParams,
    blocks: Callable[[], Iterator[Block]],
    dram,
    batch: int,
    *,
    prefill_chunk_tokens: int = DEFAULT_PREFILL_CHUNK_TOKENS,
    service=None,
) -> VariantResult:
    """Twin of engine.simulate_variant; `service` defaults to the DRAM model's njit kernel (kernel_py for its
    plain-Python twin)."""
    service = dram.kernel if service is None else service
    p = params
    if p.model_scope or p.predictor_resident:
        raise ValueError("the numpy reference models FFN scope with streamed predictors only")
    L, nb, ns, B = p.layers, p.num_model_banks, p.num_sram_banks, p.bank_size
    pinned = None
    if p.residency == "pinned_hot":
        freq = channel_frequency(blocks(), L, p.intermediate, B)
        pinned = choose_pinned(freq, ns, p.capacity_bundles, B, p.words_per_bank, p.placement)
    residency = ResidencyPy(p.residency, ns, p.capacity_bundles, B, pinned, p.placement)
    pipe = compile_pipeline(build_pipeline(p.double_buffer, p.sparse, model=False))
    state = dram.new_state()
    union_exec = p.execution == "batch_union"
    lines, bundle, mpc = p.lines_per_bundle, p.bundle_bytes, p.macs_per_cycle
    rank = p.predictor_rank if p.sparse else 0
    acc = np.zeros((L, len(COL)), dtype=np.int64)
    acc_ns = np.zeros(L)
    acc_sram = np.zeros((ns, 3), dtype=np.int64)
    acc_bank = np.zeros((L, nb, 2), dtype=np.int64)
    sram_of_bank = np.arange(nb) % ns

    # All tokens at once: the reference is for small traces; steps are the engine's.
    parts = list(blocks())
    words = np.concatenate([b.words for b in parts])
    starts = step_starts(np.concatenate([b.is_decode for b in parts]), np.concatenate([b.seq_id for b in parts]),
                         batch, prefill_chunk_tokens)  # fmt: skip
    need, tok_ch, step_tokens = group_steps(words, starts)
    idle = 0  # DRAM cycles the last layer-step left idle (double buffering across layer-steps)
    for t in range(len(starts)):
        miss = np.zeros_like(need[t : t + 1])
        residency.update(need[t : t + 1], miss)
        tokens = int(step_tokens[t])
        for l in range(L):
            u = np.bitwise_count(need[t, l]).sum(axis=-1).astype(np.int64)  # (nb,)
            m = np.bitwise_count(miss[0, l]).sum(axis=-1).astype(np.int64)
            reads = u if union_exec else tok_ch[t, l]
            fills = m
            if p.fill_bypass:  # hits read from SRAM; misses streamed past it, written only when kept
                reads = u - m if union_exec else reads
                fills = m if p.residency in ("lru", "lfu") else 0 * m
            if p.placement == "stripe":  # every bank gets its round-robin share of the step's lines
                read_lines = _round_robin(int(reads.sum()) * lines, ns)
                write_lines = _round_robin(int(fills.sum()) * lines, ns)
            else:
                read_lines = np.bincount(sram_of_bank, weights=reads * lines, minlength=ns).astype(np.int64)
                write_lines = np.bincount(sram_of_bank, weights=fills * lines, minlength=ns).astype(np.int64)
            port_cycles = -(-((read_lines + write_lines) * p.sram_line_interval_cycles) // p.ports_per_bank)

            def call(starts_b, lengths_b, l=l):
                if not starts_b:
                    return 0, 0.0, 0
                s_arr = np.array(starts_b, dtype=np.int64)
                l_arr = np.array(lengths_b, dtype=np.int64)
                time_ns, moved, hits, misses = service(s_arr, l_arr, len(s_arr), dram.params, state)
                acc[l, COL["dram_requests"]] += len(s_arr)
                acc[l, COL["dram_row_hits"]] += hits
                acc[l, COL["dram_row_misses"]] += misses
                cycles = 0 if time_ns <= 0 else int(math.ceil(time_ns * (p.frequency_hz / 1e9) - 1e-9))
                return cycles, time_ns, moved

            pred = ([p.layout.total_bytes + l * p.predictor_bytes_per_layer], [p.predictor_bytes_per_layer])
            pred_cycles, pred_ns, pred_moved = call(*pred) if p.sparse else (0, 0.0, 0)
            starts_b, lengths_b = [], []
            ch = _channels(miss[0, l], B)
            if len(ch):
                breaks = np.flatnonzero(np.diff(ch) != 1) + 1
                for run in np.split(ch, breaks):
                    starts_b.append(p.layout.channel_address_bytes(l, int(run[0])))
                    lengths_b.append(len(run) * bundle)
            fetch_cycles, fetch_ns, moved = call(starts_b, lengths_b)
            ffn_macs = 3 * p.hidden * (int(u.sum()) * tokens if union_exec else int(tok_ch[t, l].sum()))
            pred_macs = tokens * (p.hidden * rank + rank * p.intermediate) if p.sparse else 0
            stage = [0] * NUM_STAGES
            stage[PREFETCH] = pred_cycles
            stage[PREDICTOR] = -(-pred_macs // mpc)
            stage[TOPK] = p.topk_cycles_per_bank * -(-(tokens * nb) // ns) if p.sparse else 0
            stage[FETCH] = fetch_cycles
            stage[SRAM] = int(port_cycles.max())
            stage[COMPUTE] = -(-ffn_macs // mpc)
            # double buffering across layer-steps: the prefetch hides in the last layer-step's idle DRAM time
            hidden = min(stage[PREFETCH], idle) if p.double_buffer else 0
            stage[PREFETCH] -= hidden
            total, owner = critical_owner_py(stage, pipe)
            idle = max(0, total - stage[PREFETCH] - stage[FETCH])
            row = {
                "steps": 1, "tokens": tokens, "cycles": total, "ffn_scope_cycles": total, BOUND_COLUMNS[owner]: total,
                "dram_busy_cycles": pred_cycles + fetch_cycles, "sram_port_busy_cycles": stage[SRAM],
                "compute_busy_cycles": stage[PREDICTOR] + stage[COMPUTE], "vector_busy_cycles": stage[TOPK],
                "predictor_compute_cycles": stage[PREDICTOR], "ffn_compute_cycles": stage[COMPUTE],
                "topk_cycles": stage[TOPK], "predictor_dram_cycles": pred_cycles,
                "prefetch_dram_cycles": pred_cycles, "prefetch_hidden_cycles": hidden, "ffn_fetch_cycles": fetch_cycles,
                "dram_read_bytes": moved + pred_moved, "dram_ffn_bytes": int(m.sum()) * bundle,
                "dram_predictor_bytes": p.predictor_bytes_per_layer if p.sparse else 0,
                "sram_read_lines": int(reads.sum()) * lines,
                "sram_write_lines": int(fills.sum()) * lines, "ffn_macs": ffn_macs, "predictor_macs": pred_macs,
                "union_channels": int(u.sum()), "miss_channels": int(m.sum()),
                "token_channels": int(tok_ch[t, l].sum()), "bank_max_cycles": int(port_cycles.max()),
                "bank_total_cycles": int(port_cycles.sum()),
            }  # fmt: skip
            time_ns = pred_ns + fetch_ns
            for key, value in row.items():
                acc[l, COL[key]] += value
            acc_ns[l] += time_ns
            acc_sram[:, 0] += read_lines
            acc_sram[:, 1] += write_lines
            acc_sram[:, 2] += port_cycles
            acc_bank[l, :, 0] += reads
            acc_bank[l, :, 1] += m
    return VariantResult(name, p, acc, acc_ns, acc_sram, acc_bank, pipe.nodes, pipe.edges)
