"""The inference compute of a sparse SwiGLU: only kept channels are read and multiplied.

This is the torch path and the reference of the faster ones: SparseSwiGLU (codesign.sparse.module) runs the
Triton kernels on CUDA and the fused numba kernel (codesign.kernels.cpu_decode) for 1..16 CPU tokens in
inference, and this path for everything else (prefill, autograd, kernel_backend="torch"):

* one token (decode): the kept channel bundles `[gate row | up row | down column]` are gathered a chunk at a
  time from the bundled channel-major layout (codesign.layout) into a small buffer that stays in cache, then
  multiplied — weights of dropped channels are never touched, so DRAM traffic is ≈ k/B of dense;
* several tokens (prefill, batches): the union of the tokens' kept channels is computed and each token's
  non-kept entries are zeroed before the down projection. This is the honest batched cost (masks of
  different tokens union toward dense) and equals the per-token result exactly in value.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

from codesign.kernels.pack import pack_bundles

# Channels gathered per step on the decode path: 64 bundles of 3 × 3584 bf16 rows ≈ 1.4 MB, which stays in a
# core's L2 between the gather and the multiply (chosen by bench/sparse_cpu_decode.py's chunk sweep).
DECODE_CHUNK = 64


def sparse_swiglu_gather(
    x: torch.Tensor,
    idx: torch.Tensor,
    gate_w: torch.Tensor,
    up_w: torch.Tensor,
    down_w: torch.Tensor,
    *,
    bundle: torch.Tensor | None = None,
    act: Callable[[torch.Tensor], torch.Tensor] = F.silu,
) -> torch.Tensor:
    """SwiGLU over kept channels only: x (N, d), idx (N, K) int64 sorted channel ids -> (N, d).

    Equals `down_w @ (act(gate_w x) * (up_w x) * mask)` with mask the channels in idx. `bundle` is the
    optional pre-packed (I, 3, d) layout (codesign.kernels.pack_bundles); the one-token path uses it to gather contiguous rows.
    """
    if x.shape[0] == 1:
        if bundle is None:
            bundle = pack_bundles(gate_w, up_w, down_w)
        return _decode_one(x[0], idx[0], bundle, act).unsqueeze(0)
    return _union(x, idx, gate_w, up_w, down_w, act)


def _decode_one(x: torch.Tensor, idx: torch.Tensor, bundle: torch.Tensor, act: Callable) -> torch.Tensor:
    """One token: the kept channels are split over `torch.get_num_threads()` worker threads, each gathering
    and multiplying its share chunk by chunk into an fp32 partial sum (a single thread issuing many small ops
    leaves the other cores idle, and dense torch GEMV uses them all)."""
    workers = max(1, min(torch.get_num_threads(), idx.numel() // DECODE_CHUNK))
    if workers == 1:
        return _decode_part(x, idx, bundle, act, torch.is_grad_enabled()).to(x.dtype)
    grad = torch.is_grad_enabled()  # grad mode is thread-local: hand it to the workers
    parts = idx.tensor_split(workers)
    partials = list(_pool(workers).map(lambda part: _decode_part(x, part, bundle, act, grad), parts))
    return torch.stack(partials).sum(0).to(x.dtype)


def _decode_part(x, idx, bundle, act, grad: bool) -> torch.Tensor:
    with torch.set_grad_enabled(grad):
        out = torch.zeros(bundle.shape[-1], dtype=torch.float32, device=x.device)
        x_row = x.unsqueeze(0)  # (1, d)
        for start in range(0, idx.numel(), DECODE_CHUNK):
            rows = bundle.index_select(0, idx[start : start + DECODE_CHUNK])  # (c, 3, d)
            # One GEMV over the contiguous (3c, d) chunk also dots x with the down rows (a wasted third of
            # the multiplies, on data already in cache): ≈ 1.4× faster than two GEMVs on strided views.
            gud = F.linear(x_row, rows.view(-1, rows.shape[-1])).view(-1, 3)  # (c, 3)
            h = act(gud[:, 0]) * gud[:, 1]  # (c,)
            out = out + F.linear(h.unsqueeze(0), rows[:, 2].t())[0].float()  # fp32 sum across chunks
        return out


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="codesign-decode")
    return _POOLS[workers]


def _union(x, idx, gate_w, up_w, down_w, act) -> torch.Tensor:
    channels = torch.unique(idx)  # (U,) sorted
    local = torch.searchsorted(channels, idx)  # (N, K): position of each kept channel within `channels`
    keep = torch.zeros(x.shape[0], channels.numel(), dtype=x.dtype, device=x.device)
    keep.scatter_(1, local, 1)  # (N, U)
    h = act(x @ gate_w[channels].t()) * (x @ up_w[channels].t()) * keep  # (N, U)
    return h @ down_w[:, channels].t()  # (N, d)
