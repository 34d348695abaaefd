"""`codesign validate --device cpu`: the Triton FFN kernels under TRITON_INTERPRET=1 with the traffic probe,
held against the simulator configured as their memory system (codesign.validate.memsys).

Every launch (tokens x one layer) is probed on its own, so nothing is reused across launches on either side.
Bundled weights for all the case's layers live in one (L, I, 3, d) bf16 tensor, so the probe's offsets from
its storage base are exactly the simulator's addresses (codesign.layout: layer l at l·layer_bytes).

Compared per case, at 32 B sectors and 128 B lines:
  weights      probe: distinct sectors (lines) of the bundles tensor, summed over launches
               sim:   dram_read_bytes of the DRAM model at a 32 B (128 B) burst           -> must be equal
  activations  probe: distinct sectors of x;   sim: tokens x hidden x 2 B
  index        probe: distinct sectors of union ids, counts and mask bits;  sim: see memsys
               tolerance: the probe rounds each contiguous run the kernel reads up to whole sectors, the
               simulator counts exact bytes, so |measured - simulated| < 32 B x runs per launch, where
               runs = 1 for x (T rows back to back) and nb + T + 1 for the index (one run of union ids
               per bank, one packed mask row per token, one run of counts)
  scratch      fp32 partials the launcher allocates (L2-resident on a GPU, on chip on the accelerator):
               reported, not compared
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from codesign.errors import ConfigError
from codesign.validate.cases import Case, case_masks, check_case
from codesign.validate.memsys import GRANULARITY_BYTES, simulate_case

SECTOR = 32


@dataclass(frozen=True)
class Check:
    """One compared quantity of one case."""

    case: str
    quantity: str
    measured: int
    simulated: int
    tolerance_bytes: int  # |simulated - measured| must be <= this

    @property
    def error_bytes(self) -> int:
        return self.simulated - self.measured

    @property
    def relative_error(self) -> float:
        return self.error_bytes / self.measured if self.measured else float(self.error_bytes != 0)

    @property
    def ok(self) -> bool:
        return abs(self.error_bytes) <= self.tolerance_bytes

    def as_dict(self) -> dict:
        return {
            "case": self.case,
            "quantity": self.quantity,
            "unit": "B",
            "measured": self.measured,
            "simulated": self.simulated,
            "error": self.error_bytes,
            "relative_error": self.relative_error,
            "tolerance_bytes": self.tolerance_bytes,
            "ok": self.ok,
        }


@dataclass
class CaseResult:
    case: Case
    checks: list[Check]
    measured: dict
    simulated: dict
    wall_s: float

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict:
        return {
            "case": self.case.as_dict(),
            "ok": self.ok,
            "checks": [c.as_dict() for c in self.checks],
            "measured": self.measured,
            "simulated": self.simulated,
            "wall_s": self.wall_s,
        }


@dataclass
class ProbeTotals:
    """Probe counts summed over a case's launches, per tensor group, in sectors and lines."""

    sectors: dict[str, int] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    requested_bytes: dict[str, int] = field(default_factory=dict)

    def add(self, group: str, traffic) -> None:
        self.sectors[group] = self.sectors.get(group, 0) + traffic.sectors_32b
        self.lines[group] = self.lines.get(group, 0) + traffic.lines_128b
        self.requested_bytes[group] = self.requested_bytes.get(group, 0) + traffic.bytes_requested

    def sector_bytes(self, group: str) -> int:
        return self.sectors.get(group, 0) * SECTOR

    def as_dict(self) -> dict:
        return {
            "sector_bytes": {g: s * SECTOR for g, s in self.sectors.items()},
            "line_bytes": {g: n * 128 for g, n in self.lines.items()},
            "requested_bytes": self.requested_bytes,
        }


INDEX_TENSORS = ("union_cols", "union_counts", "bits")


def measure_case(case: Case, masks: np.ndarray) -> ProbeTotals:
    """Run the case's launches on the Triton kernels under the interpreter and probe every one."""
    import torch

    from codesign.kernels.dispatch import interpreting

    if not interpreting():
        raise ConfigError(
            "validate --device cpu needs TRITON_INTERPRET=1 before codesign.kernels is imported"
        )
    from codesign.kernels.pack import bundle_views
    from codesign.kernels.probe import OTHER, probe
    from codesign.kernels.sparse_swiglu import sparse_swiglu

    gen = torch.Generator().manual_seed(case.seed)
    d, i = case.hidden, case.intermediate
    bundles = (torch.randn(case.layers, i, 3, d, generator=gen) / d**0.5).to(torch.bfloat16)  # (L, I, 3, d)
    totals = ProbeTotals()
    for launch in range(case.launches):
        x = torch.randn(case.tokens, d, generator=gen).to(torch.bfloat16)  # (T, d)
        for layer in range(case.layers):
            routing = launch_routing(masks[launch * case.tokens : (launch + 1) * case.tokens, layer], case)
            named = {"x": x, "bundles": bundles, **{n: getattr(routing, n) for n in INDEX_TENSORS}}
            result = probe(
                sparse_swiglu, x, *bundle_views(bundles[layer]), routing,
                backend="triton", blocks=_blocks(case), tensors=named,
            )  # fmt: skip
            for name, traffic in result.per_tensor.items():
                group = "index" if name in INDEX_TENSORS else "scratch" if name == OTHER else name
                totals.add(group, traffic)
    return totals


def launch_routing(masks: np.ndarray, case: Case):
    """The kernels' Routing of one launch from its (T, I) bool masks (one tile: the simulator's step)."""
    import torch

    from codesign.kernels.routing import Routing, default_tile_tokens, pack_mask_bits, union_per_tile

    mask = torch.from_numpy(np.ascontiguousarray(masks))
    idx = mask.nonzero()[:, 1].reshape(case.tokens, -1)  # (T, nb·k) ascending: k per bank, checked
    tile = default_tile_tokens(case.tokens)  # the kernels' own tile: 16 up to 16 tokens, else 64 (one tile)
    cols, counts = union_per_tile(mask, case.bank_size, tile)
    return Routing(idx, pack_mask_bits(mask), cols, counts, case.intermediate, case.bank_size, case.k, tile)


def _blocks(case: Case):
    """Large blocks keep the interpreter's program count small (≈ 6–7 ms per program iteration). A layer
    narrower than 256 that is not a multiple of it (d = 200) gets 128-wide blocks and d-chunks, so it runs a
    masked tail block and two d-chunks, the second partial, as a GPU's grid would; a wider one (SmolLM2's
    576) 512-wide blocks in one chunk with a masked tail."""
    from codesign.kernels.gathered_rows import Blocks

    d = case.hidden
    if d % 256 == 0 and d <= 1024:
        return Blocks(block_k=64, block_d=256, d_chunk=d)
    if d < 256:
        return Blocks(block_k=64, block_d=128, d_chunk=128)
    return Blocks(block_k=64, block_d=512, d_chunk=-(-d // 512) * 512)


def run_case(case: Case, hw=None, overrides=()) -> CaseResult:
    """Measure and simulate one case; the checks of module docstring."""
    check_case(case)
    start = time.perf_counter()
    masks = case_masks(case)
    sims = {g: simulate_case(case, masks, size, hw, overrides) for g, size in GRANULARITY_BYTES.items()}
    probed = measure_case(case, masks)
    nb = case.intermediate // case.bank_size
    launches = case.launches * case.layers  # layer-steps: each one launch
    sector = sims["sector"]
    checks = [
        Check(case.name, "weights@32B", probed.sector_bytes("bundles"), sector.weight_bytes, 0),
        Check(case.name, "weights@128B", probed.lines.get("bundles", 0) * 128, sims["line"].weight_bytes, 0),
        Check(case.name, "activations", probed.sector_bytes("x"), sector.activation_bytes, SECTOR * launches),
        Check(
            case.name,
            "index",
            probed.sector_bytes("index"),
            sector.index_bytes,
            SECTOR * launches * (nb + case.tokens + 1),
        ),  # fmt: skip
    ]
    return CaseResult(
        case=case,
        checks=checks,
        measured=probed.as_dict(),
        simulated={g: s.as_dict() for g, s in sims.items()},
        wall_s=time.perf_counter() - start,
    )


TOLERANCES = {
    "weights@32B": "exact: the simulator's DRAM bytes at a 32 B burst equal the probe's distinct 32 B sectors",
    "weights@128B": "exact: the simulator's DRAM bytes at a 128 B burst equal the probe's distinct 128 B lines",
    "activations": "|error| <= 32 B per launch: the probe rounds x (T rows back to back) up to whole sectors",
    "index": "|error| <= 32 B x (banks + tokens + 1) per launch: one run of union ids per bank, one packed "
    "mask row per token and one run of counts, each rounded to whole sectors by the probe",
}


def run_cpu(cases: list[Case], hw=None, overrides=(), progress=None) -> dict:
    """Every case measured and simulated; a JSON-ready report (`ok` false if any check is out of tolerance).

    All cases are checked (shapes, traces) before the first kernel runs, so bad input fails in one line
    at once. progress(done, total, case_name) is called before each case.
    """
    from datetime import datetime, timezone

    from codesign.validate.memsys import hwconfig_path, memory_system

    if not cases:
        raise ConfigError("validate: no cases selected")
    for case in cases:
        check_case(case)
        memory_system(case, 32, hw, overrides)  # the hwconfig, the --set overrides and the shape's fit
    for case in cases:
        if case.trace != "synthetic":
            case_masks(case)  # a trace that lacks what the case needs fails here, before any kernel runs
    results = []
    for i, case in enumerate(cases):
        if progress is not None:
            progress(i, len(cases), case.name)
        results.append(run_case(case, hw, overrides))
    checks = [c for r in results for c in r.checks]
    worst = {}
    for c in checks:
        if abs(c.relative_error) >= abs(worst.get(c.quantity, 0.0)):
            worst[c.quantity] = c.relative_error
    return {
        "benchmark": "validate",
        "device": "cpu (Triton interpreter, traffic probe)",
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hwconfig": str(hwconfig_path(hw)),
        "overrides": list(overrides),
        "ok": all(r.ok for r in results),
        "cases_total": len(results),
        "cases_failed": sum(not r.ok for r in results),
        "max_relative_error": worst,
        "tolerances": TOLERANCES,
        "cases": [r.as_dict() for r in results],
    }
