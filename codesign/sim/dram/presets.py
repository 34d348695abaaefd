"""DRAM device presets as declarative data, each number with its source.

A preset describes one *unit* of memory (an HBM stack, an LPDDR5 package, a DDR5 DIMM); a hwconfig picks a
preset by exact name (`dram.preset`), multiplies units (`dram.stacks`) and may override any geometry or timing
field (`dram.geometry.row_bytes`, `dram.timing.tRCD_ns`, ...). Sources: ../shared/reference/HARDWARE_NUMBERS.md
rows ("HN"), the DRAMsim3 / Ramulator 2 device configs named in each preset, or "typical" where a number is a
datasheet-typical value that HN does not list.

"channel" below is the independent unit the model schedules: an HBM pseudo-channel, an LPDDR5 channel, a DDR5
sub-channel. Timings are in ns; `data_rate_gtps` is transfers per second per data pin (GT/s = Gb/s/pin).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace


@dataclass(frozen=True)
class DramGeometry:
    channels_per_stack: int  # independent channels (HBM: pseudo-channels) per stack / package / DIMM
    bus_bits: int  # data pins per channel
    data_rate_gtps: float  # transfers per second per pin, in GT/s (= Gb/s per pin)
    burst_length: int  # beats per burst (BL)
    banks_per_channel: int  # banks that can hold an open row at once, per channel
    row_bytes: int  # row-buffer (page) size per bank and channel
    interleave_bytes: int  # channel-interleave granularity of the address mapping (see model.py)


@dataclass(frozen=True)
class DramTiming:
    tRCD_ns: float  # ACT -> RD
    tCL_ns: float  # RD -> first data
    tRP_ns: float  # PRE -> ACT
    tRAS_ns: float  # ACT -> PRE
    tRC_ns: float  # ACT -> ACT, same bank
    tRTP_ns: float  # RD -> PRE
    tCCD_S_ns: float  # RD -> RD (column-to-column; bank groups assumed interleaved, see model.py)
    tRRD_S_ns: float  # ACT -> ACT, different banks of one channel
    tFAW_ns: float  # window holding at most 4 ACTs per channel
    tREFI_ns: float  # refresh interval
    tRFC_ns: float  # refresh cycle time (0 disables refresh)


@dataclass(frozen=True)
class DramPreset:
    name: str
    description: str
    geometry: DramGeometry
    timing: DramTiming
    read_energy_pj_per_bit: float
    sources: dict[str, str] = field(default_factory=dict)


HBM3_TIMING = DramTiming(
    tRCD_ns=19.4,
    tCL_ns=12.5,
    tRP_ns=16.3,
    tRAS_ns=28.1,
    tRC_ns=45.0,
    tRTP_ns=2.5,
    tCCD_S_ns=1.25,
    tRRD_S_ns=2.5,
    tFAW_ns=15.0,
    tREFI_ns=3900.0,
    tRFC_ns=260.0,
)

PRESETS: dict[str, DramPreset] = {
    "hbm3": DramPreset(
        name="hbm3",
        description="HBM3 stack, 6.4 GT/s, 32 pseudo-channels × 32 bit = 819.2 GB/s",
        geometry=DramGeometry(
            channels_per_stack=32,
            bus_bits=32,
            data_rate_gtps=6.4,
            burst_length=8,
            banks_per_channel=16,
            row_bytes=1024,
            interleave_bytes=256,
        ),
        timing=HBM3_TIMING,
        read_energy_pj_per_bit=3.5,
        sources={
            "geometry": "HN: JEDEC JESD238 (16 ch × 2 pseudo-ch × 32 bit, BL8, 1 KB page, 6.4 Gb/s/pin); "
            "16 banks per pseudo-channel (4 bank groups × 4) as in Ramulator 2's HBM3 organisation; "
            "interleave_bytes 256: assumption",
            "timing": "HN: JEDEC HBM3 as encoded in the Ramulator 2 HBM3 preset; tRTP 2.5 ns: typical "
            "(2 tCK), not in HN",
            "read_energy_pj_per_bit": "HN: HBM3 ≈ 3–4 pJ/bit (assumption; sweep 3–5)",
        },
    ),
    "hbm3e": DramPreset(
        name="hbm3e",
        description="HBM3e stack as run in an H200: 6 stacks = 4.8 TB/s → 6.25 GT/s per pin",
        geometry=DramGeometry(
            channels_per_stack=32,
            bus_bits=32,
            data_rate_gtps=6.25,
            burst_length=8,
            banks_per_channel=16,
            row_bytes=1024,
            interleave_bytes=256,
        ),
        timing=replace(HBM3_TIMING, tCCD_S_ns=1.28),
        read_energy_pj_per_bit=3.5,
        sources={
            "geometry": "HN: H200 4.8 TB/s over 6 stacks × 1024 pins → 6.25 GT/s; organisation as HBM3 "
            "(assumption)",
            "timing": "assumption: HBM3 timings (HN) with tCCD_S = one burst at 6.25 GT/s",
            "read_energy_pj_per_bit": "assumption: as HBM3 (HN ≈ 3–4 pJ/bit)",
        },
    ),
    "hbm2": DramPreset(
        name="hbm2",
        description="HBM2 8 Gb x128 stack, 2 GT/s, 8 channels × 128 bit = 256 GB/s",
        geometry=DramGeometry(
            channels_per_stack=8,
            bus_bits=128,
            data_rate_gtps=2.0,
            burst_length=4,
            banks_per_channel=16,
            row_bytes=1024,
            interleave_bytes=256,
        ),
        timing=DramTiming(
            tRCD_ns=14.0,
            tCL_ns=14.0,
            tRP_ns=14.0,
            tRAS_ns=34.0,
            tRC_ns=48.0,
            tRTP_ns=4.0,
            tCCD_S_ns=1.0,
            tRRD_S_ns=4.0,
            tFAW_ns=30.0,
            tREFI_ns=3900.0,
            tRFC_ns=260.0,
        ),
        read_energy_pj_per_bit=3.9,
        sources={
            "geometry": "HN: DRAMsim3 HBM2_8Gb_x128 (8 ch × 128 bit, BL4, tCK 1 ns DDR; 4 bank groups × 4 "
            "banks; 64 columns × 128 bit = 1 KB row); interleave_bytes 256: assumption",
            "timing": "HN: DRAMsim3 HBM2_8Gb_x128 (CL = tRCD = tRP = 14, tRAS 34, tRRD_S 4, tFAW 30, "
            "tCCD_S 1, tRTP_S 4, tRFC 260, tREFI 3900 cycles of 1 ns); tRC = tRAS + tRP",
            "read_energy_pj_per_bit": "HN: HBM2 3.9 pJ/bit (O'Connor et al., MICRO 2017)",
        },
    ),
    "lpddr5": DramPreset(
        name="lpddr5",
        description="LPDDR5-6400 package, 4 channels × 16 bit = 51.2 GB/s",
        geometry=DramGeometry(
            channels_per_stack=4,
            bus_bits=16,
            data_rate_gtps=6.4,
            burst_length=16,
            banks_per_channel=16,
            row_bytes=2048,
            interleave_bytes=256,
        ),
        timing=DramTiming(
            tRCD_ns=18.75,
            tCL_ns=25.0,
            tRP_ns=18.75,
            tRAS_ns=42.5,
            tRC_ns=61.25,
            tRTP_ns=5.0,
            tCCD_S_ns=2.5,
            tRRD_S_ns=5.0,
            tFAW_ns=20.0,
            tREFI_ns=3906.0,
            tRFC_ns=280.0,
        ),
        read_energy_pj_per_bit=5.0,
        sources={
            "geometry": "typical (not in HN): LPDDR5-6400 x16 channels, BL16, 16 banks (4 BG × 4), 2 KB page "
            "(1024 columns × 16 bit, Ramulator 2 LPDDR5_16Gb_x16); 4 channels per x64 package: typical",
            "timing": "typical (not in HN): Ramulator 2 LPDDR5_6400 preset at tCK 1.25 ns (nCL 20, nRCD 15, "
            "nRPpb 15, nRAS 34, nRTP 4, nRRD 4, nFAW 16), tRFCab 280 ns (16 Gb), tREFI 3906 ns; "
            "tRC = tRAS + tRPpb (JEDEC), tCCD = one BL16 burst",
            "read_energy_pj_per_bit": "assumption: below HN's LPDDR4 8 pJ/bit (lower VDDQ); typical 4–6",
        },
    ),
    "ddr5": DramPreset(
        name="ddr5",
        description="DDR5-3200 DIMM, 2 sub-channels × 32 bit = 25.6 GB/s",
        geometry=DramGeometry(
            channels_per_stack=2,
            bus_bits=32,
            data_rate_gtps=3.2,
            burst_length=16,
            banks_per_channel=32,
            row_bytes=4096,
            interleave_bytes=256,
        ),
        timing=DramTiming(
            tRCD_ns=15.0,
            tCL_ns=15.0,
            tRP_ns=15.0,
            tRAS_ns=32.5,
            tRC_ns=46.875,
            tRTP_ns=7.5,
            tCCD_S_ns=5.0,
            tRRD_S_ns=5.0,
            tFAW_ns=20.0,
            tREFI_ns=3900.0,
            tRFC_ns=295.0,
        ),
        read_energy_pj_per_bit=20.0,
        sources={
            "geometry": "typical (not in HN): DDR5 DIMM = 2 × 32-bit sub-channels, BL16, 32 banks (8 BG × 4, "
            "16 Gb x8), 4 x8 devices × 1 KB page = 4 KB row per sub-channel",
            "timing": "typical (not in HN): Ramulator 2 DDR5_3200AN preset at tCK 0.625 ns (nCL = nRCD = nRP "
            "24, nRAS 52, nRC 75, nRTP 12, nCCDS 8, nRRDS 8, nFAW 32 for x8), tRFC1 295 ns (16 Gb), "
            "tREFI 3900 ns",
            "read_energy_pj_per_bit": "assumption: typical DDR4/DDR5 DIMM access incl. I/O, between HN's "
            "LPDDR4 8 and DDR3 70 pJ/bit",
        },
    ),
}

GEOMETRY_FIELDS = tuple(f.name for f in fields(DramGeometry))
TIMING_FIELDS = tuple(f.name for f in fields(DramTiming))


@dataclass(frozen=True)
class DramDevice:
    """A fully resolved DRAM system: preset + stacks + overrides. All derived sizes live here."""

    preset: str
    model: str
    stacks: int
    geometry: DramGeometry
    timing: DramTiming
    read_energy_pj_per_bit: float
    sources: dict[str, str]

    @property
    def channels(self) -> int:
        return self.stacks * self.geometry.channels_per_stack

    @property
    def burst_bytes(self) -> int:
        return self.geometry.bus_bits * self.geometry.burst_length // 8

    @property
    def burst_ns(self) -> float:
        """Data-bus time of one burst: BL beats at data_rate_gtps."""
        return self.geometry.burst_length / self.geometry.data_rate_gtps

    @property
    def peak_bandwidth_bytes_per_s(self) -> float:
        """Pin bandwidth of all channels: channels × bus_bits/8 × transfers/s (no refresh, no overheads)."""
        return self.channels * self.geometry.bus_bits / 8 * self.geometry.data_rate_gtps * 1e9

    @property
    def refresh_fraction(self) -> float:
        """Fraction of time a channel is refreshing (tRFC / tREFI): the bandwidth derate."""
        return self.timing.tRFC_ns / self.timing.tREFI_ns

    @property
    def sustained_bandwidth_bytes_per_s(self) -> float:
        """Peak bandwidth derated by refresh: the ceiling a long row-hit stream approaches."""
        bus_ns = max(self.burst_ns, self.timing.tCCD_S_ns)
        return self.peak_bandwidth_bytes_per_s * (self.burst_ns / bus_ns) * (1.0 - self.refresh_fraction)

    @property
    def unloaded_read_ns(self) -> float:
        """ACT + RD + one burst on a closed bank: tRCD + tCL + burst time (refresh not included)."""
        return self.timing.tRCD_ns + self.timing.tCL_ns + self.burst_ns

    @property
    def activation_limit_per_ns(self) -> float:
        """Most ACTs one channel can issue per ns: min(4 / tFAW, 1 / tRRD_S, banks / tRC)."""
        t = self.timing
        return min(4.0 / t.tFAW_ns, 1.0 / t.tRRD_S_ns, self.geometry.banks_per_channel / t.tRC_ns)

    def problems(self) -> list[tuple[str, str]]:
        """(key, message) for every inconsistency of the resolved numbers; empty when usable."""
        g, t, out = self.geometry, self.timing, []
        if (g.bus_bits * g.burst_length) % 8:
            out.append(
                (
                    "geometry.burst_length",
                    f"bus_bits × burst_length = {g.bus_bits * g.burst_length} bits is not whole bytes",
                )
            )
        bb = self.burst_bytes
        if bb and g.interleave_bytes % bb:
            out.append(
                ("geometry.interleave_bytes", f"{g.interleave_bytes} is not a multiple of the burst ({bb} B)")
            )
        if bb and g.row_bytes % bb:
            out.append(("geometry.row_bytes", f"{g.row_bytes} is not a multiple of the burst ({bb} B)"))
        if t.tRFC_ns >= t.tREFI_ns:
            out.append(("timing.tRFC_ns", f"{t.tRFC_ns} must be below tREFI_ns ({t.tREFI_ns})"))
        if t.tRC_ns < t.tRAS_ns:
            out.append(("timing.tRC_ns", f"{t.tRC_ns} must be at least tRAS_ns ({t.tRAS_ns})"))
        return out

    def as_dict(self) -> dict:
        """Plain dict of the device with its derived values, for the resolved config."""
        return {
            "preset": self.preset,
            "model": self.model,
            "stacks": self.stacks,
            "geometry": asdict(self.geometry),
            "timing": asdict(self.timing),
            "read_energy_pj_per_bit": self.read_energy_pj_per_bit,
            "derived": {
                "channels": self.channels,
                "burst_bytes": self.burst_bytes,
                "burst_ns": self.burst_ns,
                "peak_bandwidth_bytes_per_s": self.peak_bandwidth_bytes_per_s,
                "sustained_bandwidth_bytes_per_s": self.sustained_bandwidth_bytes_per_s,
                "refresh_fraction": self.refresh_fraction,
                "unloaded_read_ns": self.unloaded_read_ns,
                "activation_limit_per_ns_per_channel": self.activation_limit_per_ns,
            },
            "sources": dict(self.sources),
        }


def ceil_ps(ns: float) -> int:
    """ns -> integer ps, rounded up so that derived rates never exceed the spec (1.333.. ns -> 1334 ps)."""
    return int(math.ceil(round(ns * 1000.0, 6)))
