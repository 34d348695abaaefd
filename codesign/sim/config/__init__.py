"""Hardware configs (hwconfigs/*.yaml): typed, strict, frozen, with derived values and dotted overrides.

    cfg = load_hwconfig("hwconfigs/bank64.yaml", ["sparsity.k=8", "dram.timing.tRCD_ns=20"])
    fit = cfg.check_model(hidden=576, intermediate=1536, layers=30, dtype_bytes=2)
    cfg.resolved()                         # plain dict echoed into every report
    dense = cfg.with_sparsity(k=cfg.sparsity.bank_size)   # the dense baseline on the same hardware

Every mistake (unknown key, bad value, k > B, B not dividing I, a bundle that does not fit a bank, an unknown
preset or policy) is a ConfigError of one line naming the file, the dotted key and the bad value. The schema
reference is docs/HWCONFIG.md. Modules: sections.py and dram_section.py (one model per YAML section),
hwconfig.py (the whole config: derived values, check_model, variants), loader.py (YAML, overrides, errors).
"""

from codesign.sim.config.dram_section import DramConfig, DramGeometryOverrides, DramTimingOverrides
from codesign.sim.config.hwconfig import HwConfig, ModelFit
from codesign.sim.config.loader import load_hwconfig, parse_hwconfig
from codesign.sim.config.sections import (
    EXECUTION_MODES,
    RESIDENCY_POLICIES,
    SRAM_COST_KEYS,
    ClockConfig,
    ComputeConfig,
    KeyedError,
    PredictorConfig,
    SparsityConfig,
    SramConfig,
)

__all__ = [
    "EXECUTION_MODES",
    "RESIDENCY_POLICIES",
    "SRAM_COST_KEYS",
    "ClockConfig",
    "ComputeConfig",
    "DramConfig",
    "DramGeometryOverrides",
    "DramTimingOverrides",
    "HwConfig",
    "KeyedError",
    "ModelFit",
    "PredictorConfig",
    "SparsityConfig",
    "SramConfig",
    "load_hwconfig",
    "parse_hwconfig",
]
