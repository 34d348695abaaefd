"""Hardware configs (hwconfigs/*.yaml): typed, strict, frozen, with derived values and dotted overrides.

    cfg = load_hwconfig("hwconfigs/bank64.yaml", ["sparsity.k=8", "dram.timing.tRCD_ns=20"])
    fit = cfg.check_model(hidden=576, intermediate=1536, layers=30, dtype_bytes=2)
    cfg.resolved()                         # plain dict echoed into every report
    dense = cfg.with_sparsity(k=cfg.sparsity.bank_size)   # the dense baseline on the same hardware

Every mistake (unknown key, bad value, k > B, B not dividing I, a bundle that does not fit a bank, an unknown
preset or policy) is a ConfigError of one line naming the file, the dotted key and the bad value. The schema
reference is docs/HWCONFIG.md; each section below mirrors one YAML section.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from codesign.errors import ConfigError
from codesign.layout import BundleLayout
from codesign.sim import sram as sram_costs
from codesign.sim.dram import DRAM_MODELS
from codesign.sim.dram.presets import (
    GEOMETRY_FIELDS,
    PRESETS,
    TIMING_FIELDS,
    DramDevice,
    DramGeometry,
    DramTiming,
)

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


class DramGeometryOverrides(_Section):
    channels_per_stack: PositiveInt | None = None
    bus_bits: PositiveInt | None = None
    data_rate_gtps: PositiveFloat | None = None
    burst_length: PositiveInt | None = None
    banks_per_channel: PositiveInt | None = None
    row_bytes: PositiveInt | None = None
    interleave_bytes: PositiveInt | None = None


class DramTimingOverrides(_Section):
    tRCD_ns: PositiveFloat | None = None
    tCL_ns: PositiveFloat | None = None
    tRP_ns: PositiveFloat | None = None
    tRAS_ns: PositiveFloat | None = None
    tRC_ns: PositiveFloat | None = None
    tRTP_ns: PositiveFloat | None = None
    tCCD_S_ns: PositiveFloat | None = None
    tRRD_S_ns: PositiveFloat | None = None
    tFAW_ns: PositiveFloat | None = None
    tREFI_ns: PositiveFloat | None = None
    tRFC_ns: NonNegativeFloat | None = None  # 0 disables refresh


assert set(DramGeometryOverrides.model_fields) == set(GEOMETRY_FIELDS)
assert set(DramTimingOverrides.model_fields) == set(TIMING_FIELDS)


class DramConfig(_Section):
    preset: str
    model: str = "bank_timing"
    stacks: PositiveInt = 1  # stacks (HBM) / packages (LPDDR5) / DIMMs (DDR5)
    bandwidth_gbps: PositiveFloat | None = None  # GB/s in total; when set, it fixes geometry.data_rate_gtps
    read_energy_pj_per_bit: PositiveFloat  # filled from the preset when absent
    geometry: DramGeometryOverrides = DramGeometryOverrides()
    timing: DramTimingOverrides = DramTimingOverrides()

    @model_validator(mode="before")
    @classmethod
    def _fill_energy_from_preset(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("read_energy_pj_per_bit") is None:
            preset = PRESETS.get(data.get("preset"))  # an unknown preset is reported by its validator
            if preset is not None:
                data = {**data, "read_energy_pj_per_bit": preset.read_energy_pj_per_bit}
        return data

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str) -> str:
        if name not in PRESETS:
            raise ValueError(f"unknown DRAM preset {name!r}; valid: {', '.join(sorted(PRESETS))}")
        return name

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str) -> str:
        if name not in DRAM_MODELS:
            raise ValueError(f"unknown DRAM model {name!r}; valid: {', '.join(DRAM_MODELS)}")
        return name

    @model_validator(mode="after")
    def _consistent_device(self) -> DramConfig:
        if self.bandwidth_gbps is not None and self.geometry.data_rate_gtps is not None:
            raise KeyedError(
                "bandwidth_gbps", "set either bandwidth_gbps or geometry.data_rate_gtps, not both"
            )
        for key, message in self.device().problems():
            raise KeyedError(key, message)
        return self

    def device(self) -> DramDevice:
        """The resolved device: preset, then geometry/timing overrides, then bandwidth_gbps."""
        preset = PRESETS[self.preset]
        geometry = DramGeometry(**{**asdict(preset.geometry), **self.geometry.model_dump(exclude_none=True)})
        timing = DramTiming(**{**asdict(preset.timing), **self.timing.model_dump(exclude_none=True)})
        sources = dict(preset.sources)
        if self.bandwidth_gbps is not None:
            pins = self.stacks * geometry.channels_per_stack * geometry.bus_bits
            geometry = DramGeometry(**{**asdict(geometry), "data_rate_gtps": self.bandwidth_gbps * 8 / pins})
            sources["geometry"] += f"; data_rate_gtps set from dram.bandwidth_gbps={self.bandwidth_gbps}"
        rate_ratio = preset.geometry.data_rate_gtps / geometry.data_rate_gtps
        if rate_ratio != 1.0 and self.timing.tCCD_S_ns is None:
            # tCCD_S is a count of clock cycles (one burst for HBM3, LPDDR5, DDR5): it follows the data rate,
            # else a faster bus would stay capped at the preset's column rate. Analog timings (tRCD...) do not.
            timing = replace(timing, tCCD_S_ns=timing.tCCD_S_ns * rate_ratio)
            sources["timing"] += "; tCCD_S_ns scaled with the data rate"
        for name in ("geometry", "timing"):
            overridden = getattr(self, name).model_dump(exclude_none=True)
            if overridden:
                sources[name] += f"; overridden by the hwconfig: {', '.join(sorted(overridden))}"
        return DramDevice(
            preset=self.preset,
            model=self.model,
            stacks=self.stacks,
            geometry=geometry,
            timing=timing,
            read_energy_pj_per_bit=self.read_energy_pj_per_bit,
            sources=sources,
        )


class PredictorConfig(_Section):
    rank: PositiveInt = 128  # used when a trace's metadata carries no predictor rank


@dataclass(frozen=True)
class ModelFit:
    """How one model's FFN weights map onto a hwconfig (see HwConfig.check_model)."""

    hidden: int
    intermediate: int
    layers: int
    dtype_bytes: int
    bundle_bytes: int  # one channel: gate column + up column + down row (codesign/layout.py)
    model_banks_per_layer: int  # I / B
    model_bank_bytes: int  # B bundles
    bundles_per_sram_bank: int  # whole bundles one SRAM bank can hold
    model_banks_per_sram_bank: float  # bundles_per_sram_bank / B (fractions: part of a model bank)
    model_banks_mapped_per_sram_bank: int  # per layer, model bank j -> SRAM bank j mod num_banks
    channels_on_chip: int  # whole bundles the whole SRAM can hold
    ffn_bytes_per_layer: int
    ffn_bytes_total: int
    on_chip_fraction_of_ffn: float  # SRAM capacity / all FFN weights (≥ 1: everything fits)

    def as_dict(self) -> dict:
        return asdict(self)


class HwConfig(_Section):
    name: str
    description: str = ""
    clock: ClockConfig
    sparsity: SparsityConfig
    compute: ComputeConfig
    sram: SramConfig
    dram: DramConfig
    predictor: PredictorConfig = PredictorConfig()
    batch: PositiveInt = 1  # concurrent decode tokens per step

    _source: str = PrivateAttr(default="<hwconfig>")
    _raw: dict = PrivateAttr(default_factory=dict)

    # ---- derived values ---------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        """The file (or '<dict>') this config was loaded from; every error names it."""
        return self._source

    @property
    def cycle_time_s(self) -> float:
        return self.clock.cycle_time_s

    @property
    def dram_device(self) -> DramDevice:
        return self.dram.device()

    @property
    def peak_dram_bandwidth_bytes_per_s(self) -> float:
        return self.dram.device().peak_bandwidth_bytes_per_s

    @property
    def sram_capacity_bytes(self) -> int:
        return self.sram.capacity_bytes

    @property
    def sram_line_interval_cycles(self) -> int:
        """Clock cycles between two line accesses to one port: a macro is busy ceil(cycle_ns / clock) cycles,
        and M line-interleaved macros take turns, so ceil(that / M), at least 1."""
        macro_cycles = math.ceil(round(self.sram.cycle_ns / self.clock.cycle_time_ns, 9))
        return max(1, -(-macro_cycles // self.sram.macros_per_bank))

    @property
    def sram_read_bytes_per_cycle(self) -> float:
        """On-chip read bandwidth of all SRAM banks together, bytes per clock cycle."""
        per_bank = self.sram.line_bytes * self.sram.ports_per_bank / self.sram_line_interval_cycles
        return self.sram.num_banks * per_bank

    @property
    def peak_macs_per_s(self) -> float:
        return self.compute.macs_per_cycle * self.clock.frequency_hz

    def derived(self) -> dict:
        dev = self.dram.device()
        return {
            "cycle_time_s": self.cycle_time_s,
            "peak_macs_per_s": self.peak_macs_per_s,
            "peak_dram_bandwidth_bytes_per_s": dev.peak_bandwidth_bytes_per_s,
            "sustained_dram_bandwidth_bytes_per_s": dev.sustained_bandwidth_bytes_per_s,
            "dram_channels": dev.channels,
            "sram_capacity_bytes": self.sram_capacity_bytes,
            "sram_line_interval_cycles": self.sram_line_interval_cycles,
            "sram_read_bytes_per_cycle": self.sram_read_bytes_per_cycle,
            "sram_area_mm2": self.sram.num_banks * self.sram.area_mm2_per_bank,
            "sram_leakage_mw": self.sram.num_banks * self.sram.leakage_mw_per_bank,
            "density": self.sparsity.density,
        }

    # ---- model checks -----------------------------------------------------------------------------------
    def check_model(
        self, hidden: int, intermediate: int, layers: int, dtype_bytes: int | None = None
    ) -> ModelFit:
        """Check that a model's FFNs can run on this hardware; return how they map. Raises ConfigError."""
        dtype_bytes = self.compute.dtype_bytes if dtype_bytes is None else dtype_bytes
        for key, value in (("hidden", hidden), ("intermediate", intermediate), ("layers", layers)):
            if value <= 0:
                raise ConfigError(f"{self.source}: model {key} must be positive, got {value}")
        b = self.sparsity.bank_size
        if intermediate % b:
            raise ConfigError(
                f"{self.source}: sparsity.bank_size: {b} does not divide the model's intermediate size "
                f"{intermediate} (bank-wise top-k needs whole banks)"
            )
        layout = BundleLayout(
            hidden=hidden, intermediate=intermediate, layers=layers, dtype_bytes=dtype_bytes
        )
        bundle = layout.bundle_bytes
        if bundle > self.sram.bank_size_bytes:
            raise ConfigError(
                f"{self.source}: sram.bank_size_bytes: {self.sram.bank_size_bytes} cannot hold one channel bundle "
                f"of {bundle} B (3 × hidden {hidden} × {dtype_bytes} B)"
            )
        per_bank = self.sram.bank_size_bytes // bundle
        banks = intermediate // b
        return ModelFit(
            hidden=hidden,
            intermediate=intermediate,
            layers=layers,
            dtype_bytes=dtype_bytes,
            bundle_bytes=bundle,
            model_banks_per_layer=banks,
            model_bank_bytes=b * bundle,
            bundles_per_sram_bank=per_bank,
            model_banks_per_sram_bank=per_bank / b,
            model_banks_mapped_per_sram_bank=-(-banks // self.sram.num_banks),
            channels_on_chip=per_bank * self.sram.num_banks,
            ffn_bytes_per_layer=layout.layer_bytes,
            ffn_bytes_total=layout.total_bytes,
            on_chip_fraction_of_ffn=self.sram_capacity_bytes / layout.total_bytes,
        )

    # ---- export and variants ----------------------------------------------------------------------------
    def resolved(self) -> dict:
        """The fully resolved config as a plain dict: every key, presets expanded, derived values, sources."""
        out = self.model_dump(mode="json", exclude_none=True)  # unset preset overrides: see dram.device
        out["source"] = self.source
        out["sram"]["cost_sources"] = self.sram.cost_sources()
        out["dram"]["device"] = self.dram.device().as_dict()
        out["derived"] = self.derived()
        return out

    def with_overrides(self, overrides: Sequence[str]) -> HwConfig:
        """A new config with `dotted.key=value` overrides applied to this one's YAML (then re-validated)."""
        raw = self._raw or self.model_dump(exclude_none=True)  # built without the loader: use its values
        return parse_hwconfig(raw, source=self.source, overrides=overrides)

    def with_sparsity(self, bank_size: int | None = None, k: int | None = None) -> HwConfig:
        """The same hardware with another (B, k); `with_sparsity(k=cfg.sparsity.bank_size)` is the dense baseline."""
        overrides = []
        if bank_size is not None:
            overrides.append(f"sparsity.bank_size={int(bank_size)}")
        if k is not None:
            overrides.append(f"sparsity.k={int(k)}")
        return self.with_overrides(overrides)

    def dense_baseline(self) -> HwConfig:
        """k = B on the same hardware: every channel of every bank is computed."""
        return self.with_sparsity(k=self.sparsity.bank_size)


# ---- loading --------------------------------------------------------------------------------------------


# PyYAML (YAML 1.1) reads `1e9` and `1.0e9` as strings (it wants `1.0e+9`); strict fields would reject them.
_SCIENTIFIC = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


def load_hwconfig(path: str | Path, overrides: Sequence[str] = ()) -> HwConfig:
    """Read, override and validate a hwconfig YAML. Every problem is a one-line ConfigError naming file and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: hwconfig not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{path}: not valid YAML{line}: {getattr(exc, 'problem', exc)}") from None
    return parse_hwconfig(data, source=str(path), overrides=overrides)


def parse_hwconfig(data: Any, source: str = "<dict>", overrides: Sequence[str] = ()) -> HwConfig:
    """Validate an already parsed hwconfig mapping (plus overrides); `source` names it in errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: a hwconfig must be a YAML mapping of sections, got {type(data).__name__}"
        )
    raw = _deep_copy(data)
    for item in overrides:
        _apply_override(raw, item, source)
    raw = _deep_copy(raw)  # again: numbers in overrides are normalised the same way
    try:
        cfg = HwConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    cfg._source = source
    cfg._raw = raw
    return cfg


def _deep_copy(data: Any) -> Any:
    """A copy of parsed YAML with `1e9`-style strings read as the floats their author meant."""
    if isinstance(data, Mapping):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    if isinstance(data, str) and _SCIENTIFIC.match(data):
        return float(data.replace("_", ""))
    return data


def _apply_override(raw: dict, item: str, source: str) -> None:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{source}: {key or item}: override {item!r} is not of the form dotted.key=value")
    parts = key.split(".")
    _check_schema_path(parts, source)
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"{source}: {key}: cannot parse override value {text!r}") from None
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {'.'.join(parts[: i + 1])}: is not a section (got {child!r})")
        node = child
    node[parts[-1]] = value


def _section_type(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside an annotation like `X`, `X | None`, or None when it is a leaf."""
    candidates = (
        get_args(annotation) if get_origin(annotation) in (Union, type(int | None)) else (annotation,)
    )
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
    return None


def _check_schema_path(parts: list[str], source: str) -> None:
    model: type[BaseModel] | None = HwConfig
    for i, part in enumerate(parts):
        where = ".".join(parts[: i + 1])
        if model is None:
            raise ConfigError(
                f"{source}: {where}: unknown key ({'.'.join(parts[:i])} is a value, not a section)"
            )
        field = model.model_fields.get(part)
        if field is None:
            valid = ", ".join(model.model_fields)
            raise ConfigError(f"{source}: {where}: unknown key; valid keys here: {valid}")
        model = _section_type(field.annotation)


def _describe(exc: ValidationError, source: str) -> str:
    """One line for the first pydantic error: file, dotted key, what is wrong, the bad value."""
    errors = exc.errors()
    err = errors[0]
    loc = [str(p) for p in err["loc"]]
    original = (err.get("ctx") or {}).get("error")
    if isinstance(original, KeyedError):
        loc.append(original.key)
    key = ".".join(loc) or "<top level>"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    if err["type"] == "extra_forbidden":
        parent: type[BaseModel] | None = HwConfig
        for part in loc[:-1]:
            field = parent.model_fields.get(part) if parent is not None else None
            parent = _section_type(field.annotation) if field is not None else None
        valid = f"; valid keys here: {', '.join(parent.model_fields)}" if parent is not None else ""
        return f"{source}: {key}: unknown key{valid}{more}"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{source}: {key}: required key is missing{more}"
    value = err.get("input")
    shown = "" if isinstance(value, Mapping) else f" (got {value!r})"
    return f"{source}: {key}: {message}{shown}{more}"
