"""The sections of a hwconfig (clock, sparsity, compute, sram, predictor): frozen, strict pydantic models.

Each class mirrors one YAML section (docs/HWCONFIG.md). SRAM costs left out of the YAML are filled from the
CACTI 7 sweep (codesign/sim/sram.py) for one macro of the bank. Errors about a key below the section that
raises them are `KeyedError`s, so that the loader can name the full dotted key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from codesign.sim import sram as sram_costs

RESIDENCY_POLICIES = ("none", "lru", "lfu", "pinned_hot")
EXECUTION_MODES = ("batch_union", "per_token_gather")
# sram keys filled from the CACTI 7 sweep when the YAML leaves them out -> SramMacro attribute
SRAM_COST_KEYS = {
    "read_energy_pj": "read_energy_pj",
    "write_energy_pj": "write_energy_pj",
    "leakage_mw_per_bank": "leakage_mw",
    "area_mm2_per_bank": "area_mm2",
    "cycle_ns": "cycle_ns",
}


class KeyedError(ValueError):
    """A validation error about a key below the section that raised it (the loader appends `key`)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)  # no true -> 1, no "64" -> 64


class ClockConfig(_Section):
    frequency_hz: PositiveFloat

    @property
    def cycle_time_s(self) -> float:
        return 1.0 / self.frequency_hz

    @property
    def cycle_time_ns(self) -> float:
        return 1e9 / self.frequency_hz


class SparsityConfig(_Section):
    bank_size: PositiveInt  # B: channels per bank
    k: PositiveInt  # kept channels per bank per token
    execution: Literal["batch_union", "per_token_gather"] = "batch_union"

    @field_validator("k")
    @classmethod
    def _k_at_most_bank_size(cls, k: int, info) -> int:
        bank_size = info.data.get("bank_size")
        if bank_size is not None and k > bank_size:
            raise ValueError(f"k={k} exceeds bank_size={bank_size}: a bank keeps at most all of its channels")
        return k

    @property
    def density(self) -> float:
        return self.k / self.bank_size

    @property
    def is_dense(self) -> bool:
        return self.k == self.bank_size


class ComputeConfig(_Section):
    macs_per_cycle: PositiveInt
    mac_energy_pj: PositiveFloat
    topk_cycles_per_bank: NonNegativeInt
    dtype_bytes: PositiveInt = 2
    # assumption: one bf16 compare-exchange at 22 nm ≈ a 16-bit add (Horowitz ISSCC 2014, 45 nm 0.05 pJ, scaled)
    topk_energy_pj_per_compare: NonNegativeFloat = 0.03
    # assumption: SiLU(gate)·up per kept channel and token, ≈ 2 bf16 FLOPs + a table lookup (Horowitz, scaled)
    vector_energy_pj_per_op: NonNegativeFloat = 0.2


class SramConfig(_Section):
    num_banks: PositiveInt
    bank_size_bytes: PositiveInt
    line_bytes: PositiveInt
    ports_per_bank: PositiveInt = 1
    # a bank built of M equal macros, consecutive lines in consecutive macros (sub-banking): each access
    # costs one macro's energy; leakage and area are M macros'; a port serves a line every
    # ceil(ceil(cycle_ns / clock) / M) cycles (see HwConfig.sram_line_interval_cycles)
    macros_per_bank: PositiveInt = 1
    technology: Literal["22nm_lstp", "45nm_lstp"] = "22nm_lstp"
    # costs; when absent from the YAML they are filled from the CACTI 7 sweep for one macro (sram.py)
    read_energy_pj: PositiveFloat  # per line read
    write_energy_pj: PositiveFloat  # per line write
    leakage_mw_per_bank: NonNegativeFloat  # all macros of a bank
    area_mm2_per_bank: PositiveFloat  # all macros of a bank
    cycle_ns: PositiveFloat  # min time between two accesses to one macro
    residency: Literal["none", "lru", "lfu", "pinned_hot"] = "lru"
    double_buffer: bool = True
    # stripe: every bundle striped over all banks along the hidden dimension (the layer-step's lines dealt
    # round-robin); modulo: model bank j of every layer in SRAM bank j mod num_banks (idle banks when a
    # layer has fewer model banks than there are SRAM banks)
    placement: Literal["stripe", "modulo"] = "stripe"
    # missed bundles stream from DRAM straight to the lanes; only those the residency policy keeps are
    # written into SRAM (none / pinned_hot: nothing), and hits alone are read from it
    fill_bypass: bool = True

    @model_validator(mode="before")
    @classmethod
    def _fill_costs_from_cacti(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or all(k in data and data[k] is not None for k in SRAM_COST_KEYS):
            return data
        data = {k: v for k, v in data.items() if v is not None or k not in SRAM_COST_KEYS}
        size, line, macros = (
            data.get("bank_size_bytes"),
            data.get("line_bytes"),
            data.get("macros_per_bank", 1),
        )
        technology = data.get("technology", "22nm_lstp")
        sizes_ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (size, line, macros))
        if not sizes_ok or technology not in sram_costs.TECHNOLOGIES:
            return data  # the field validators report the bad size / technology itself
        if size % macros:
            raise KeyedError("macros_per_bank", f"{macros} macros do not split bank_size_bytes={size} evenly")
        try:
            macro = sram_costs.cacti_macro(technology, size // macros, line)
        except ValueError as exc:
            key = "line_bytes" if "line" in str(exc) else "bank_size_bytes"
            raise KeyedError(
                key,
                f"{exc} (bank_size_bytes {size} / macros_per_bank {macros}); write read_energy_pj, write_energy_pj, "
                "leakage_mw_per_bank, area_mm2_per_bank and cycle_ns explicitly",
            ) from None
        for key, value in _bank_costs(macro, macros).items():
            data.setdefault(key, value)
        return data

    @model_validator(mode="after")
    def _macros_split_the_bank(self) -> SramConfig:
        if self.bank_size_bytes % self.macros_per_bank:
            raise KeyedError(
                "macros_per_bank", f"{self.macros_per_bank} macros do not split bank_size_bytes evenly"
            )
        return self

    @property
    def capacity_bytes(self) -> int:
        return self.num_banks * self.bank_size_bytes

    @property
    def macro_size_bytes(self) -> int:
        return self.bank_size_bytes // self.macros_per_bank

    def cacti(self) -> sram_costs.SramMacro | None:
        """The CACTI 7 costs of one macro (bank size / macros, line), or None outside the sweep."""
        try:
            return sram_costs.cacti_macro(self.technology, self.macro_size_bytes, self.line_bytes)
        except ValueError:
            return None

    def cost_sources(self) -> dict[str, str]:
        """Where each cost came from: the CACTI sweep (value equal to its lookup) or the YAML."""
        macro = self.cacti()
        derived = _bank_costs(macro, self.macros_per_bank) if macro is not None else {}
        return {
            key: macro.source if derived.get(key) == getattr(self, key) else "hwconfig"
            for key in SRAM_COST_KEYS
        }


def _bank_costs(macro: sram_costs.SramMacro, macros: int) -> dict[str, float]:
    """Cost keys of a bank of `macros` equal macros: per-access energy of one, leakage and area of all."""
    per_bank = {"leakage_mw_per_bank", "area_mm2_per_bank"}
    return {
        key: getattr(macro, attr) * (macros if key in per_bank else 1) for key, attr in SRAM_COST_KEYS.items()
    }


class PredictorConfig(_Section):
    rank: PositiveInt = 128  # used when a trace's metadata carries no predictor rank
    # true: every layer's predictor weights live in SRAM (capacity reserved on every bank, read through the
    # ports); false: streamed from DRAM each layer-step, prefetched before routing is known
    resident: bool = False
