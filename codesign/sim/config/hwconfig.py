"""The whole hwconfig (`HwConfig`): its sections, derived values, model checks and variants."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from pydantic import PositiveInt, PrivateAttr

from codesign.errors import ConfigError
from codesign.layout import BundleLayout
from codesign.sim.config.dram_section import DramConfig
from codesign.sim.config.sections import (
    ClockConfig,
    ComputeConfig,
    PredictorConfig,
    SparsityConfig,
    SramConfig,
    _Section,
)
from codesign.sim.dram.presets import DramDevice


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
    model_banks_mapped_per_sram_bank: int  # per layer, placement modulo (j -> SRAM bank j mod N)
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
    # model: the whole decoder step (attention, KV cache, LM head; needs the trace's decoder shape);
    # ffn: the FFN part of every layer only (predictor, top-k, FFN)
    scope: Literal["model", "ffn"] = "model"

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
        from codesign.sim.config.loader import parse_hwconfig  # the loader builds HwConfigs: import late

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
