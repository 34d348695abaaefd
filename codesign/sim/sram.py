"""SRAM weight-bank costs (energy per line access, leakage, area, cycle time) from CACTI 7 sweeps.

The package ships two CACTI 7 sweeps (codesign/sim/data/, copied from ../shared/data/): single-bank SRAM
macros at 22 nm LSTP (4 KB – 1 MB × 16/32/64/128 B lines) and 45 nm LSTP (8 KB – 1 MB × 8/64 B lines).
`cacti_macro(technology, size_bytes, line_bytes)` returns the costs of one macro of that size and line width:

- on a grid point, the CSV row exactly (256 KB × 64 B at 22 nm: 50.7 pJ per read, HARDWARE_NUMBERS.md);
- between grid points, bilinear interpolation in (log2 size, log2 line) of log(value) — CACTI costs follow
  power laws in size locally, so a log-log interpolation is exact for those and never goes negative;
- outside the swept range, a ValueError naming the range: extrapolating CACTI is not honest; the hwconfig
  then needs its costs written explicitly (sram.read_energy_pj, ...), which always win over the CSV.

Torch-free and numba-free: the config loader calls this while validating a hwconfig.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources

import numpy as np

# technology name (as written in hwconfigs: sram.technology) -> CSV in codesign/sim/data/
TECHNOLOGIES: dict[str, str] = {
    "22nm_lstp": "cacti7_sram_sweep_22nm_lstp.csv",
    "45nm_lstp": "cacti7_sram_sweep_45nm_lstp.csv",
}

# output name -> (CSV column, scale to the output unit)
_COLUMNS: dict[str, tuple[str, float]] = {
    "read_energy_pj": ("read_nJ", 1e3),
    "write_energy_pj": ("write_nJ", 1e3),
    "leakage_mw": ("leak_mW_per_bank", 1.0),
    "area_mm2": ("area_mm2", 1.0),
    "cycle_ns": ("cycle_ns", 1.0),
    "access_ns": ("access_ns", 1.0),
}


@dataclass(frozen=True)
class SramMacro:
    """Costs of one SRAM macro (one CACTI bank) of `size_bytes` with a `line_bytes`-wide port."""

    technology: str
    size_bytes: int
    line_bytes: int
    read_energy_pj: float  # per line read
    write_energy_pj: float  # per line write
    leakage_mw: float  # static power of the whole macro
    area_mm2: float
    cycle_ns: float  # minimum time between two accesses to the macro
    access_ns: float  # address-in to data-out
    interpolated: bool  # False when (size, line) is a row of the CSV

    @property
    def source(self) -> str:
        how = "interpolated (log-log) from" if self.interpolated else "row of"
        return f"CACTI 7 {self.technology} sweep, {how} {TECHNOLOGIES[self.technology]}"

    def as_dict(self) -> dict:
        return {**asdict(self), "source": self.source}


@dataclass(frozen=True)
class _Table:
    sizes: np.ndarray  # (S,) sorted byte sizes
    lines: np.ndarray  # (W,) sorted line widths
    values: dict[str, np.ndarray]  # name -> (S, W)


@cache
def _load_table(technology: str) -> _Table:
    if technology not in TECHNOLOGIES:
        raise ValueError(f"unknown SRAM technology {technology!r}; valid: {', '.join(sorted(TECHNOLOGIES))}")
    text = resources.files("codesign.sim").joinpath("data", TECHNOLOGIES[technology]).read_text()
    rows = list(csv.DictReader(text.splitlines()))
    sizes = np.array(sorted({int(r["size_B"]) for r in rows}))
    lines = np.array(sorted({int(r["block_B"]) for r in rows}))
    values = {name: np.full((len(sizes), len(lines)), np.nan) for name in _COLUMNS}
    for r in rows:
        i = int(np.searchsorted(sizes, int(r["size_B"])))
        j = int(np.searchsorted(lines, int(r["block_B"])))
        for name, (column, scale) in _COLUMNS.items():
            values[name][i, j] = round(float(r[column]) * scale, 10)  # nJ -> pJ without float noise
    for name, grid in values.items():  # a sweep with holes would interpolate garbage
        if np.isnan(grid).any():
            raise ValueError(f"{TECHNOLOGIES[technology]}: the sweep is not a full size × line grid ({name})")
    return _Table(sizes=sizes, lines=lines, values=values)


def _bracket(grid: np.ndarray, x: float) -> tuple[int, int, float]:
    """Indices (lo, hi) around x in a sorted grid and the weight of hi, in log2 space."""
    hi = int(np.searchsorted(grid, x))
    if grid[min(hi, len(grid) - 1)] == x:  # exactly on the grid: no interpolation at all
        return hi, hi, 0.0
    lo = hi - 1
    w = (math.log2(x) - math.log2(grid[lo])) / (math.log2(grid[hi]) - math.log2(grid[lo]))
    return lo, hi, w


def cacti_range(technology: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """((min size, max size), (min line, max line)) in bytes covered by a technology's sweep."""
    t = _load_table(technology)
    return (int(t.sizes[0]), int(t.sizes[-1])), (int(t.lines[0]), int(t.lines[-1]))


def cacti_macro(technology: str, size_bytes: int, line_bytes: int) -> SramMacro:
    """Costs of one SRAM macro of `size_bytes` and a `line_bytes` port, from the CACTI 7 sweep."""
    t = _load_table(technology)
    (s_min, s_max), (l_min, l_max) = cacti_range(technology)
    if not s_min <= size_bytes <= s_max:
        raise ValueError(
            f"a {size_bytes} B macro is outside the CACTI {technology} sweep ({s_min}–{s_max} B)"
        )
    if not l_min <= line_bytes <= l_max:
        raise ValueError(f"a {line_bytes} B line is outside the CACTI {technology} sweep ({l_min}–{l_max} B)")
    i0, i1, wi = _bracket(t.sizes, size_bytes)
    j0, j1, wj = _bracket(t.lines, line_bytes)
    out = {}
    for name, grid in t.values.items():
        log_grid = np.log(grid)
        v = (
            (1 - wi) * (1 - wj) * log_grid[i0, j0]
            + (1 - wi) * wj * log_grid[i0, j1]
            + wi * (1 - wj) * log_grid[i1, j0]
            + wi * wj * log_grid[i1, j1]
        )
        # on a grid point return the CSV value itself, not exp(log(v)) one ulp away
        out[name] = float(grid[i0, j0]) if (i0 == i1 and j0 == j1) else float(math.exp(v))
    return SramMacro(
        technology=technology,
        size_bytes=int(size_bytes),
        line_bytes=int(line_bytes),
        interpolated=not (i0 == i1 and j0 == j1),
        **out,
    )
