"""Traffic probe: measure what a Triton launch really loads.

Under TRITON_INTERPRET=1 every tl.load goes through the interpreter's `create_masked_load`; the probe wraps it,
records the address of every active lane, and counts the distinct 32-byte sectors and 128-byte lines touched
(the units a GPU's L2 / DRAM move), per named tensor. Offsets are taken from each tensor's storage base, as a
GPU allocation is at least 256-byte aligned (CPU allocations are not). Loads through tensor descriptors are not
recorded (codesign's kernels use pointer loads only).

`probe_sparse_swiglu` holds the decode kernel's measured weight bytes against the bundled-layout prediction
(union channels x codesign.layout.BundleLayout.bundle_bytes) and against dense.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from codesign.errors import ConfigError
from codesign.kernels.dispatch import interpreting

SECTOR_BYTES = 32
LINE_BYTES = 128
OTHER = "other"  # loads outside every named tensor (scratch buffers a launcher allocates)


@dataclass(frozen=True)
class TensorTraffic:
    bytes_requested: int  # every active lane of every load, repeats included
    bytes_distinct: int  # distinct addresses x element size
    sectors_32b: int
    lines_128b: int


@dataclass
class ProbeResult:
    bytes_requested: int
    sectors_32b: int
    lines_128b: int
    loads: int
    per_tensor: dict[str, TensorTraffic] = field(default_factory=dict)
    result: Any = None

    @property
    def sector_bytes(self) -> int:
        return self.sectors_32b * SECTOR_BYTES

    def to_dict(self) -> dict:
        return {
            "bytes_requested": self.bytes_requested,
            "sectors_32b": self.sectors_32b,
            "sector_bytes": self.sector_bytes,
            "lines_128b": self.lines_128b,
            "loads": self.loads,
            "per_tensor": {name: asdict(t) for name, t in self.per_tensor.items()},
        }


class _Recorder:
    def __init__(self) -> None:
        self.chunks: list[tuple[np.ndarray, int]] = []  # (addresses of active lanes, element bytes)

    def wrap(self, original):
        recorder = self

        def create_masked_load(builder, ptrs, mask, other, cache_policy, is_volatile):
            addresses = np.asarray(ptrs.data).reshape(-1)[np.asarray(mask.data, dtype=bool).reshape(-1)]
            itemsize = np.dtype(_np_dtype(ptrs.get_element_ty())).itemsize
            recorder.chunks.append((addresses.astype(np.uint64), itemsize))
            return original(builder, ptrs, mask, other, cache_policy, is_volatile)

        return create_masked_load


def _np_dtype(tl_dtype):
    from triton.runtime.interpreter import _get_np_dtype

    return _get_np_dtype(tl_dtype)


def probe(fn: Callable, *args, tensors: dict[str, torch.Tensor] | None = None, **kwargs) -> ProbeResult:
    """Run fn(*args, **kwargs) (Triton launches under TRITON_INTERPRET=1) and count what its tl.loads touch.

    `tensors` names the memory regions to attribute loads to (default: the positional tensor args, arg0...).
    """
    if not interpreting():
        raise ConfigError(
            "the traffic probe needs TRITON_INTERPRET=1 set before codesign.kernels is imported"
        )
    from triton.runtime import interpreter

    if tensors is None:
        tensors = {f"arg{i}": a for i, a in enumerate(args) if isinstance(a, torch.Tensor)}
    recorder = _Recorder()
    original = interpreter.InterpreterBuilder.create_masked_load
    interpreter.InterpreterBuilder.create_masked_load = recorder.wrap(original)
    try:
        result = fn(*args, **kwargs)
    finally:
        interpreter.InterpreterBuilder.create_masked_load = original
    return _count(recorder.chunks, tensors, result)


def _count(chunks, tensors: dict[str, torch.Tensor], result) -> ProbeResult:
    regions = []  # (name, base, end) of each named tensor's storage
    for name, t in tensors.items():
        storage = t.untyped_storage()
        regions.append((name, storage.data_ptr(), storage.data_ptr() + storage.nbytes()))
    per: dict[str, list] = {name: [] for name, _, _ in regions}
    per[OTHER] = []
    for addresses, itemsize in chunks:
        left = np.ones(addresses.shape, dtype=bool)
        for name, base, end in regions:
            inside = left & (addresses >= base) & (addresses < end)
            if inside.any():
                per[name].append((addresses[inside] - np.uint64(base), itemsize))
                left &= ~inside
        if left.any():
            per[OTHER].append((addresses[left], itemsize))
    per_tensor = {name: _traffic(parts) for name, parts in per.items() if parts}
    return ProbeResult(
        bytes_requested=sum(t.bytes_requested for t in per_tensor.values()),
        sectors_32b=sum(t.sectors_32b for t in per_tensor.values()),
        lines_128b=sum(t.lines_128b for t in per_tensor.values()),
        loads=len(chunks),
        per_tensor=per_tensor,
        result=result,
    )


def _traffic(parts: list[tuple[np.ndarray, int]]) -> TensorTraffic:
    requested = sum(int(a.size) * size for a, size in parts)
    offsets = np.concatenate([a for a, _ in parts])
    # byte ranges [offset, offset + size) of naturally aligned elements never straddle a 32-byte sector
    sizes = np.concatenate([np.full(a.size, size, dtype=np.uint64) for a, size in parts])
    distinct, first = np.unique(offsets, return_index=True)
    return TensorTraffic(
        bytes_requested=requested,
        bytes_distinct=int(sizes[first].sum()),
        sectors_32b=int(np.unique(distinct // SECTOR_BYTES).size),
        lines_128b=int(np.unique(distinct // LINE_BYTES).size),
    )


def probe_sparse_swiglu(
    hidden: int,
    intermediate: int,
    bank_size: int,
    k: int,
    tokens: int = 1,
    dtype: torch.dtype = torch.bfloat16,
    seed: int = 0,
) -> dict:
    """Measured loads of one sparse SwiGLU forward at these shapes (random weights, logits and input) vs the
    bundled-layout prediction (channels read x bundle bytes) and vs dense (every bundle)."""
    from codesign.kernels.bank_topk import bank_topk, check_banks
    from codesign.kernels.pack import bundle_views
    from codesign.kernels.sparse_swiglu import sparse_swiglu
    from codesign.layout import BundleLayout

    check_banks(intermediate, bank_size, k)
    for name, value in (("hidden", hidden), ("tokens", tokens)):
        if value <= 0:
            raise ConfigError(f"{name}={value} must be positive")
    gen = torch.Generator().manual_seed(seed)
    bundles = (torch.randn(intermediate, 3, hidden, generator=gen) / hidden**0.5).to(dtype)
    x = torch.randn(tokens, hidden, generator=gen).to(dtype)
    routing = bank_topk(torch.randn(tokens, intermediate, generator=gen), bank_size, k, backend="triton")
    measured = probe(
        sparse_swiglu,
        x,
        *bundle_views(bundles),
        routing,
        backend="triton",
        tensors={"x": x, "bundles": bundles},
    )
    layout = BundleLayout(
        hidden=hidden, intermediate=intermediate, layers=1, dtype_bytes=bundles.element_size()
    )
    channels_read = routing.union_channels()
    weights = measured.per_tensor["bundles"]
    predicted = channels_read * layout.bundle_bytes
    return {
        "op": "sparse_swiglu",
        "shape": {
            "hidden": hidden,
            "intermediate": intermediate,
            "bank_size": bank_size,
            "k": k,
            "tokens": tokens,
        },
        "dtype": str(dtype).removeprefix("torch."),
        "tile_tokens": routing.tile_tokens,
        "kept_channels": tokens * (intermediate // bank_size) * k,
        "channels_read": channels_read,
        "weight_bytes_measured": weights.sectors_32b * SECTOR_BYTES,
        "weight_bytes_distinct": weights.bytes_distinct,
        "weight_bytes_requested": weights.bytes_requested,
        "weight_bytes_predicted": predicted,
        "weight_bytes_dense": layout.layer_bytes,
        "measured_over_predicted": weights.sectors_32b * SECTOR_BYTES / predicted,
        "measured_over_dense": weights.sectors_32b * SECTOR_BYTES / layout.layer_bytes,
        "all_bytes_measured": measured.sector_bytes,
        "probe": measured.to_dict(),
    }
