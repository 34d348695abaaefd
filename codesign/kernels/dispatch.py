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


# The one rule for which calls the Triton kernels take (launchers, SparseSwiGLU and docs/KERNELS.md agree):
# banks a power of two (tl.arange widths, whole mask bytes per bank) of at least 16 channels (the fused
# predictor's and the weight-gradient kernel's tl.dot tiles are >= 16 wide on GPUs); fp32 / bf16 / fp16 data.
MIN_TRITON_BANK = 16
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def triton_unsupported(bank_size: int, dtype: torch.dtype | None = None) -> str | None:
    """Why the Triton kernels cannot take banks of `bank_size` channels / data of `dtype`, or None."""
    if not (is_pow2(bank_size) and bank_size >= MIN_TRITON_BANK):
        return f"needs a power-of-two bank size >= {MIN_TRITON_BANK} (got {bank_size})"
    if dtype is not None and dtype not in TRITON_DTYPES:
        return f"takes fp32, bf16 or fp16 data (got {dtype})"
    return None


def choose(
    tensor: torch.Tensor, backend: str, op: str, bank_size: int, dtype: torch.dtype | None = None
) -> str:
    """resolve(), then the one rule: a call the kernels cannot take runs the torch path under "auto" and is a
    one-line ConfigError when backend="triton" was asked for (never a silent change of what was asked)."""
    path = resolve(tensor, backend)
    if path == "torch":
        return path
    why = triton_unsupported(bank_size, dtype)
    if why is None:
        return path
    if backend == "triton":
        raise ConfigError(f"{op}: backend='triton' {why}; backend='auto' runs the torch path")
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
