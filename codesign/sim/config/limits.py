"""Limits a hwconfig must respect before any simulation starts: finite, sane numbers and state that fits.

Two checks, both before work and both one ConfigError naming the file and the key:
- `check_numbers` walks the parsed YAML (before pydantic, so it needs no knowledge of the schema): inf, nan
  and magnitudes beyond 2^53 are refused. No quantity in these units (Hz, bytes, pJ, ns, banks) comes near
  2^53, and beyond it floats no longer hold every integer, so such a value is a typo, not a design point.
- `check_memory` estimates the simulator's state for the validated config (DRAM bank state, per-SRAM-bank
  residency slots and accumulators) and refuses a config whose state cannot fit in this machine's memory,
  instead of letting numpy attempt a multi-PiB allocation. The estimate is a lower bound on what the engine
  allocates (model-sized buffers come on top), so a refusal is never a false alarm.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from codesign.errors import ConfigError

if TYPE_CHECKING:
    from codesign.sim.config.hwconfig import HwConfig

MAX_MAGNITUDE = 2**53
INT64_BYTES = 8
# The smallest model hidden size the simulator is used with (the tiny test model): it bounds how many
# channel bundles (3 × hidden × dtype bytes) one SRAM bank's residency slots are sized for.
MIN_HIDDEN = 64
# Per SRAM bank, beyond its residency slots: head/tail/count/flush/clock words and the accumulators.
PER_SRAM_BANK_WORDS = 16
# Residency keeps slot_key, prev and next per slot.
WORDS_PER_SLOT = 3


def check_numbers(data: Any, source: str, where: str = "") -> None:
    """Refuse inf, nan and |x| > 2^53 anywhere in parsed hwconfig data (dotted key in the message)."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            check_numbers(value, source, f"{where}.{key}" if where else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            check_numbers(value, source, f"{where}[{i}]")
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        if isinstance(data, float) and not math.isfinite(data):
            raise ConfigError(f"{source}: {where}: {data} is not a finite number")
        if abs(data) > MAX_MAGNITUDE:
            raise ConfigError(
                f"{source}: {where}: {data:g} is beyond any hardware this simulator models (|value| ≤ 2^53)"
            )


def physical_memory_bytes() -> int:
    """This machine's physical memory (64 GiB where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 64 << 30


def estimate_state_bytes(cfg: HwConfig) -> dict[str, int]:
    """Bytes of simulator state per config key that sizes it (a lower bound; see the module docstring)."""
    dev = cfg.dram.device()
    dram_slots = dev.channels * dev.geometry.banks_per_channel
    bundle_bytes = 3 * MIN_HIDDEN * cfg.compute.dtype_bytes
    slots_per_bank = max(1, cfg.sram.bank_size_bytes // bundle_bytes)
    sram_words = cfg.sram.num_banks * (WORDS_PER_SLOT * slots_per_bank + PER_SRAM_BANK_WORDS)
    return {
        "dram channels × banks_per_channel": (2 * dram_slots + 1) * INT64_BYTES,
        "sram.num_banks × sram.bank_size_bytes": sram_words * INT64_BYTES,
    }


def check_memory(cfg: HwConfig, available_bytes: int | None = None) -> None:
    """Refuse a config whose simulator state cannot fit in memory (ConfigError naming the key)."""
    available = physical_memory_bytes() if available_bytes is None else available_bytes
    parts = estimate_state_bytes(cfg)
    total = sum(parts.values())
    if total > available:
        key = max(parts, key=parts.get)
        raise ConfigError(
            f"{cfg.source}: {key}: the simulator state alone would take ≈ {format_bytes(total)} (estimated), "
            f"more than this machine's {format_bytes(available)} of memory"
        )


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
