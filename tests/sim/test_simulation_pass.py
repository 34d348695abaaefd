"""The whole job in one pass over the trace: the sparse run and its baselines fed together equal each run
replayed on its own, and the global top-k masks stored at synthesis equal the regenerated ones."""

import shutil

import numpy as np
import pytest

from codesign.sim.config import load_hwconfig
from codesign.sim.dram import build_dram
from codesign.sim.engine import simulate_variant
from codesign.sim.simulation import params_from_config, simulate, synthetic_blocks, trace_blocks
from codesign.trace.store import TraceReader
from codesign.trace.synth import GLOBAL_TOPK_STORE, SynthSpec, write_synthetic


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("pass") / "t.zarr"
    spec = SynthSpec("zipf", 64, 512, 3, sequences=3, prefill_tokens=4, decode_tokens=9, seed=7)
    write_synthetic(spec, path, chunk_tokens=8)  # several chunks: steps straddle chunk boundaries
    return path


def cfg(*overrides):
    return load_hwconfig(
        "hwconfigs/bank64.yaml", ["sram.num_banks=4", "sram.bank_size_bytes=16384", *overrides]
    )


@pytest.mark.parametrize("residency", ["lru", "none"])  # pinned_hot: see the last test
def test_shared_pass_equals_each_variant_alone(trace, residency):
    c = cfg(f"sram.residency={residency}")
    res = simulate(c, trace, batch=2)
    reader = TraceReader(trace)
    p = params_from_config(c, 64, 512, 3, None)
    spec = SynthSpec(**reader.meta.extra["synth"])
    alone = {
        "sparse": simulate_variant(
            "sparse", p, lambda: trace_blocks(reader, p, "masks"), build_dram(c.dram), 2
        ),
        "dense": simulate_variant(
            "dense", p.with_k(64), lambda: trace_blocks(reader, p, "dense"), build_dram(c.dram), 2
        ),
        "global_topk": simulate_variant(
            "g", p, lambda: synthetic_blocks(spec, reader.num_tokens, p, True), build_dram(c.dram), 2
        ),
    }
    for name, v in alone.items():
        np.testing.assert_array_equal(getattr(res, name).per_layer, v.per_layer, err_msg=name)
        np.testing.assert_array_equal(getattr(res, name).per_sram_bank, v.per_sram_bank, err_msg=name)
    assert res.global_topk.total("cycles") != res.sparse.total("cycles")  # a different routing, not an alias


def test_stored_global_topk_equals_regenerated(trace, tmp_path):
    copy = tmp_path / "old.zarr"
    shutil.copytree(trace, copy)
    shutil.rmtree(copy / GLOBAL_TOPK_STORE)  # a trace written before the sub-store existed
    new, old = simulate(cfg(), trace), simulate(cfg(), copy)
    assert "selected at synthesis" in new.global_topk_note and "regenerated" in old.global_topk_note
    np.testing.assert_array_equal(new.global_topk.per_layer, old.global_topk.per_layer)


def test_progress_counts_every_token_once(trace):
    seen = []
    simulate(cfg(), trace, progress=lambda n, total: seen.append((n, total)))
    assert sum(n for n, _ in seen) == 39 and {t for _, t in seen} == {39}


def test_pinned_hot_is_profiled_on_the_other_half_not_on_what_it_replays(trace):
    """Each half is replayed with the set profiled on the other half; an oracle profiled on the replayed
    tokens themselves hits more. The engine result equals a hand-built two-part replay."""
    from codesign.sim.engine import VariantRun, profile_pinned
    from codesign.sim.simulation import _token_range

    c = cfg("sram.residency=pinned_hot")
    res = simulate(c, trace)
    reader = TraceReader(trace)
    p = params_from_config(c, 64, 512, 3, None)
    blocks = lambda: trace_blocks(reader, p, "masks")  # noqa: E731
    T, mid = reader.num_tokens, reader.num_tokens // 2
    run = VariantRun("s", p, build_dram(c.dram), 1, pinned=profile_pinned(p, _token_range(blocks(), mid, T)))
    for b in _token_range(blocks(), 0, mid):
        run.feed(b)
    run.set_pinned(profile_pinned(p, _token_range(blocks(), 0, mid)))
    for b in _token_range(blocks(), mid, T):
        run.feed(b)
    np.testing.assert_array_equal(res.sparse.per_layer, run.finish().per_layer)
    oracle = simulate_variant("o", p, blocks, build_dram(c.dram), 1)  # profiles the tokens it replays
    hits = lambda v: v.total("union_channels") - v.total("miss_channels")  # noqa: E731
    assert 0 < hits(res.sparse) < hits(oracle)
