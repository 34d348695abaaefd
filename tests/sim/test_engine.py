"""Engine pieces: bank words, step grouping, the stage DAG, and the numba engine equal to its numpy twin."""

import dataclasses
import itertools

import networkx as nx
import numpy as np
import pytest

from codesign.sim.config import load_hwconfig
from codesign.sim.dram import build_dram
from codesign.sim.engine import (
    Block,
    SimParams,
    decode_concurrency,
    dense_words,
    group_steps,
    group_steps_numba,
    simulate_variant,
    step_starts,
    words_from_bits,
    words_from_masks,
)
from codesign.sim.layer_step import dram_kernel_id, time_layer_steps, time_layer_steps_par
from codesign.sim.pipeline import (
    BOUND_COLUMNS,
    LAYER_COLUMNS,
    R_COMPUTE,
    R_DRAM,
    R_SRAM,
    R_VECTOR,
    STAGE_BUF_WIDTH,
    STAGES,
    build_pipeline,
    compile_pipeline,
    critical_owner,
    critical_owner_py,
)
from codesign.sim.reference_numpy import simulate_variant_ref
from codesign.trace.store import pack_masks
from codesign.trace.synth import bank_topk_mask


def small_params(**overrides) -> SimParams:
    base = dict(
        hidden=64, intermediate=512, layers=3, bank_size=64, k=16, dtype_bytes=2, num_sram_banks=4,
        bank_size_bytes=4096, line_bytes=64, ports_per_bank=1, sram_line_interval_cycles=2, macs_per_cycle=256,
        topk_cycles_per_bank=64, frequency_hz=1e9, execution="batch_union", residency="lru", double_buffer=True,
        predictor_rank=16, sram_read_energy_pj=1.0, sram_write_energy_pj=1.0, dram_energy_pj_per_bit=3.5,
        mac_energy_pj=0.5, leakage_mw_per_bank=1.0, area_mm2_per_bank=0.1,
    )  # fmt: skip
    return SimParams(**{**base, **overrides})


@pytest.fixture(scope="module")
def dram():
    return build_dram(
        load_hwconfig("hwconfigs/bank64.yaml", ["dram.model=bank_timing"]).dram
    )  # the reference


def make_blocks(masks, is_decode, seq_id, bank_size, chunk):
    words = words_from_masks(masks, bank_size)

    def blocks():
        for i in range(0, len(words), chunk):
            yield Block(words[i : i + chunk], is_decode[i : i + chunk], seq_id[i : i + chunk])

    return blocks


def uniform_trace(rng, tokens, p, prefill=0):
    masks = bank_topk_mask(rng.standard_normal((tokens, p.layers, p.intermediate)), p.bank_size, p.k)
    is_decode = np.arange(tokens) >= prefill
    seq_id = np.where(is_decode, np.arange(tokens) % 3, 0).astype(np.int32)
    return masks, is_decode, seq_id


@pytest.mark.parametrize("bank_size", [32, 64, 128, 48])
def test_words_from_bits_equals_words_from_masks(bank_size):
    rng = np.random.default_rng(bank_size)
    masks = rng.random((5, 2, 384)) < 0.3
    a = words_from_bits(pack_masks(masks), bank_size)
    b = words_from_masks(masks, bank_size)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, 2, 384 // bank_size, -(-bank_size // 64))
    bits = np.unpackbits(a.view(np.uint8), axis=-1, bitorder="little")[..., :bank_size]  # (T, L, nb, B)
    np.testing.assert_array_equal(bits.reshape(5, 2, 384).astype(bool), masks)
    dense = dense_words(1, 1, 384 // bank_size, bank_size)
    assert np.bitwise_count(dense).sum() == 384


def test_step_starts_groups_decode_batches_and_prefill_chunks():
    #            prefill seq0 ×5      | decode ×7 (any seq)   | prefill seq1 ×2 | decode ×1
    is_decode = np.array([0] * 5 + [1] * 7 + [0] * 2 + [1], dtype=bool)
    seq_id = np.array([0] * 5 + [0, 1, 2, 0, 1, 2, 0] + [1, 1] + [1])
    starts = step_starts(is_decode, seq_id, batch=3, prefill_chunk=2)
    assert starts.tolist() == [0, 2, 4, 5, 8, 11, 12, 14]
    seq_change = np.array([0, 0, 1, 1], dtype=np.int32)
    assert step_starts(np.zeros(4, bool), seq_change, 3, 8).tolist() == [0, 2]  # a new sequence ends a chunk


def test_a_batch_is_distinct_sequences_at_one_decode_step():
    # two sequences decoding in turn: batch 4 cannot hold two positions of one sequence (autoregression)
    seq = np.array([1, 2, 1, 2, 1, 2, 7, 1, 2])  # sequence 7 joins at the fourth step
    starts = step_starts(np.ones(9, bool), seq, batch=4, prefill_chunk=8)
    assert starts.tolist() == [0, 2, 4, 7]  # [1 2] [1 2] [1 2 7] [1 2]
    assert decode_concurrency(np.ones(9, bool), seq) == 3


@pytest.mark.parametrize("W", [1, 2])
def test_group_steps_numba_equals_numpy(W):
    rng = np.random.default_rng(W)
    words = rng.integers(0, 2**63, size=(23, 3, 5, W), dtype=np.uint64)
    starts = np.array([0, 1, 4, 5, 11, 19])
    for a, b in zip(group_steps_numba(words, starts), group_steps(words, starts), strict=True):
        np.testing.assert_array_equal(a, b)


def test_critical_path_matches_networkx_longest_path():
    rng = np.random.default_rng(0)
    for double_buffer, sparse, model, resident in itertools.product((True, False), repeat=4):
        if True:
            g = build_pipeline(double_buffer, sparse, model, resident)
            pipe = compile_pipeline(g)
            for _ in range(40):
                stage = rng.integers(0, 4, size=len(STAGES)).astype(np.int64) * 250  # ties are common
                weighted = nx.DiGraph()  # node weight on its incoming edges + a source
                for n in g.nodes:
                    weighted.add_edge("src", n, w=int(stage[g.nodes[n]["kind"]]))
                for a, b in g.edges:
                    weighted.add_edge(a, b, w=int(stage[g.nodes[b]["kind"]]))
                expected = nx.dag_longest_path_length(weighted, weight="w")
                assert critical_owner(stage, pipe.kinds, pipe.preds) == critical_owner_py(stage, pipe)
                assert critical_owner(stage, pipe.kinds, pipe.preds)[0] == expected
    chain = compile_pipeline(
        build_pipeline(False, True, model=False)
    )  # prefetch, predictor, topk, fetch, sram, compute
    stage = np.zeros(len(STAGES), dtype=np.int64)
    for i, name in enumerate(("prefetch", "predictor", "topk", "fetch", "sram", "compute")):
        stage[STAGES.index(name)] = i + 1
    assert critical_owner(stage, chain.kinds, chain.preds) == (21, R_COMPUTE)


@pytest.mark.parametrize(
    "stage, owner",
    [
        ([3, 1, 34, 12, 6], R_DRAM),  # predictor, topk, fetch, sram, compute: DRAM streams longest
        ([3, 1, 10, 12, 6], R_SRAM),
        ([3, 1, 10, 12, 13], R_COMPUTE),  # compute 3 + 13 on the path
        ([3, 40, 10, 12, 13], R_VECTOR),
        ([3, 1, 12, 12, 6], R_DRAM),  # a tie goes to DRAM, the first resource
    ],
)
def test_critical_path_owner_is_the_resource_on_the_path_with_most_cycles(stage, owner):
    pipe = compile_pipeline(build_pipeline(True, True, model=False))
    vec = np.zeros(len(STAGES), dtype=np.int64)
    for name, cycles in zip(("predictor", "topk", "fetch", "sram", "compute"), stage, strict=True):
        vec[STAGES.index(name)] = cycles
    total, got = critical_owner(vec, pipe.kinds, pipe.preds)
    assert got == owner and total == stage[0] + stage[1] + max(stage[2:])


@pytest.mark.parametrize("residency", ["lru", "lfu", "none", "pinned_hot"])
@pytest.mark.parametrize("execution", ["batch_union", "per_token_gather"])
def test_engine_equals_numpy_twin(dram, residency, execution):
    rng = np.random.default_rng(sum(map(ord, residency + execution)))
    p = small_params(residency=residency, execution=execution, double_buffer=residency != "lfu",
                     fill_bypass=residency in ("lru", "none"))  # fmt: skip
    masks, is_decode, seq_id = uniform_trace(rng, 41, p, prefill=6)
    blocks = make_blocks(masks, is_decode, seq_id, p.bank_size, chunk=13)
    fast = simulate_variant("s", p, blocks, dram, 4, prefill_chunk_tokens=4, max_steps=3)
    slow = simulate_variant_ref("s", p, blocks, dram, 4, prefill_chunk_tokens=4)
    np.testing.assert_array_equal(fast.per_layer, slow.per_layer)
    np.testing.assert_array_equal(fast.per_sram_bank, slow.per_sram_bank)
    np.testing.assert_array_equal(fast.bank_load, slow.bank_load)
    np.testing.assert_allclose(fast.dram_time_ns, slow.dram_time_ns, rtol=1e-12)


def test_engine_equals_twin_with_python_dram_twin_and_dense(dram):
    rng = np.random.default_rng(5)
    p = small_params(k=64, bank_size=128, residency="lru")  # dense, two words per bank
    masks, is_decode, seq_id = uniform_trace(rng, 9, p)
    blocks = make_blocks(masks, is_decode, seq_id, p.bank_size, chunk=4)
    fast = simulate_variant("s", p, blocks, dram, 2)
    slow = simulate_variant_ref("s", p, blocks, dram, 2, service=dram.kernel_py)  # the DRAM model's own twin
    np.testing.assert_array_equal(fast.per_layer, slow.per_layer)


def test_result_does_not_depend_on_chunking(dram):
    rng = np.random.default_rng(11)
    p = small_params()
    masks, is_decode, seq_id = uniform_trace(rng, 37, p, prefill=5)
    results = [
        simulate_variant("s", p, make_blocks(masks, is_decode, seq_id, 64, chunk), dram, 3, max_steps=steps)
        for chunk, steps in ((37, 256), (5, 2), (1, 1))
    ]
    for r in results[1:]:
        np.testing.assert_array_equal(r.per_layer, results[0].per_layer)


@pytest.mark.parametrize(
    "overrides, owner",
    [
        ({"macs_per_cycle": 1}, "compute"),  # a 1-MAC array: compute owns every layer-step
        ({"sram_line_interval_cycles": 5000}, "sram_port"),  # a line every 5 µs: the ports own it
        ({"topk_cycles_per_bank": 100000}, "vector"),
        # wide ports, a big array, fast top-k: streaming the missed bundles from one HBM3 stack is what's left
        (
            {
                "ports_per_bank": 64,
                "sram_line_interval_cycles": 1,
                "macs_per_cycle": 1 << 16,
                "topk_cycles_per_bank": 1,
            },
            "dram",
        ),  # fmt: skip
    ],
)
def test_cycles_are_bound_by_the_resource_that_owns_the_critical_path(dram, overrides, owner):
    rng = np.random.default_rng(2)
    p = small_params(**overrides)
    masks, is_decode, seq_id = uniform_trace(rng, 16, p)
    r = simulate_variant("s", p, make_blocks(masks, is_decode, seq_id, 64, 16), dram, 2)
    col = dict(zip(LAYER_COLUMNS, r.per_layer.T, strict=True))
    np.testing.assert_array_equal(col[f"{owner}_bound_cycles"], col["cycles"])
    # the owner is also the busiest resource, and no resource is busier than the whole run
    busy = {name: col[f"{name}_busy_cycles"].sum() for name in ("dram", "sram_port", "compute", "vector")}
    assert max(busy, key=busy.get) == owner and max(busy.values()) <= col["cycles"].sum()


def test_more_sram_ports_do_not_relabel_a_dram_bound_run(dram):
    """The old split blamed SRAM ports for a DRAM-bound run and flipped with ports_per_bank; ownership does not."""
    rng = np.random.default_rng(5)
    masks, is_decode, seq_id = uniform_trace(rng, 12, small_params())
    out = []
    for ports in (1, 2):
        # dense decode on 64 striped banks and a big array: DRAM-bound
        p = small_params(
            k=64, ports_per_bank=ports, num_sram_banks=64, sram_line_interval_cycles=1, macs_per_cycle=1 << 16
        )
        r = simulate_variant("d", p, make_blocks(masks, is_decode, seq_id, 64, 12), dram, 1)
        out.append({c: r.total(c) for c in ("cycles", *BOUND_COLUMNS)})
    assert out[0] == out[1] and out[0]["dram_bound_cycles"] == out[0]["cycles"]


def test_params_with_k_keeps_everything_else():
    p = small_params()
    d = p.with_k(64)
    assert not d.sparse and d.predictor_bytes_per_layer == 0
    assert dataclasses.replace(d, k=16) == p


def dram_model(model: str):
    return build_dram(load_hwconfig("hwconfigs/bank64.yaml", [f"dram.model={model}"]).dram)


@pytest.mark.parametrize("model", ["ideal", "bank_stream"])
@pytest.mark.parametrize("k", [16, 64])  # sparse (predictor requests every layer-step) and dense
def test_parallel_timing_engine_equals_numpy_twin(model, k):
    dram = dram_model(model)
    rng = np.random.default_rng(k + len(model))
    p = small_params(k=k, layers=4)
    masks, is_decode, seq_id = uniform_trace(rng, 29, p, prefill=4)
    blocks = make_blocks(masks, is_decode, seq_id, p.bank_size, chunk=11)
    fast = simulate_variant("s", p, blocks, dram, 2, prefill_chunk_tokens=4, max_steps=3)
    slow = simulate_variant_ref("s", p, blocks, dram, 2, prefill_chunk_tokens=4)
    np.testing.assert_array_equal(fast.per_layer, slow.per_layer)
    np.testing.assert_array_equal(fast.per_sram_bank, slow.per_sram_bank)
    np.testing.assert_array_equal(fast.bank_load, slow.bank_load)
    np.testing.assert_array_equal(fast.dram_time_ns, slow.dram_time_ns)  # same additions in the same order


@pytest.mark.parametrize("model", ["ideal", "bank_stream"])
def test_parallel_timing_kernel_equals_serial_through_its_in_order_prefix(model):
    """Dense layer-steps that first miss one channel each (bank_stream: not every DRAM channel used yet, so
    the parallel kernel must run those steps in order) then many: every accumulator and the call count equal."""
    dram = dram_model(model)
    rng = np.random.default_rng(3)
    p = small_params(k=64, layers=3)
    S, L, nb, W = 7, p.layers, p.num_model_banks, p.words_per_bank
    need = np.full((S, L, nb, W), np.uint64(0xFFFFFFFFFFFFFFFF))
    miss = rng.integers(0, 1 << 63, size=(S, L, nb, W), dtype=np.int64).astype(np.uint64)
    miss[:3] = 0
    miss[:3, :, int(rng.integers(nb)), 0] = np.uint64(1) << np.uint64(rng.integers(64))  # one bundle per call
    miss[1, 1] = 0  # a layer-step with no request (no DRAM call)
    tok_ch = np.bitwise_count(need).sum(axis=-1, dtype=np.int64)  # (S, L, nb)
    step_tokens = np.ones(S, dtype=np.int64)
    pipe = compile_pipeline(build_pipeline(True, False, model=False))
    args = (need, miss, tok_ch, step_tokens, p.kernel_params(), 1.0, dram_kernel_id(model), dram.params)
    attn = (np.zeros(S, np.int64), np.zeros(S + 1, np.int64), *(np.zeros(0, np.int64),) * 3)  # FFN scope
    R = p.intermediate // 2 + 2
    sched = lambda: np.zeros((S, L, STAGE_BUF_WIDTH), np.int64)  # noqa: E731
    out = []
    for parallel in (False, True):
        state = dram.new_state()
        acc = (np.zeros((L, len(LAYER_COLUMNS)), np.int64), np.zeros(L), np.zeros((p.num_sram_banks, 3), np.int64),
               np.zeros((L, nb, 2), np.int64))  # fmt: skip
        if parallel:
            buffers = (
                np.zeros((L, R), np.int64),
                np.zeros((L, R), np.int64),
                np.zeros((L, p.num_sram_banks, 3), np.int64),
            )
            time_layer_steps_par(*args, state, pipe.kinds, pipe.preds, *attn, *buffers[:2], sched(), np.zeros(2, np.int64),
                                 buffers[2], *acc)  # fmt: skip
        else:
            time_layer_steps(*args, state, pipe.kinds, pipe.preds, *attn, np.zeros(R, np.int64),
                             np.zeros(R, np.int64), sched(), np.zeros(2, np.int64), *acc)  # fmt: skip
        out.append((state[-1], *acc))
    assert out[0][0] == out[1][0] == S * L - 1  # the call counter
    for a, b in zip(out[0][1:], out[1][1:], strict=True):
        np.testing.assert_array_equal(a, b)
