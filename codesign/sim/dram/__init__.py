"""DRAM models for the simulator: an interface (base.py), registered implementations, device presets.

    from codesign.sim.dram import build_dram, service_requests
    dram = build_dram(cfg.dram)       # DramModel for the configured preset / overrides / model name
    state = dram.new_state()
    t_ns, nbytes, hits, misses = service_requests(starts, lengths, n, dram.params, state)   # from njit code

`service_requests` is the default (`bank_timing`) kernel; `dram.kernel` is the configured one (the same
signature and contract, see base.py). Implementations are chosen by exact name (`dram.model` in a hwconfig).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from codesign.sim.dram import params
from codesign.sim.dram.bank_stream import service_requests_stream, service_requests_stream_py
from codesign.sim.dram.bank_timing import service_requests, service_requests_py
from codesign.sim.dram.base import DramModel, DramResult
from codesign.sim.dram.ideal import service_requests_ideal, service_requests_ideal_py
from codesign.sim.dram.presets import PRESETS, DramDevice


class Registered(NamedTuple):
    kernel: Callable  # the njit kernel (contract in base.py)
    twin: Callable  # its plain-Python twin


REGISTRY = {
    "bank_timing": Registered(service_requests, service_requests_py),
    "ideal": Registered(service_requests_ideal, service_requests_ideal_py),
    "bank_stream": Registered(service_requests_stream, service_requests_stream_py),
}
DRAM_MODELS = tuple(REGISTRY)


def build_dram(dram_cfg) -> DramModel:
    """The DramModel for a validated `DramConfig` (cfg.dram) or an already resolved `DramDevice`."""
    device = dram_cfg if isinstance(dram_cfg, DramDevice) else dram_cfg.device()
    kernel, twin = REGISTRY[device.model]
    return DramModel.build(device.model, device, kernel, twin)


__all__ = [
    "DRAM_MODELS",
    "PRESETS",
    "REGISTRY",
    "DramDevice",
    "DramModel",
    "DramResult",
    "build_dram",
    "params",
    "service_requests",
    "service_requests_py",
]
