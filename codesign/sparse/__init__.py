"""The model half: predictor-gated bank-wise sparse SwiGLU, upcycling of HF checkpoints, baselines.

from codesign.sparse import SparsityConfig, upcycle, set_mode
replaced = upcycle(model, SparsityConfig(bank_size=64, k=16, rank=64))
"""

from codesign.sparse.config import SparsityConfig
from codesign.sparse.gather import sparse_swiglu_gather
from codesign.sparse.module import SparseSwiGLU
from codesign.sparse.upcycle import (
    collect_aux_loss,
    current_config,
    set_layer_k,
    set_mode,
    sparse_modules,
    upcycle,
)

__all__ = [
    "SparseSwiGLU",
    "SparsityConfig",
    "collect_aux_loss",
    "current_config",
    "set_layer_k",
    "set_mode",
    "sparse_modules",
    "sparse_swiglu_gather",
    "upcycle",
]
