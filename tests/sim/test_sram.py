"""SRAM costs from the CACTI 7 sweeps: exact on grid points, log-log interpolation between, errors outside."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from codesign.sim.sram import TECHNOLOGIES, cacti_macro, cacti_range

DATA = Path(__file__).parents[2] / "codesign" / "sim" / "data"


def _rows(technology):
    with open(DATA / TECHNOLOGIES[technology]) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("technology", sorted(TECHNOLOGIES))
def test_every_csv_row_is_returned_exactly(technology):
    rows = _rows(technology)
    assert rows
    for r in rows:
        m = cacti_macro(technology, int(r["size_B"]), int(r["block_B"]))
        assert not m.interpolated
        assert m.read_energy_pj == pytest.approx(float(r["read_nJ"]) * 1e3, rel=1e-12)
        assert m.write_energy_pj == pytest.approx(float(r["write_nJ"]) * 1e3, rel=1e-12)
        assert m.leakage_mw == float(r["leak_mW_per_bank"])
        assert m.area_mm2 == float(r["area_mm2"])
        assert m.cycle_ns == float(r["cycle_ns"])


@pytest.mark.analytic
def test_hardware_numbers_rows_at_22nm_512_bit():
    """HARDWARE_NUMBERS.md: 8 KB 7.7 pJ; 32 KB 10.3; 128 KB 31.3; 256 KB 50.7; 1 MB 116 pJ per 64 B access."""
    for size_kb, pj in ((8, 7.7), (32, 10.3), (128, 31.3), (256, 50.7), (1024, 116)):
        got = cacti_macro("22nm_lstp", size_kb * 1024, 64).read_energy_pj
        print(f"{size_kb} KB: {got:.2f} pJ (HN {pj})")
        assert round(got, 1 if pj < 100 else 0) == pj


def test_interpolation_in_size_is_geometric_between_neighbours():
    lo, hi = cacti_macro("22nm_lstp", 131072, 64), cacti_macro("22nm_lstp", 262144, 64)
    size = 196608  # 192 KB, between the 128 KB and 256 KB rows
    w = math.log2(size / 131072)
    mid = cacti_macro("22nm_lstp", size, 64)
    assert mid.interpolated
    for name in ("read_energy_pj", "write_energy_pj", "leakage_mw", "area_mm2", "cycle_ns"):
        a, b = getattr(lo, name), getattr(hi, name)
        assert getattr(mid, name) == pytest.approx(a ** (1 - w) * b**w, rel=1e-12)
        assert min(a, b) <= getattr(mid, name) <= max(a, b)


def test_interpolation_in_line_width_and_both_axes():
    a, b = cacti_macro("22nm_lstp", 65536, 32), cacti_macro("22nm_lstp", 65536, 64)
    w = math.log2(48 / 32)
    assert cacti_macro("22nm_lstp", 65536, 48).read_energy_pj == pytest.approx(
        a.read_energy_pj ** (1 - w) * b.read_energy_pj**w, rel=1e-12
    )
    both = cacti_macro("22nm_lstp", 100_000, 48).read_energy_pj  # 64 KB..128 KB × 32..64 B
    corners = [cacti_macro("22nm_lstp", s, line).read_energy_pj for s in (65536, 131072) for line in (32, 64)]
    assert min(corners) < both < max(corners)


def test_energy_grows_with_size_at_fixed_line():
    sizes = [4096 * 2**i for i in range(9)]  # 4 KB .. 1 MB, grid and between
    energies = [cacti_macro("22nm_lstp", s, 64).read_energy_pj for s in sizes]
    assert energies == sorted(energies)


def test_outside_the_sweep_is_an_error_naming_the_range():
    (s_min, s_max), (l_min, l_max) = cacti_range("22nm_lstp")
    assert (s_min, s_max, l_min, l_max) == (4096, 1048576, 16, 128)
    with pytest.raises(
        ValueError, match=r"a 2097152 B macro is outside the CACTI 22nm_lstp sweep \(4096–1048576 B\)"
    ):
        cacti_macro("22nm_lstp", 2 * 1048576, 64)
    with pytest.raises(ValueError, match="a 256 B line is outside"):
        cacti_macro("22nm_lstp", 65536, 256)
    with pytest.raises(ValueError, match="unknown SRAM technology '7nm'; valid: 22nm_lstp, 45nm_lstp"):
        cacti_macro("7nm", 65536, 64)


def test_source_string_says_how_it_was_derived():
    assert "row of" in cacti_macro("45nm_lstp", 32768, 64).source
    assert "interpolated" in cacti_macro("45nm_lstp", 65536, 64).source
