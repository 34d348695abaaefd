"""Every shipped hwconfig simulates a small synthetic trace end to end (marker smoke)."""

from pathlib import Path

import pytest

from codesign.sim.config import load_hwconfig
from codesign.sim.report import build_report, write_csv, write_json
from codesign.sim.simulation import simulate
from codesign.trace.synth import SynthSpec, write_synthetic

pytestmark = pytest.mark.smoke

HWCONFIGS = sorted(Path(__file__).resolve().parents[2].joinpath("hwconfigs").glob("*.yaml"))


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("smoke") / "uniform.zarr"
    spec = SynthSpec(
        "correlated", 64, 512, 2, bank_size=64, k=16, sequences=2, prefill_tokens=3, decode_tokens=6
    )
    write_synthetic(spec, path)
    return path


def test_hwconfigs_are_found():
    assert len(HWCONFIGS) >= 6


@pytest.mark.parametrize("hw", HWCONFIGS, ids=lambda p: p.stem)
def test_hwconfig_runs_end_to_end(hw, trace, tmp_path):
    cfg = load_hwconfig(hw)
    report = build_report(simulate(cfg, trace, batch=2))
    t = report["totals"]
    assert report["synthetic"] and report["label"] == "synthetic"
    assert t["tokens"] == 18 and t["cycles"] > 0 and t["energy_pj"] > 0
    assert sum(report["bound_by"].values()) == t["cycles"]  # by construction; the checks below can fail
    assert all(0.0 <= u <= 1.0 for u in report["utilisation"].values())
    assert (
        t["achieved_dram_bandwidth_bytes_per_s"]
        <= report["hwconfig"]["derived"]["peak_dram_bandwidth_bytes_per_s"]
    )
    assert report["dense_baseline"]["totals"]["union_channels"] >= t["union_channels"]
    assert len(report["per_layer"]) == 2 and len(report["per_bank"]) == cfg.sram.num_banks
    assert report["hwconfig"]["name"] == cfg.name
    if not cfg.sparsity.is_dense:
        assert report["global_topk"] is not None  # synthetic: regenerated at the config's (B, k)
    write_json(report, tmp_path / "r.json")
    write_csv(report, tmp_path / "csv")
