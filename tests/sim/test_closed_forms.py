"""Closed forms and bounds on synthetic uniform k-of-B traces (deviations are printed: pytest -s shows them)."""

import numpy as np
import pytest

from codesign.sim.config import load_hwconfig
from codesign.sim.dram import build_dram
from codesign.sim.engine import Block, dense_words, simulate_variant, words_from_masks
from codesign.sim.report import build_report, variant_summary
from codesign.sim.simulation import params_from_config, simulate
from codesign.trace.synth import SynthSpec, bank_topk_mask, write_synthetic

pytestmark = pytest.mark.analytic

HIDDEN, INTER, LAYERS = 64, 512, 2  # bundle 384 B (whole 32 B bursts), 8 model banks of 64


def config(*overrides):
    # closed forms of the fill-then-read path (every miss written, then read back); bypass: tests/sim/test_golden.py
    return load_hwconfig("hwconfigs/bank64.yaml", ["sram.num_banks=4", "sram.fill_bypass=false", *overrides])


def blocks_of(masks, bank_size=64):
    words = words_from_masks(masks, bank_size)
    T = len(words)
    # every token its own sequence: consecutive tokens can share a decode step (a batch is distinct sequences)
    return lambda: iter([Block(words, np.ones(T, bool), np.arange(T, dtype=np.int32))])


def uniform_masks(seed, tokens, k, bank_size=64):
    scores = np.random.default_rng(seed).standard_normal((tokens, LAYERS, INTER))
    return scores, bank_topk_mask(scores, bank_size, k)


def run(cfg, masks, batch, bank_size=64):
    p = params_from_config(cfg, HIDDEN, INTER, LAYERS, 16)
    v = simulate_variant("s", p, blocks_of(masks, bank_size), build_dram(cfg.dram), batch)
    return p, variant_summary(v, cfg.peak_dram_bandwidth_bytes_per_s)


@pytest.mark.parametrize("batch", [1, 2, 4, 8])
def test_union_density_and_bytes_without_residency(batch):
    k, B, tokens = 16, 64, 96
    _, masks = uniform_masks(batch, tokens, k)
    p, s = run(config("sram.residency=none"), masks, batch)
    t = s["totals"]
    # union per (step, layer, bank), counted independently of the engine
    groups = (
        masks.reshape(tokens // batch, batch, LAYERS, INTER // B, B).any(axis=1).sum(axis=-1)
    )  # (S, L, nb)
    assert t["union_channels"] == int(groups.sum())
    frac = groups.ravel() / B
    expected = 1 - (1 - k / B) ** batch
    stderr = frac.std(ddof=1) / np.sqrt(frac.size) if batch > 1 else 0.0
    deviation = t["union_density"] - expected
    print(f"b={batch}: union density {t['union_density']:.4f} vs 1-(1-k/B)^b {expected:.4f}, "
          f"deviation {deviation:+.4f} (tolerance 5 standard errors = {5 * stderr:.4f}, n={frac.size})")  # fmt: skip
    assert abs(deviation) <= 5 * stderr + 1e-12
    # no residency: every union channel is fetched, exactly once per step, in whole bundles
    assert t["miss_channels"] == t["union_channels"]
    assert t["dram_ffn_bytes"] == t["union_channels"] * p.bundle_bytes
    assert t["dram_read_bytes"] == t["dram_ffn_bytes"] + t["dram_predictor_bytes"]  # all burst-aligned


def test_zero_bank_imbalance_at_batch_one():
    # 8 model banks on 4 SRAM banks: 2 each; every token keeps k per bank → identical port cycles everywhere
    _, masks = uniform_masks(0, 40, 16)
    _, s = run(config("sram.residency=none"), masks, 1)
    assert s["totals"]["bank_imbalance"] == 0.0 and s["totals"]["sram_imbalance_cycles"] == 0.0
    _, s = run(config("sram.residency=none"), masks, 4)  # unions differ between banks
    assert s["totals"]["bank_imbalance"] > 0.0


def test_k_equal_b_is_the_dense_baseline_exactly(tmp_path):
    spec = SynthSpec(
        "uniform", HIDDEN, INTER, LAYERS, bank_size=64, k=64, sequences=2, decode_tokens=6, seed=1
    )
    write_synthetic(spec, tmp_path / "t.zarr")
    cfg = config("sparsity.k=64")
    p = params_from_config(cfg, HIDDEN, INTER, LAYERS, 16)
    from codesign.sim.simulation import trace_blocks
    from codesign.trace.store import TraceReader

    reader = TraceReader(tmp_path / "t.zarr")
    a = simulate_variant("masks", p, lambda: trace_blocks(reader, p, "masks"), build_dram(cfg.dram), 2)
    dense = lambda: iter([Block(dense_words(12, LAYERS, 8, 64), np.ones(12, bool), np.arange(12) % 2)])  # noqa: E731
    b = simulate_variant("dense", p, dense, build_dram(cfg.dram), 2)
    np.testing.assert_array_equal(a.per_layer, b.per_layer)
    report = build_report(simulate(cfg, tmp_path / "t.zarr", batch=2))
    assert report["totals"] == report["dense_baseline"]["totals"]
    assert report["vs_dense"]["speedup"] == 1.0


@pytest.mark.parametrize("overrides", [(), ("sram.double_buffer=false",), ("dram.model=ideal",)])
def test_roofline_bounds(overrides):
    _, masks = uniform_masks(3, 32, 16)
    cfg = config(*overrides)
    p, s = run(cfg, masks, 4)
    t = s["totals"]
    peak_bytes_per_cycle = cfg.peak_dram_bandwidth_bytes_per_s / cfg.clock.frequency_hz
    assert t["cycles"] >= t["macs"] / p.macs_per_cycle
    assert t["cycles"] >= t["dram_read_bytes"] / peak_bytes_per_cycle
    assert t["achieved_dram_bandwidth_bytes_per_s"] <= t["peak_dram_bandwidth_bytes_per_s"]
    print(
        f"{overrides}: achieved/peak DRAM bandwidth {t['achieved_dram_bandwidth_bytes_per_s'] / t['peak_dram_bandwidth_bytes_per_s']:.3f}"
    )


@pytest.mark.parametrize("residency", ["none", "lru"])
def test_more_k_never_fewer_bytes(residency):
    scores, _ = uniform_masks(4, 48, 16)
    previous = None
    for k in (4, 8, 16, 32, 64):  # top-k sets are nested for the same scores
        _, s = run(config(f"sram.residency={residency}", f"sparsity.k={k}"), bank_topk_mask(scores, 64, k), 2)
        ffn = s["totals"]["dram_ffn_bytes"]
        if previous is not None:
            assert ffn >= previous
        previous = ffn


def test_more_sram_never_more_misses():
    _, masks = uniform_masks(6, 64, 16)
    previous = None
    for size in (4096, 16384, 65536, 262144):  # 10, 42, 170, 682 bundles per SRAM bank
        # One macro per bank: a 4 KB bank split four ways would fall below the CACTI sweep.
        _, s = run(
            config("sram.residency=lru", "sram.macros_per_bank=1", f"sram.bank_size_bytes={size}"), masks, 1
        )
        misses = s["totals"]["miss_channels"]
        if previous is not None:
            assert misses <= previous
        previous = misses
    assert (
        misses == np.unique(np.argwhere(masks)[:, 1:], axis=0).shape[0]
    )  # everything fits: cold misses only


def test_deterministic_for_a_seed(tmp_path):
    spec = SynthSpec("zipf", HIDDEN, INTER, LAYERS, sequences=3, prefill_tokens=4, decode_tokens=5, seed=9)
    write_synthetic(spec, tmp_path / "z.zarr")
    a = build_report(simulate(config(), tmp_path / "z.zarr", batch=3))
    b = build_report(simulate(config(), tmp_path / "z.zarr", batch=3))
    assert a == b


@pytest.mark.parametrize("execution", ["batch_union", "per_token_gather"])
def test_execution_modes_count_reads_and_macs(execution):
    _, masks = uniform_masks(8, 24, 16)
    p, s = run(config("sram.residency=none", f"sparsity.execution={execution}"), masks, 4)
    t = s["totals"]
    lines = p.lines_per_bundle
    if execution == "batch_union":  # each union channel read once per step, computed for all 4 tokens
        assert t["sram_read_bytes"] == t["union_channels"] * lines * p.line_bytes
        assert t["ffn_macs"] == 3 * HIDDEN * t["union_channels"] * 4
    else:  # each token reads and computes its own k channels
        assert t["sram_read_bytes"] == t["token_channels"] * lines * p.line_bytes
        assert t["ffn_macs"] == 3 * HIDDEN * t["token_channels"]
    assert t["token_channels"] == int(masks.sum())


@pytest.mark.timing
@pytest.mark.parametrize("ports", [1, 2])
def test_sram_port_time_is_exact(ports):
    """An SRAM-bound layer-step takes predictor + top-k + ceil(lines · interval / ports) cycles: one line more
    on the busiest bank costs exactly `interval / ports` more (blocked until then, not earlier)."""
    cfg = config("sram.residency=none", f"sram.ports_per_bank={ports}", "compute.macs_per_cycle=1000000",
                 "dram.model=ideal", "sram.placement=modulo")  # fmt: skip
    p = params_from_config(cfg, HIDDEN, INTER, LAYERS, 16)
    interval = cfg.sram_line_interval_cycles
    masks = np.zeros((1, LAYERS, INTER), dtype=bool)
    masks[0, :, ::4] = True  # 16 of every 64: 2 model banks per SRAM bank → 32 channels on each
    _, s = run(cfg, masks, 1)
    busy_lines = 32 * 2 * p.lines_per_bundle  # reads + fill writes
    sram = -(-busy_lines * interval // ports)
    pred = -(-(HIDDEN * 16 + 16 * INTER) // p.macs_per_cycle) + p.topk_cycles_per_bank * (INTER // 64 // 4)
    assert s["busy"]["sram_port_cycles"] == LAYERS * sram
    # SRAM-bound: fetch and compute hide under it; the predictor weights' prefetch precedes the predictor,
    # less what hid in the previous layer-step's idle DRAM time
    unhidden = s["dram_split"]["prefetch_cycles"] - s["dram_split"]["prefetch_hidden_cycles"]
    assert 0 < unhidden < s["dram_split"]["prefetch_cycles"]
    assert s["totals"]["cycles"] == LAYERS * (pred + sram) + unhidden
    assert s["bound_by"]["sram_port_cycles"] == s["totals"]["cycles"]
    masks[0, :, 1] = True  # one more channel on SRAM bank 0 only
    _, s2 = run(cfg, masks, 1)
    assert s2["totals"]["cycles"] - s["totals"]["cycles"] == LAYERS * (
        -(-(busy_lines + 2 * p.lines_per_bundle) * interval // ports) - sram
    )
