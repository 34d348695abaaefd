"""DRAM model: device timing (blocked one cycle early, ready on time), analytic limits (deviation reported),
peak never exceeded, and the njit kernel equal to its per-burst Python twin on random request lists."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from numba import njit

from codesign.sim.config import load_hwconfig
from codesign.sim.dram import PRESETS, build_dram, service_requests
from codesign.sim.dram.presets import ceil_ps

BANK64 = Path(__file__).parents[2] / "hwconfigs" / "bank64.yaml"
NO_REFRESH = "dram.timing.tRFC_ns=0"


def dram_for(*overrides):
    """bank_timing, the reference model these device-timing tests hold (bank64's default is bank_stream)."""
    return build_dram(load_hwconfig(BANK64, ["dram.model=bank_timing", *overrides]).dram)


def address(dram, channel, bank, row, column=0):
    """Inverse of the documented mapping: the byte address of (channel, bank, row, column)."""
    g = dram.device.geometry
    C, G, R, NB = dram.device.channels, g.interleave_bytes, g.row_bytes, g.banks_per_channel
    local = (row * NB + bank) * R + column
    return ((local // G) * C + channel) * G + local % G


def ps(ns):
    return ceil_ps(ns)


# ---- device timing ---------------------------------------------------------------------------------------


@pytest.mark.timing
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_unloaded_read_is_trcd_plus_tcl_plus_burst(preset):
    dram = dram_for(f"dram.preset={preset}", NO_REFRESH)
    t = dram.device.timing
    r = dram.service([0], [32])
    expected_ps = ps(t.tRCD_ns) + ps(t.tCL_ns) + ps(dram.device.burst_ns)
    assert round(r.time_ns * 1000) == expected_ps
    assert r.time_ns == pytest.approx(dram.device.unloaded_read_ns, abs=1e-3)
    assert (r.bytes_moved, r.row_hits, r.row_misses) == (dram.device.burst_bytes, 0, 1)


@pytest.mark.timing
def test_unloaded_read_with_refresh_is_stretched_by_the_refresh_fraction():
    dram = dram_for()
    t = dram.device.timing
    raw_ps = ps(t.tRCD_ns) + ps(t.tCL_ns) + ps(1.25)
    available = ps(t.tREFI_ns) - ps(t.tRFC_ns)
    expected_ps = raw_ps + -(-raw_ps * ps(t.tRFC_ns) // available)
    assert round(dram.service([0], [32]).time_ns * 1000) == expected_ps


@pytest.mark.timing
def test_second_activation_of_a_bank_waits_for_trc():
    """Two rows of one bank: the second ACT is blocked until tRC (not done one cycle early, done on time)."""
    dram = dram_for(NO_REFRESH)
    t, tck_ns = dram.device.timing, 1.0  # bank64's clock period
    reads = [address(dram, 3, 5, 7), address(dram, 3, 5, 8)]
    done = dram.service(reads, [32, 32]).time_ns
    # ACT2 = max(tRC, max(tRAS, tRCD + tRTP) + tRP) = max(45, 28.1 + 16.3) = 45 ns for HBM3
    act2 = max(t.tRC_ns, max(t.tRAS_ns, t.tRCD_ns + t.tRTP_ns) + t.tRP_ns)
    expected = act2 + t.tRCD_ns + t.tCL_ns + dram.device.burst_ns
    assert done == pytest.approx(expected, abs=1e-9)
    assert not done <= expected - tck_ns  # blocked one cycle early
    # one cycle less tRC moves completion one cycle earlier: tRC is the binding limit here
    faster = dram_for(NO_REFRESH, f"dram.timing.tRC_ns={t.tRC_ns - tck_ns}").service(reads, [32, 32]).time_ns
    assert faster == pytest.approx(expected - 0.6, abs=1e-9)  # until tRAS + tRP = 44.4 ns binds


@pytest.mark.timing
def test_fifth_activation_waits_for_tfaw():
    dram = dram_for(NO_REFRESH)
    t = dram.device.timing
    reads = [address(dram, 0, bank, 0) for bank in range(5)]
    done = dram.service(reads, [32] * 5).time_ns
    # ACTs at 0, tRRD, 2 tRRD, 3 tRRD, then tFAW (15 ns) instead of 4 tRRD (10 ns)
    expected = t.tFAW_ns + t.tRCD_ns + t.tCL_ns + dram.device.burst_ns
    assert done == pytest.approx(expected, abs=1e-9)
    relaxed = dram_for(NO_REFRESH, "dram.timing.tFAW_ns=10").service(reads, [32] * 5).time_ns
    assert relaxed == pytest.approx(4 * t.tRRD_S_ns + t.tRCD_ns + t.tCL_ns + dram.device.burst_ns, abs=1e-9)


@pytest.mark.timing
def test_second_bank_waits_for_trrd():
    dram = dram_for(NO_REFRESH)
    t = dram.device.timing
    done = dram.service([address(dram, 0, 0, 0), address(dram, 0, 1, 0)], [32, 32]).time_ns
    assert done == pytest.approx(t.tRRD_S_ns + t.tRCD_ns + t.tCL_ns + dram.device.burst_ns, abs=1e-9)


@pytest.mark.timing
def test_open_rows_persist_across_calls():
    dram = dram_for(NO_REFRESH)
    t, burst = dram.device.timing, dram.device.burst_ns
    state = dram.new_state()
    dram.service([address(dram, 2, 4, 9)], [32], state)
    assert dram.open_rows(state)[2, 4] == 9
    hit = dram.service([address(dram, 2, 4, 9, column=64)], [32], state)
    assert hit.time_ns == pytest.approx(t.tCL_ns + burst, abs=1e-9) and (hit.row_hits, hit.row_misses) == (
        1,
        0,
    )
    conflict = dram.service([address(dram, 2, 4, 10)], [32], state)
    assert conflict.time_ns == pytest.approx(t.tRP_ns + t.tRCD_ns + t.tCL_ns + burst, abs=1e-9)
    assert dram.open_rows(state)[2, 4] == 10


def test_a_bundle_spreads_over_channels_and_counts_bursts():
    """A 21.5 KB Qwen2.5-7B bundle: 672 bursts over all 32 pseudo-channels, one ACT per row touched."""
    dram = dram_for(NO_REFRESH)
    r = dram.service([5 * 21504], [21504])
    assert r.bytes_moved == 21504 and r.row_hits + r.row_misses == 21504 // 32
    # 21504 B = 84 chunks of 256 B over 32 channels: 2-3 chunks per channel, within one 1 KB row each
    assert 32 <= r.row_misses <= 64


# ---- analytic limits -------------------------------------------------------------------------------------


@pytest.mark.analytic
@pytest.mark.parametrize("config", [(), ("dram.preset=hbm3e", "dram.stacks=6"), ("dram.preset=lpddr5",)])
def test_streaming_row_hits_approach_peak(config):
    dram = dram_for(*config)
    dev = dram.device
    nbytes = 64 * 1024 * dev.channels  # 64 KB per channel: startup latency < 1 % of the stream
    r = dram.service([0], [nbytes])
    achieved = r.bandwidth_bytes_per_s
    vs_peak = 1 - achieved / dev.peak_bandwidth_bytes_per_s
    vs_sustained = 1 - achieved / dev.sustained_bandwidth_bytes_per_s
    print(
        f"\n{dev.preset}: {achieved / 1e9:.1f} GB/s = peak − {vs_peak:.2%} "
        f"(refresh derate {dev.refresh_fraction:.2%}), sustained − {vs_sustained:.2%}"
    )
    assert achieved <= dev.peak_bandwidth_bytes_per_s
    assert 0 <= vs_sustained < 0.02  # within 2 % of peak × (1 − tRFC/tREFI)
    assert r.row_misses == nbytes // dev.geometry.row_bytes  # one ACT per row, every other burst a hit


@pytest.mark.analytic
@pytest.mark.parametrize("banks", [16, 2])
def test_random_small_reads_to_distinct_rows_fall_to_the_activation_limit(banks):
    """Every 32 B read opens a new row; banks visited round robin. Rate → min(4/tFAW, 1/tRRD, banks/tRC)."""
    dram = dram_for(f"dram.geometry.banks_per_channel={banks}")
    dev, rng = dram.device, np.random.default_rng(1234)
    per_channel = 1000
    rows = rng.permutation(100_000)[:per_channel]  # distinct random rows
    reads = [
        address(dram, ch, i % banks, int(rows[i])) for i in range(per_channel) for ch in range(dev.channels)
    ]
    r = dram.service(reads, [32] * len(reads))
    assert r.row_misses == len(reads) and r.row_hits == 0
    rate = per_channel / r.time_ns  # ACTs per ns per channel
    limit = dev.activation_limit_per_ns * (1 - dev.refresh_fraction)
    deviation = 1 - rate / limit
    binding = "tFAW" if banks == 16 else "tRC"
    print(
        f"\n{banks} banks ({binding}-bound): {rate:.4f} ACT/ns/channel vs closed form {limit:.4f}: {-deviation:+.2%}"
    )
    # off the steady-state limit only by the pipeline fill/drain (first window, tRCD + tCL of the last read)
    assert abs(deviation) < 0.03
    activation_bound = dev.activation_limit_per_ns * 1e9 * 32 * dev.channels  # 32 B per ACT, all channels
    assert r.bandwidth_bytes_per_s <= activation_bound < 0.4 * dev.peak_bandwidth_bytes_per_s  # not bus-bound


@pytest.mark.analytic
def test_random_bank_order_never_beats_the_activation_limit():
    dram = dram_for()
    dev, rng = dram.device, np.random.default_rng(7)
    n = 4000
    reads = [
        address(dram, 0, int(b), int(row))
        for b, row in zip(rng.integers(0, 16, n), rng.permutation(10**6)[:n], strict=True)
    ]
    r = dram.service(reads, [32] * n)
    rate, limit = n / r.time_ns, dev.activation_limit_per_ns * (1 - dev.refresh_fraction)
    print(f"\nrandom banks, FCFS: {rate:.4f} ACT/ns vs limit {limit:.4f} ({rate / limit:.1%})")
    assert rate <= limit


# ---- properties and twins --------------------------------------------------------------------------------

SMALL_GEOMETRIES = [
    (),
    (
        "dram.geometry.channels_per_stack=3",
        "dram.geometry.banks_per_channel=2",
        "dram.geometry.row_bytes=256",
    ),
    ("dram.preset=hbm2", "dram.geometry.interleave_bytes=64"),
    ("dram.preset=ddr5", "dram.geometry.row_bytes=512"),
    ("dram.preset=lpddr5", "dram.timing.tCCD_S_ns=4"),  # tCCD_S longer than a burst
    ("dram.model=ideal",),
]


def _random_requests(rng, n, span, max_len):
    starts = rng.integers(0, span, n)
    lengths = rng.integers(0, max_len, n)
    lengths[rng.random(n) < 0.1] = 0  # empty requests are skipped
    return starts.astype(np.int64), lengths.astype(np.int64)


@pytest.mark.parametrize("config", SMALL_GEOMETRIES, ids=lambda c: ",".join(c) or "bank64")
def test_njit_kernel_equals_python_twin_exactly(config):
    dram = dram_for(*config)
    rng = np.random.default_rng(zlib.crc32(",".join(config).encode()))  # fixed seed per config
    slots = dram.device.channels * dram.device.geometry.banks_per_channel
    for _trial in range(40):
        state_jit, state_py = dram.new_state(), dram.new_state()
        for _call in range(3):  # state (open rows) carries over between calls
            starts, lengths = _random_requests(rng, int(rng.integers(1, 25)), 1 << 20, 6000)
            a = dram.service(starts, lengths, state_jit)
            b = dram.service(starts, lengths, state_py, twin=True)
            assert a == b, (config, starts, lengths)
            assert np.array_equal(state_jit[:slots], state_py[:slots])
            assert a.row_hits + a.row_misses == a.bytes_moved // dram.device.burst_bytes


@pytest.mark.parametrize("config", SMALL_GEOMETRIES, ids=lambda c: ",".join(c) or "bank64")
def test_achieved_bandwidth_never_exceeds_peak(config):
    dram = dram_for(*config)
    rng = np.random.default_rng(99)
    for _trial in range(100):
        starts, lengths = _random_requests(rng, int(rng.integers(1, 60)), 1 << 24, 40_000)
        r = dram.service(starts, lengths)
        assert r.bytes_moved >= lengths.sum()
        assert r.bytes_moved * 1e9 <= dram.device.peak_bandwidth_bytes_per_s * r.time_ns * (1 + 1e-12)


def test_only_the_first_n_requests_are_served_and_zero_requests_take_no_time():
    dram = dram_for()
    starts = np.array([0, 4096, 8192], dtype=np.int64)
    lengths = np.array([64, 64, 1 << 20], dtype=np.int64)
    t, moved, _, _ = service_requests(starts, lengths, 2, dram.params, dram.new_state())
    assert moved == 128
    assert service_requests(starts, lengths, 0, dram.params, dram.new_state()) == (0.0, 0, 0, 0)


def test_kernel_is_callable_from_njit_code():
    """The engine calls the kernel from its own njit loop; the contract must hold there too."""

    @njit
    def two_steps(starts, lengths, params, state):
        t1, b1, _, _ = service_requests(starts, lengths, starts.size, params, state)
        t2, b2, h2, _ = service_requests(starts, lengths, starts.size, params, state)  # rows now open
        return t1, t2, b1 + b2, h2

    dram = dram_for(NO_REFRESH)
    starts, lengths = np.array([0, 21504], dtype=np.int64), np.array([21504, 21504], dtype=np.int64)
    t1, t2, moved, hits = two_steps(starts, lengths, dram.params, dram.new_state())
    assert moved == 4 * 21504 and t2 < t1 and hits == 2 * 21504 // 32


def test_bad_requests_are_config_errors():
    from codesign.errors import ConfigError

    dram = dram_for()
    with pytest.raises(ConfigError, match="negative"):
        dram.service([-1], [32])
    with pytest.raises(ConfigError, match="must be equal 1-D"):
        dram.service([0, 1], [32])
    with pytest.raises(ConfigError, match="DRAM state"):
        dram.service([0], [32], np.zeros(3, dtype=np.int64))


@pytest.mark.analytic
def test_ideal_model_is_bytes_over_bandwidth_plus_one_activation():
    dram = dram_for("dram.model=ideal", NO_REFRESH)
    t, dev = dram.device.timing, dram.device
    nbytes = 32 * 1000 + 5  # 1001 bursts over 32 channels: 32 on the busiest one
    r = dram.service([0], [nbytes])
    assert (r.bytes_moved, r.row_misses) == (1001 * 32, 0)
    assert r.time_ns == pytest.approx(t.tRCD_ns + t.tCL_ns + 32 * dev.burst_ns, abs=1e-9)
    timed = dram_for().service(
        [0], [1 << 24]
    )  # bank_timing on the same stream: within 2 % of ideal + refresh
    ideal = dram_for("dram.model=ideal").service([0], [1 << 24])
    print(f"\n16 MB stream: bank_timing {timed.time_ns:.0f} ns vs ideal {ideal.time_ns:.0f} ns")
    assert ideal.time_ns <= timed.time_ns < 1.02 * ideal.time_ns


@pytest.mark.analytic
@pytest.mark.parametrize("override", ["dram.bandwidth_gbps=1638.4", "dram.geometry.data_rate_gtps=3.2"])
def test_a_changed_data_rate_moves_the_streaming_ceiling_with_it(override):
    """tCCD_S follows the data rate (it counts clock cycles), so a 2× faster bus streams 2× faster."""
    dram = dram_for(override)
    dev = dram.device
    r = dram.service([0], [64 * 1024 * dev.channels])
    print(
        f"\n{override}: {r.bandwidth_bytes_per_s / 1e9:.1f} GB/s, peak {dev.peak_bandwidth_bytes_per_s / 1e9:.1f}"
    )
    assert dev.timing.tCCD_S_ns == pytest.approx(dev.burst_ns)
    assert 0 <= 1 - r.bandwidth_bytes_per_s / dev.sustained_bandwidth_bytes_per_s < 0.03


@pytest.mark.parametrize("model", ["bank_timing", "ideal"])
def test_n_beyond_the_buffers_reads_only_the_buffers(model):
    dram = dram_for(f"dram.model={model}")
    starts, lengths = np.array([0, 4096], dtype=np.int64), np.array([64, 64], dtype=np.int64)
    within = dram.kernel(starts, lengths, 2, dram.params, dram.new_state())
    assert dram.kernel(starts, lengths, 10, dram.params, dram.new_state()) == within
    assert dram.kernel_py(starts, lengths, 10, dram.params, dram.new_state()) == within
