"""Fused CPU decode of the sparse SwiGLU over the bundled layout (numba): y_t = sum_c h_tc * down_c.

The torch path (codesign.sparse.gather) issues ~5 small ops per 64-channel chunk and is bound by per-op latency,
not by the bytes it reads. Here one compiled loop does everything: the union of the tokens' kept channels
(ascending) is cut into one contiguous run per thread, and for each kept bundle [gate row | up row | down row]
of codesign.layout a thread reads the bundle once, widens bf16 to fp32 in registers (bf16 is the top half of an
fp32: `uint32(bits) << 16`, reinterpreted), computes a = x_t . g_c and b = x_t . u_c for every token t that kept
c, h = silu(a) * b, and adds h * d_c into **its own** fp32 accumulator (T, d). Threads never write the same
memory (no races); the accumulators are summed afterwards in a fixed order, so the result depends only on the
thread count. Within a thread the weight stream is sequential (ascending channels).

Threads: `scheduler="pool"` (default) runs the nogil kernel on Python worker threads; `"prange"` runs the same
kernel under numba's parallel runtime (`parallel=True`, prange over the runs). On a 2-core VM shared with
other jobs, numba's OpenMP barrier spins while its second thread waits to be scheduled: measured 90-150 ms
medians against 8-16 ms for the pool on the same work (bench/sparse_cpu_decode.py records both).

`sparse_swiglu_gather` (codesign.sparse.gather) is the reference: tests compare both on fresh random inputs.
Supported: 1..DECODE_MAX_TOKENS tokens, bf16 or fp32 weights, SiLU gating, no autograd (inference only).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic, overload

from codesign.errors import ConfigError

DECODE_MAX_TOKENS = 16  # above this the union of kept channels approaches dense: the batched torch path wins
WEIGHT_DTYPES = (torch.bfloat16, torch.float32)
SCHEDULERS = ("pool", "prange")


@intrinsic
def _f32_from_bits(typingctx, bits):
    """Reinterpret a uint32 as float32 (one LLVM bitcast: it vectorises with the surrounding loop)."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return sig, codegen


def _widen(v):  # typed by the overload below
    raise NotImplementedError


@overload(_widen, inline="always")
def _widen_impl(v):
    if isinstance(v, types.Integer):  # bf16 bits: bf16 is the top 16 bits of an fp32
        return lambda v: _f32_from_bits(np.uint32(v) << np.uint32(16))
    return lambda v: np.float32(v)


@njit(cache=True, nogil=True)
def _union(idx, intermediate):
    """keep (I, T) uint8 (keep[c, t]: token t kept channel c) and the union's channel ids, ascending."""
    tokens = idx.shape[0]
    keep = np.zeros((intermediate, tokens), dtype=np.uint8)
    for t in range(tokens):
        for j in range(idx.shape[1]):
            keep[idx[t, j], t] = 1
    union = np.empty(intermediate, dtype=np.int64)
    count = 0
    for c in range(intermediate):
        hit = 0
        for t in range(tokens):
            hit |= keep[c, t]
        if hit:
            union[count] = c
            count += 1
    return keep, union[:count]


@njit(fastmath=True, cache=True, nogil=True)
def _decode_range(x, w, keep, union, lo, hi, out):
    """out (T, d) fp32 += sum over union[lo:hi] of h_tc * down_c, for the tokens t that kept channel c."""
    tokens, hidden = x.shape
    for u in range(lo, hi):
        c = union[u]
        for t in range(tokens):
            if keep[c, t] == 0:
                continue
            a = np.float32(0.0)
            b = np.float32(0.0)
            for j in range(hidden):  # fastmath lets LLVM reassociate these sums into SIMD lanes
                xv = x[t, j]
                a += xv * _widen(w[c, 0, j])
                b += xv * _widen(w[c, 1, j])
            h = a / (np.float32(1.0) + np.exp(-a)) * b  # silu(a) * b
            for j in range(hidden):
                out[t, j] += h * _widen(w[c, 2, j])


@njit(parallel=True, cache=True)
def _decode_prange(x, w, keep, union, parts, acc):
    """The same work under numba's own thread pool (prange over parts); kept for the benchmark's comparison."""
    count = union.shape[0]
    for part in prange(parts):
        _decode_range(x, w, keep, union, part * count // parts, (part + 1) * count // parts, acc[part])


def cpu_decode_supported(x: torch.Tensor, bundle: torch.Tensor) -> bool:
    """Whether `sparse_swiglu_cpu_decode` takes this call (else the torch path does)."""
    return (
        x.device.type == "cpu"
        and bundle.device.type == "cpu"
        and 1 <= x.shape[0] <= DECODE_MAX_TOKENS
        and bundle.dtype in WEIGHT_DTYPES
        and bundle.is_contiguous()
        and not (torch.is_grad_enabled() and (x.requires_grad or bundle.requires_grad))
    )


def sparse_swiglu_cpu_decode(
    x: torch.Tensor,
    idx: torch.Tensor,
    bundle: torch.Tensor,
    *,
    threads: int | None = None,
    scheduler: str = "pool",
) -> torch.Tensor:
    """x (T, d), kept ids idx (T, K), bundled weights (I, 3, d) bf16 or fp32 -> (T, d) in x's dtype.

    SiLU gating, fp32 accumulation. `threads` defaults to torch.get_num_threads(), so torch.set_num_threads
    governs this path and torch's alike. ConfigError for inputs outside cpu_decode_supported's domain.
    """
    if x.dim() != 2 or idx.dim() != 2 or bundle.dim() != 3 or bundle.shape[1] != 3:
        raise ConfigError(
            f"cpu decode: expected x (T, d), idx (T, K), bundle (I, 3, d); got {tuple(x.shape)}, "
            f"{tuple(idx.shape)}, {tuple(bundle.shape)}"
        )
    if not cpu_decode_supported(x, bundle) or idx.shape[0] != x.shape[0] or bundle.shape[2] != x.shape[1]:
        raise ConfigError(
            f"cpu decode: needs 1..{DECODE_MAX_TOKENS} CPU tokens matching idx and d={bundle.shape[2]}, "
            f"contiguous bf16/fp32 bundles and no autograd (x {tuple(x.shape)} {x.dtype}, idx {tuple(idx.shape)}, "
            f"bundle {bundle.dtype})"
        )
    if scheduler not in SCHEDULERS:
        raise ConfigError(f"cpu decode: scheduler={scheduler!r} is not one of {', '.join(SCHEDULERS)}")
    if idx.numel() and not (0 <= int(idx.min()) and int(idx.max()) < bundle.shape[0]):
        raise ConfigError(f"cpu decode: kept ids must lie in 0..{bundle.shape[0] - 1}")
    xs = x.detach().to(torch.float32).contiguous().numpy()
    ids = idx.detach().to(torch.int64).contiguous().numpy()
    if bundle.dtype == torch.bfloat16:
        w = bundle.detach().view(torch.int16).numpy().view(np.uint16)  # the same bytes, no copy
    else:
        w = bundle.detach().numpy()
    keep, union = _union(ids, bundle.shape[0])
    threads = max(1, torch.get_num_threads()) if threads is None else threads
    parts = min(threads, max(1, union.shape[0]))
    acc = np.zeros((parts, *xs.shape), dtype=np.float32)  # one fp32 accumulator per part: no races
    if scheduler == "prange":
        numba.set_num_threads(min(parts, numba.config.NUMBA_NUM_THREADS))
        _decode_prange(xs, w, keep, union, parts, acc)
    elif parts == 1:
        _decode_range(xs, w, keep, union, 0, union.shape[0], acc[0])
    else:
        count = union.shape[0]

        def run(p: int) -> None:
            _decode_range(xs, w, keep, union, p * count // parts, (p + 1) * count // parts, acc[p])

        list(_pool(parts).map(run, range(parts)))
    y = acc.sum(0) if parts > 1 else acc[0]  # numpy sums the parts in a fixed order
    return torch.from_numpy(y).to(x.dtype)


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="codesign-cpu-decode")
    return _POOLS[workers]
