"""DRAM energy per row activation: scattered sparse reads open a row for a few bursts and pay for it."""

import pytest

from codesign.sim.config import load_hwconfig
from codesign.sim.report import build_report
from codesign.sim.simulation import simulate
from codesign.trace.synth import SynthSpec, write_synthetic


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("energy") / "t.zarr"
    write_synthetic(SynthSpec("uniform", 256, 2048, 2, sequences=1, decode_tokens=4, seed=3), path)
    return path


@pytest.mark.parametrize("model", ["bank_timing", "bank_stream"])
def test_sparse_reads_pay_more_activation_energy_per_byte_than_dense(trace, model):
    cfg = load_hwconfig("hwconfigs/bank64.yaml", [f"dram.model={model}", "sram.residency=none"])
    r = build_report(simulate(cfg, trace))
    s, d = r["totals"], r["dense_baseline"]["totals"]
    assert s["dram_activations"] > 0 and d["dram_activations"] > 0
    per_byte = [t["dram_activation_energy_pj"] / t["dram_read_bytes"] for t in (s, d)]
    assert per_byte[0] > 2 * per_byte[1]  # 1.5 KB bundles scattered over rows vs whole rows streamed
    assert s["dram_activation_energy_pj"] == s["dram_activations"] * cfg.dram.activation_energy_pj
    off = build_report(simulate(load_hwconfig("hwconfigs/bank64.yaml", [f"dram.model={model}",
                       "sram.residency=none", "dram.activation_energy_pj=0"]), trace))  # fmt: skip
    assert off["totals"]["energy_pj"] == pytest.approx(
        s["energy_pj"] - s["dram_activation_energy_pj"], rel=1e-12
    )
