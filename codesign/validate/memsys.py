"""The simulator configured as the memory system of one Triton FFN launch sequence, and what it predicts.

Configuration (from a GPU-like hwconfig, hwconfigs/h200.yaml by default):
  sparsity.bank_size / k   the case's B and k
  batch                    the case's tokens per launch: one simulator step = one launch = one routing tile,
                           and `execution: batch_union` reads the step's union once, as the kernel reads the
                           tile's union once
  sram.residency: none     no reuse across launches: every launch fetches its union again (a GPU's L2 could
                           keep some; the probe measures each launch separately, so neither side reuses)
  dram burst               the transfer granularity: 32 B (a sector, HBM3e's BL8 x 32 bit) or 128 B (a line,
                           BL32), via dram.geometry.burst_length
  predictor rank 0         the probe measures the FFN kernel alone, so the predictor's weights stay out
  layout                   codesign.layout.BundleLayout, the one the kernels read; layer l at l·layer_bytes

The weight bytes are the simulator's own DRAM accounting (`dram_read_bytes`: whole bursts moved by the DRAM
model for the engine's requests). The simulator has no DRAM traffic for activations or routing indices (on
the accelerator they stay on chip), so their bytes are derived here from its per-layer counters:
  activations = tokens x hidden x dtype bytes                       (x read once per layer-step)
  index       = 4 B x union channels + 4 B x banks x steps          (int32 union ids and per-bank counts)
                + tokens x ceil(I / 8)                              (the packed mask row of every token)
Torch-free.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codesign.errors import ConfigError, TraceError
from codesign.validate.cases import Case

DEFAULT_HWCONFIG = "hwconfigs/h200.yaml"
GRANULARITY_BYTES = {"sector": 32, "line": 128}
INDEX_BYTES = 4  # int32 union ids and counts


@dataclass(frozen=True)
class SimTraffic:
    """What the simulator predicts for one case at one transfer granularity."""

    granularity_bytes: int
    weight_bytes: int  # the simulator's DRAM accounting (dram_read_bytes), whole bursts
    ffn_bytes: int  # union bundles x bundle bytes (no burst rounding), for reference
    activation_bytes: int
    index_bytes: int
    steps: int
    union_channels: int
    cycles: int
    time_s: float
    per_layer_weight_bytes: list[int]
    totals: dict[str, int]  # every per-layer counter of the engine, summed (cycles by resource, rows, ...)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def hwconfig_path(hw: str | Path | None) -> Path:
    """The GPU-like hwconfig: the given path, else hwconfigs/h200.yaml from the working directory or the
    source tree this package was imported from."""
    if hw is not None:
        return Path(hw)
    here = Path(DEFAULT_HWCONFIG)
    if here.is_file():
        return here
    return Path(__file__).resolve().parents[2] / DEFAULT_HWCONFIG


def memory_system(case: Case, granularity_bytes: int, hw: str | Path | None = None, overrides=()):
    """(cfg, SimParams, DramModel) of the simulator configured as the kernel's memory system (module doc)."""
    from codesign.sim.config import load_hwconfig
    from codesign.sim.dram import build_dram
    from codesign.sim.simulation import params_from_config

    base = load_hwconfig(hwconfig_path(hw))
    bus_bits = base.dram.device().geometry.bus_bits
    if (granularity_bytes * 8) % bus_bits:
        raise ConfigError(
            f"{base.source}: a {granularity_bytes} B transfer is not a whole burst of the {bus_bits}-bit bus"
        )
    cfg = base.with_overrides(
        [
            f"sparsity.bank_size={case.bank_size}",
            f"sparsity.k={case.k}",
            f"batch={case.tokens}",
            "sram.residency=none",
            "sparsity.execution=batch_union",
            f"dram.geometry.burst_length={granularity_bytes * 8 // bus_bits}",
            *overrides,  # applied last: tests misconfigure the memory system through these
        ]
    )
    p = params_from_config(cfg, case.hidden, case.intermediate, case.layers, None)
    p = dataclasses.replace(p, predictor_rank=0, dtype_bytes=2)  # bf16 weights, FFN only
    return cfg, p, build_dram(cfg.dram)


def simulate_case(
    case: Case, masks: np.ndarray, granularity_bytes: int, hw: str | Path | None = None, overrides=()
) -> SimTraffic:
    """Replay the case's launches (masks: bool (launches·tokens, layers, I)) on the configured simulator."""
    from codesign.sim.engine import Block, simulate_variant, words_from_masks
    from codesign.sim.pipeline import COL

    check_balanced(case, masks)
    cfg, p, dram = memory_system(case, granularity_bytes, hw, overrides)
    words = words_from_masks(masks, case.bank_size)
    n = len(words)
    # a launch's T tokens are the decode tokens of T concurrent sequences at one decode step, so the engine's
    # step (a batch of distinct sequences, at most `batch`) is exactly one launch
    seq = (np.arange(n) % case.tokens).astype(np.int32)
    blocks = lambda: iter([Block(words, np.ones(n, dtype=bool), seq)])  # noqa: E731
    v = simulate_variant("validate", p, blocks, dram, cfg.batch)
    steps, tokens = v.total("steps"), v.total("tokens")
    union = v.total("union_channels")
    index = (
        INDEX_BYTES * union + INDEX_BYTES * p.num_model_banks * steps + tokens * -(-case.intermediate // 8)
    )
    return SimTraffic(
        granularity_bytes=dram.device.burst_bytes,
        weight_bytes=v.total("dram_read_bytes"),
        ffn_bytes=v.total("dram_ffn_bytes"),
        activation_bytes=tokens * case.hidden * p.dtype_bytes,
        index_bytes=index,
        steps=steps,
        union_channels=union,
        cycles=v.total("cycles"),
        time_s=v.total("cycles") / p.frequency_hz,
        per_layer_weight_bytes=[int(b) for b in v.per_layer[:, COL["dram_read_bytes"]]],
        totals={name: v.total(name) for name in COL},
    )


def check_balanced(case: Case, masks: np.ndarray) -> None:
    """TraceError unless masks are (launches·tokens, layers, I) with exactly k kept in every bank."""
    want = (case.total_tokens, case.layers, case.intermediate)
    if masks.shape != want:
        raise TraceError(f"{case.name}: masks have shape {masks.shape}, the case needs {want}")
    per_bank = masks.reshape(*want[:2], -1, case.bank_size).sum(-1)
    if (per_bank != case.k).any():
        raise TraceError(
            f"{case.name}: masks keep {int(per_bank.min())}..{int(per_bank.max())} channels per bank, "
            f"not exactly k={case.k}"
        )
