"""The flat parameter vector the njit DRAM kernels read, and how it is built from a resolved device.

Times are stored as whole picoseconds (in a float64 array, exact up to 2^53) so that the kernels compute in
int64 and the njit kernel and its Python twin agree bit for bit. Rounding is upwards (ceil to the ps), so a
derived rate can only be slower than the datasheet, never faster.
"""

from __future__ import annotations

import numpy as np

from codesign.sim.dram.presets import DramDevice, ceil_ps

# index constants into `params` (float64, length N_PARAMS)
P_CHANNELS = 0  # independent channels (all stacks)
P_BANKS = 1  # banks per channel
P_ROW_BYTES = 2  # row (page) bytes per bank
P_INTERLEAVE_BYTES = 3  # channel-interleave granularity
P_BURST_BYTES = 4  # bytes per burst = bus_bits × BL / 8
P_BURST_PS = 5  # data-bus time of one burst = BL / data rate
P_BUS_PS = 6  # spacing of consecutive bursts on one channel = max(burst, tCCD_S)
P_RCD_PS = 7
P_CL_PS = 8
P_RP_PS = 9
P_RAS_PS = 10
P_RC_PS = 11
P_RTP_PS = 12
P_RRD_PS = 13
P_FAW_PS = 14
P_REFI_PS = 15
P_RFC_PS = 16
N_PARAMS = 17


def build_params(device: DramDevice) -> np.ndarray:
    """The float64 parameter vector of `device` (see the P_* index constants)."""
    g, t = device.geometry, device.timing
    p = np.zeros(N_PARAMS, dtype=np.float64)
    p[P_CHANNELS] = device.channels
    p[P_BANKS] = g.banks_per_channel
    p[P_ROW_BYTES] = g.row_bytes
    p[P_INTERLEAVE_BYTES] = g.interleave_bytes
    p[P_BURST_BYTES] = device.burst_bytes
    burst_ps = ceil_ps(device.burst_ns)
    p[P_BURST_PS] = burst_ps
    p[P_BUS_PS] = max(burst_ps, ceil_ps(t.tCCD_S_ns))
    p[P_RCD_PS] = ceil_ps(t.tRCD_ns)
    p[P_CL_PS] = ceil_ps(t.tCL_ns)
    p[P_RP_PS] = ceil_ps(t.tRP_ns)
    p[P_RAS_PS] = ceil_ps(t.tRAS_ns)
    p[P_RC_PS] = ceil_ps(t.tRC_ns)
    p[P_RTP_PS] = ceil_ps(t.tRTP_ns)
    p[P_RRD_PS] = ceil_ps(t.tRRD_S_ns)
    p[P_FAW_PS] = ceil_ps(t.tFAW_ns)
    p[P_REFI_PS] = ceil_ps(t.tREFI_ns)
    p[P_RFC_PS] = ceil_ps(t.tRFC_ns)
    return p


def state_size(params: np.ndarray) -> int:
    """Length of the persistent state vector (see bank_timing.py for its layout)."""
    slots = int(params[P_CHANNELS]) * int(params[P_BANKS])
    return 2 * slots + 1
