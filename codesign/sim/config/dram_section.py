"""The `dram` section of a hwconfig: a preset by exact name plus optional geometry / timing overrides.

`DramConfig.device()` resolves it into a `DramDevice` (codesign/sim/dram/presets.py), which the DRAM models
are built from (`codesign.sim.dram.build_dram`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any

from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt, field_validator, model_validator

from codesign.sim.config.sections import KeyedError, _Section
from codesign.sim.dram import DRAM_MODELS
from codesign.sim.dram.presets import (
    GEOMETRY_FIELDS,
    PRESETS,
    TIMING_FIELDS,
    DramDevice,
    DramGeometry,
    DramTiming,
)


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
    model: str = "bank_stream"  # the fast default; bank_timing is the reference it is tested against
    stacks: PositiveInt = 1  # stacks (HBM) / packages (LPDDR5) / DIMMs (DDR5)
    bandwidth_gbps: PositiveFloat | None = None  # GB/s in total; when set, it fixes geometry.data_rate_gtps
    read_energy_pj_per_bit: PositiveFloat  # filled from the preset when absent
    # energy of one row activation (ACT + precharge), on top of the per-bit energy: scattered reads that open
    # a row for a few bursts pay it per activation. Assumption: ≈ 1 nJ per 1 KB-row activation (order of
    # magnitude of HBM2's row energy in O'Connor et al., MICRO 2017; sweep 0.5–2 nJ). 0 disables it.
    activation_energy_pj: NonNegativeFloat = 1000.0
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
