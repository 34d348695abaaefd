"""Which implementation runs: compiled Triton on CUDA, the same Triton kernels under TRITON_INTERPRET=1 on CPU
tensors (tests, traffic probe), or the pure-torch reference (CPU default).

The choice is per call from the tensors' device and the environment, never a global switch set at import.
`backend="torch"` or `"triton"` forces a path (benchmarks compare both side by side in one run).
"""

from __future__ import annotations

import os

import torch

from codesign.errors import ConfigError

BACKENDS = ("auto", "triton", "torch")


def interpreting() -> bool:
    """True when Triton runs kernels through its numpy interpreter (must be set before triton is imported)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve(tensor: torch.Tensor, backend: str = "auto") -> str:
    """'cuda' | 'triton-interpret' | 'torch' for an op whose inputs live where `tensor` lives."""
    if backend not in BACKENDS:
        raise ConfigError(f"kernel backend={backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return "torch"
    if tensor.device.type == "cuda" and not interpreting():
        return "cuda"
    if tensor.device.type == "cpu" and interpreting():
        return "triton-interpret"
    if backend == "triton":
        raise ConfigError(
            f"backend='triton' needs CUDA tensors, or CPU tensors with TRITON_INTERPRET=1 set before "
            f"triton is imported (got device {tensor.device}, TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET')})"
        )
    return "torch"


def dot_in_fp32(dtype: torch.dtype) -> bool:
    """Whether kernels upcast tl.dot operands to fp32: always under the interpreter (its bf16 tl.dot returns
    garbage) and for fp32 data (ieee precision, so fp32 results are not silently tf32)."""
    return interpreting() or dtype == torch.float32


def is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def empty(*shape: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Every output and scratch buffer the launchers allocate comes from here (tests poison it with NaN / -1
    to prove each kernel writes every element it later reads)."""
    return torch.empty(*shape, dtype=dtype, device=device)
