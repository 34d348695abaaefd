"""SRAM placement: striped bundles use every bank, so on fixed hardware the dense baseline does not depend on
the bank size B; `modulo` keeps the old mapping (idle banks, a B-dependent dense baseline) for comparison."""

import numpy as np
import pytest

from codesign.sim.config import load_hwconfig
from codesign.sim.report import build_report
from codesign.sim.simulation import simulate
from codesign.trace.synth import SynthSpec, write_synthetic


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    # SmolLM2-135M's FFN width (24 banks of 64) on 64 SRAM banks, 2 layers: fewer model banks than SRAM banks
    path = tmp_path_factory.mktemp("placement") / "t.zarr"
    write_synthetic(SynthSpec("uniform", 64, 1536, 2, sequences=2, decode_tokens=3, seed=1), path)
    return path


def dense_run(trace, bank_size, placement, *extra):
    cfg = load_hwconfig(
        "hwconfigs/bank64.yaml",
        [f"sparsity.bank_size={bank_size}", f"sparsity.k={bank_size // 4}", f"sram.placement={placement}",
         "sram.residency=none", "sram.fill_bypass=false", "dram.model=ideal", *extra],
    )  # fmt: skip
    return build_report(simulate(cfg, trace))


def test_striped_dense_baseline_does_not_depend_on_bank_size(trace):
    runs = {b: dense_run(trace, b, "stripe")["dense_baseline"]["totals"] for b in (32, 64, 128)}
    for key in ("cycles", "dram_read_bytes", "sram_read_bytes", "energy_pj"):
        assert runs[32][key] == runs[64][key] == runs[128][key], key


ONE_MACRO = "sram.macros_per_bank=1"  # one 256 KB macro: a line every 3 cycles, the SRAM ports bind


def test_modulo_dense_baseline_grows_with_bank_size_when_banks_sit_idle(trace):
    # 1536 channels at B = 128 fill 12 of 64 SRAM banks, at B = 64 24: the busiest bank serves twice the lines
    a = dense_run(trace, 64, "modulo", ONE_MACRO)["dense_baseline"]["totals"]
    b = dense_run(trace, 128, "modulo", ONE_MACRO)["dense_baseline"]["totals"]
    assert b["cycles"] > 1.5 * a["cycles"]
    striped = dense_run(trace, 128, "stripe", ONE_MACRO)["dense_baseline"]["totals"]
    assert striped["cycles"] < a["cycles"]


@pytest.mark.parametrize("placement, used", [("stripe", 64), ("modulo", 24)])
def test_bank_imbalance_is_over_the_banks_that_hold_weights(trace, placement, used):
    r = dense_run(trace, 64, placement)
    assert r["model"]["sram_banks_used"] == used
    per_bank = np.array([row["port_cycles"] for row in r["per_bank"]])
    assert (per_bank > 0).sum() == used
    # sparse routing: the busiest bank against the mean over the banks that hold weights
    busiest = r["totals"]["sram_imbalance_cycles"] + per_bank.sum() / used
    assert r["totals"]["bank_imbalance"] == pytest.approx(busiest / (per_bank.sum() / used) - 1, rel=1e-9)
    assert r["dense_baseline"]["totals"]["bank_imbalance"] < 0.01
