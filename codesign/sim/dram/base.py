"""The DRAM-model interface: what every implementation in codesign/sim/dram/ promises.

Contract of a DRAM kernel (an @njit function, callable from the engine's njit code):

    kernel(starts_bytes, lengths_bytes, n, params, state) -> (time_ns, bytes_moved, row_hits, row_misses)

- `starts_bytes`, `lengths_bytes`: int64 arrays; the first `n` entries are the requests, contiguous byte
  ranges (one per missed channel bundle in the bundled layout, codesign/layout.py); entries with a length
  ≤ 0 are skipped. All n requests are issued together at t = 0.
- `params`: the float64 vector from `build_params` (index constants in params.py).
- `state`: the int64 vector from `DramModel.new_state()`; its first channels × banks entries are the open
  row of each (channel, bank), −1 = closed. It persists across calls (row buffers stay open from one layer-
  step to the next) and is updated in place. One state per DRAM; never shared by concurrent calls.
- returns: `time_ns` (float64) when the last byte has arrived, measured from t = 0 and including refresh;
  `bytes_moved` (int64) bytes on the data bus, whole bursts (≥ the requested bytes); `row_hits`,
  `row_misses` (int64) bursts served from an open row / bursts that needed an activation.
- guarantees: bytes_moved / time ≤ peak bandwidth; time ≥ 0; deterministic.

Each kernel has a plain-Python twin with identical results (used by the tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from codesign.errors import ConfigError
from codesign.sim.dram.params import build_params, state_size
from codesign.sim.dram.presets import DramDevice


@dataclass(frozen=True)
class DramResult:
    time_ns: float
    bytes_moved: int
    row_hits: int
    row_misses: int

    @property
    def bandwidth_bytes_per_s(self) -> float:
        return self.bytes_moved / (self.time_ns * 1e-9) if self.time_ns > 0 else 0.0


@dataclass(frozen=True)
class DramModel:
    """A DRAM model bound to a resolved device: its njit kernel, its twin and its parameter vector."""

    name: str
    device: DramDevice
    kernel: Callable  # the njit kernel (contract above)
    kernel_py: Callable  # its plain-Python twin
    params: np.ndarray  # float64, see params.py

    @classmethod
    def build(cls, name: str, device: DramDevice, kernel: Callable, kernel_py: Callable) -> DramModel:
        params = build_params(device)
        params.setflags(write=False)
        return cls(name=name, device=device, kernel=kernel, kernel_py=kernel_py, params=params)

    def new_state(self) -> np.ndarray:
        """A fresh state: every bank closed, call counter 0."""
        state = np.zeros(state_size(self.params), dtype=np.int64)
        state[: int(self.params[0]) * int(self.params[1])] = -1
        return state

    def open_rows(self, state: np.ndarray) -> np.ndarray:
        """(channels, banks) view of the open rows in a state (−1 = closed)."""
        c, nb = int(self.params[0]), int(self.params[1])
        return state[: c * nb].reshape(c, nb)

    def service(
        self, starts_bytes, lengths_bytes, state: np.ndarray | None = None, twin: bool = False
    ) -> DramResult:
        """Checked Python entry point: validate the requests, run the kernel (or its twin), wrap the result."""
        starts = np.ascontiguousarray(starts_bytes, dtype=np.int64)
        lengths = np.ascontiguousarray(lengths_bytes, dtype=np.int64)
        if starts.shape != lengths.shape or starts.ndim != 1:
            raise ConfigError(
                f"DRAM requests: starts {starts.shape} and lengths {lengths.shape} must be equal 1-D"
            )
        if starts.size and (starts.min() < 0 or lengths.min() < 0):
            raise ConfigError("DRAM requests: negative start or length")
        if state is None:
            state = self.new_state()
        elif state.shape != (state_size(self.params),) or state.dtype != np.int64:
            raise ConfigError(
                f"DRAM state: expected int64 ({state_size(self.params)},), got {state.dtype} {state.shape}"
            )
        fn = self.kernel_py if twin else self.kernel
        t, moved, hits, misses = fn(starts, lengths, starts.size, self.params, state)
        return DramResult(float(t), int(moved), int(hits), int(misses))
