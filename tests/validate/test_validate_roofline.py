"""Roofline bounds on the kernel-validation memory system (h200.yaml, residency none, predictor rank 0):
cycles >= max(DRAM bytes / peak bytes per cycle, MACs / MACs per cycle) and achieved bandwidth <= peak,
with the tightness (cycles / bound) printed for docs/VALIDATION.md (pytest -s)."""

import pytest

from codesign.validate.cases import SYNTHETIC, Case, case_masks
from codesign.validate.memsys import memory_system, simulate_case

pytestmark = pytest.mark.analytic

CASES = [
    Case(SYNTHETIC, t, 64, 16, d, i, layers=1, launches=2, seed=t)
    for t in (1, 4, 16)
    for d, i in ((256, 512), (3584, 18944))  # the CPU grid's layer and a Qwen2.5-7B layer
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_cycles_never_beat_the_roofline(case):
    cfg, p, _ = memory_system(case, 32)
    sim = simulate_case(case, case_masks(case), 32)
    peak_bytes_per_cycle = cfg.peak_dram_bandwidth_bytes_per_s / cfg.clock.frequency_hz
    macs = sim.totals["ffn_macs"] + sim.totals["predictor_macs"]
    assert sim.totals["predictor_macs"] == 0 and macs == 3 * case.hidden * case.tokens * sim.union_channels
    memory_bound = sim.weight_bytes / peak_bytes_per_cycle
    compute_bound = macs / p.macs_per_cycle
    bound = max(memory_bound, compute_bound)
    achieved = sim.weight_bytes / sim.time_s
    print(f"\n{case.name}: cycles / roofline {sim.cycles / bound:.3f} "
          f"({'memory' if memory_bound >= compute_bound else 'compute'}-bound), "
          f"achieved {achieved / 1e12:.3f} of peak {cfg.peak_dram_bandwidth_bytes_per_s / 1e12:.3f} TB/s")  # fmt: skip
    assert sim.cycles >= bound
    assert achieved <= cfg.peak_dram_bandwidth_bytes_per_s
