"""`codesign validate --device cpu`: the quick subset end to end through the CLI, a misconfigured simulator
that must fail, and the simulator's byte counts against an independent sector count (no kernel)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from codesign.validate.cases import RECORDED, SYNTHETIC, Case, case_masks, default_recorded_path, grid
from codesign.validate.memsys import simulate_case

# 2 banks of 64, one layer, two launches of one token: the smallest case that runs every decode kernel
TINY = Case(SYNTHETIC, 1, 64, 16, 256, 128, layers=1, launches=2, seed=5)


def test_quick_subset_end_to_end_through_the_cli(tmp_path):
    out = tmp_path / "v.json"
    proc = subprocess.run(
        [sys.executable, "-m", "codesign", "validate", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    report = json.loads(out.read_text())
    assert report["ok"] and report["cases_total"] == len(grid(quick=True)) == 3
    names = {c["case"]["name"] for c in report["cases"]}
    assert {"syn T1 B64 k8 d256 I256", "syn T16 B64 k16 d256 I256", "syn T4 B64 k16 d200 I320"} == names
    for case in report["cases"]:
        checks = {c["quantity"]: c for c in case["checks"]}
        for q in ("weights@32B", "weights@128B"):  # exact, and not trivially zero
            assert checks[q]["measured"] == checks[q]["simulated"] > 0
        t, d = case["case"]["tokens"], case["case"]["hidden"]
        layer_steps = case["case"]["layers"] * case["case"]["launches"]
        assert checks["activations"]["simulated"] == layer_steps * t * d * 2
        assert abs(checks["index"]["error"]) <= checks["index"]["tolerance_bytes"]
    # d = 200: 1200 B bundles straddle sectors and lines, so 128 B lines cost more than 32 B sectors
    odd = next(c for c in report["cases"] if c["case"]["hidden"] == 200)
    by_q = {c["quantity"]: c["measured"] for c in odd["checks"]}
    assert by_q["weights@128B"] > by_q["weights@32B"]
    for text in ("syn T16 B64 k16 d256 I256", "all within tolerance", "weights@32B"):
        assert text in proc.stdout


def test_reuse_across_launches_fails():
    """residency lru: the second launch's repeated channels hit on chip, so the simulator under-counts."""
    from codesign.validate.cpu import run_cpu

    report = run_cpu([TINY], overrides=["sram.residency=lru"])
    assert report["ok"] is False
    weights = next(c for c in report["cases"][0]["checks"] if c["quantity"] == "weights@32B")
    assert not weights["ok"] and 0 < weights["simulated"] < weights["measured"]


def test_wrong_transfer_size_exits_non_zero_through_the_cli(capsys):
    """64 B bursts: 1200 B bundles (d = 200) straddle 64 B blocks differently from 32 B sectors."""
    from codesign.cli import main

    args = ["validate", "--source", "synthetic", "--tokens", "1", "-B", "64", "-k", "16", "--hidden", "200",
            "--intermediate", "128", "--layers", "1", "--launches", "1", "--set", "dram.geometry.burst_length=16"]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 1
    out = capsys.readouterr().out
    assert "OUT OF TOLERANCE" in out and "1 failed" in out


def _sector_bytes(masks, case, granule):
    """Independent count: distinct `granule`-byte blocks covered by the bundles each launch reads."""
    bundle = 3 * case.hidden * 2
    layer_bytes = case.intermediate * bundle
    total = 0
    for launch in range(case.launches):
        step = masks[launch * case.tokens : (launch + 1) * case.tokens]  # (T, L, I)
        for layer in range(case.layers):
            blocks = set()
            for c in np.flatnonzero(step[:, layer].any(axis=0)):
                start = layer * layer_bytes + int(c) * bundle
                blocks.update(range(start // granule, (start + bundle - 1) // granule + 1))
            total += len(blocks) * granule
    return total


@pytest.mark.parametrize("granule", [32, 128])
def test_simulated_weight_bytes_match_an_independent_sector_count(granule):
    case = Case(SYNTHETIC, 4, 32, 8, 200, 320, layers=2, launches=2, seed=11)  # 1200 B bundles
    masks = case_masks(case)
    sim = simulate_case(case, masks, granule)
    assert sim.granularity_bytes == granule
    assert sim.weight_bytes == _sector_bytes(masks, case, granule)
    assert sim.ffn_bytes == sim.union_channels * 1200 < sim.weight_bytes


def test_recorded_masks_read_at_twice_the_bank_size():
    from codesign.trace.store import TraceReader

    case = Case(RECORDED, 4, 128, 32, 576, 1536, layers=2, launches=2)
    masks = case_masks(case)
    recorded = TraceReader(default_recorded_path()).read(0, 8).masks()[:, :2]
    assert np.array_equal(masks, recorded)
    assert (masks.reshape(8, 2, 12, 128).sum(-1) == 32).all()
