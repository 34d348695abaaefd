"""Gathered-rows matmul: out (T, d) = a[:, union] @ w[union] (+ a2[:, union] @ w2[union]) over each token tile's
per-bank union of kept channels (codesign.kernels.routing.Routing), into fp32 partials over bank splits that a
second kernel sums in a fixed order (deterministic, no atomics).

The sparse SwiGLU's down projection (a = h, w = down rows) and its dx (a = da, db; w = gate, up rows) are this
op. Rows come from (I, d) views with any strides: bundled weights (codesign.layout) give contiguous rows; a
Hugging Face down_proj.weight.t() works too (strided, slower).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from codesign.kernels import dispatch
from codesign.kernels.routing import Routing

# Autotune list, (BLOCK_K, BLOCK_D, warps, stages); codesign.kernels.aot_check compiles each for sm_90.
ROWS_CONFIGS = [(16, 64, 4, 4), (16, 128, 4, 4), (16, 64, 2, 6), (32, 64, 4, 4), (32, 128, 8, 3),
                (64, 64, 4, 3), (16, 256, 8, 3)]  # fmt: skip
_TUNED: dict[str, object] = {}


@dataclass(frozen=True)
class Blocks:
    """Fixed tile sizes (interpreter and tests; CUDA autotunes BLOCK_K / BLOCK_D over a short list)."""

    block_k: int = 32
    block_d: int = 128
    splits: int | None = None  # bank splits of the down projection; None = chosen from the grid size
    d_chunk: int | None = None  # decode path: d per gate/up program; None = chosen from the grid size


@triton.jit
def _dot(a, b, DOT_F32: tl.constexpr):
    if DOT_F32:  # the interpreter's bf16 tl.dot is wrong, and fp32 data should not silently become tf32
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    return tl.dot(a.to(b.dtype), b)


@triton.jit
def _gathered_rows_matmul_kernel(
    a1_ptr, w1_ptr, a2_ptr, w2_ptr, cols_ptr, counts_ptr, part_ptr,
    T, D, NB, BANKS_PER_PROG,
    stride_at, stride_w1c, stride_w1d, stride_w2c, stride_w2d, stride_ps, stride_pt,
    B: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    TWO: tl.constexpr, DOT_F32: tl.constexpr,
):  # fmt: skip
    """part[split, t, dblock] = sum over union channels c of the split's banks: a1[t, c] w1[c, dblock] (+ a2 w2)."""
    tile = tl.program_id(0)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    split = tl.program_id(2)
    offs_t = tile * BLOCK_T + tl.arange(0, BLOCK_T)
    tmask = offs_t < T
    dmask = offs_d < D
    acc = tl.zeros((BLOCK_T, BLOCK_D), tl.float32)
    bank_lo = split * BANKS_PER_PROG
    bank_hi = tl.minimum(bank_lo + BANKS_PER_PROG, NB)
    for bank in range(bank_lo, bank_hi):
        count = tl.load(counts_ptr + tile * NB + bank)
        for j in range(0, count, BLOCK_K):
            offs_k = j + tl.arange(0, BLOCK_K)
            kmask = offs_k < count
            cols = tl.load(cols_ptr + (tile * NB + bank) * B + offs_k, mask=kmask, other=0)
            rows = cols.to(tl.int64)
            amask = tmask[:, None] & kmask[None, :]
            wmask = kmask[:, None] & dmask[None, :]
            a = tl.load(
                a1_ptr + offs_t[:, None] * stride_at + cols[None, :], mask=amask, other=0.0
            )  # (BT, BK)
            w = tl.load(
                w1_ptr + rows[:, None] * stride_w1c + offs_d[None, :] * stride_w1d, mask=wmask, other=0.0
            )
            acc += _dot(a, w, DOT_F32)
            if TWO:
                a = tl.load(a2_ptr + offs_t[:, None] * stride_at + cols[None, :], mask=amask, other=0.0)
                w = tl.load(
                    w2_ptr + rows[:, None] * stride_w2c + offs_d[None, :] * stride_w2d, mask=wmask, other=0.0
                )
                acc += _dot(a, w, DOT_F32)
    out = part_ptr + split * stride_ps + offs_t[:, None] * stride_pt + offs_d[None, :]
    tl.store(out, acc, mask=tmask[:, None] & dmask[None, :])


@triton.jit
def _reduce_splits_kernel(
    part_ptr, out_ptr, S, D, stride_ps, stride_pt, stride_ot, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr
):
    """out[t, dblock] = sum over s of part[s, t, dblock]: BLOCK_S splits per load, a fixed tree order."""
    t = tl.program_id(0)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = offs_d < D
    acc = tl.zeros((BLOCK_D,), tl.float32)
    for s0 in range(0, S, BLOCK_S):
        offs_s = s0 + tl.arange(0, BLOCK_S)
        tile = tl.load(
            part_ptr + offs_s[:, None] * stride_ps + t * stride_pt + offs_d[None, :],
            mask=(offs_s < S)[:, None] & dmask[None, :],
            other=0.0,
        )
        acc += tl.sum(tile, axis=0)
    tl.store(out_ptr + t * stride_ot + offs_d, acc.to(out_ptr.dtype.element_ty), mask=dmask)


def _tuned_rows():
    """The autotuned kernel, built on first CUDA use only (autotune cannot run under the interpreter)."""
    if "rows" not in _TUNED:
        configs = [
            triton.Config({"BLOCK_K": k, "BLOCK_D": d}, num_warps=w, num_stages=s)
            for k, d, w, s in ROWS_CONFIGS
        ]
        key = ["D", "NB", "BLOCK_T", "TWO", "BANKS_PER_PROG"]
        _TUNED["rows"] = triton.autotune(configs=configs, key=key)(_gathered_rows_matmul_kernel)
    return _TUNED["rows"]


def _splits(routing: Routing, hidden: int, blocks: Blocks, device: torch.device) -> int:
    """Bank splits of the down projection: enough programs to fill the GPU, partials small (T x d fp32 each)."""
    if blocks.splits is not None:
        return max(1, min(blocks.splits, routing.banks))
    if device.type != "cuda":
        return min(2, routing.banks)
    programs = routing.tiles * triton.cdiv(hidden, 64)
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(routing.banks, triton.cdiv(4 * sms, programs), 16))


def launch_meta(routing: Routing, blocks: Blocks, cuda: bool) -> dict:
    meta = {"B": routing.bank_size, "BLOCK_T": routing.tile_tokens}
    if not cuda:
        meta.update(BLOCK_K=blocks.block_k, BLOCK_D=blocks.block_d, num_warps=4)
    return meta


def gathered_rows_matmul(
    a1, w1, a2, w2, routing: Routing, out_dtype, blocks: Blocks, dot_f32: bool
) -> torch.Tensor:
    """out (T, d) = a1[:, union] @ w1[union] (+ a2[:, union] @ w2[union]), split over banks, summed in order."""
    tokens, hidden = a1.shape[0], w1.shape[1]
    cuda = a1.device.type == "cuda"
    splits = _splits(routing, hidden, blocks, a1.device)
    per = triton.cdiv(routing.banks, splits)
    splits = triton.cdiv(routing.banks, per)
    part = dispatch.empty(splits, tokens, hidden, dtype=torch.float32, device=a1.device)
    two = a2 is not None
    a2, w2 = (a2, w2) if two else (a1, w1)
    kernel = _tuned_rows() if cuda else _gathered_rows_matmul_kernel
    grid = lambda meta: (routing.tiles, triton.cdiv(hidden, meta["BLOCK_D"]), splits)  # noqa: E731
    kernel[grid](
        a1, w1, a2, w2, routing.union_cols, routing.union_counts, part,
        tokens, hidden, routing.banks, per,
        a1.stride(0), w1.stride(0), w1.stride(1), w2.stride(0), w2.stride(1), part.stride(0), part.stride(1),
        TWO=two, DOT_F32=dot_f32, **launch_meta(routing, blocks, cuda),
    )  # fmt: skip
    return reduce_splits(part, out_dtype)


def reduce_splits(part: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """(S, T, d) fp32 -> (T, d): the sum over S, in a fixed order."""
    splits, tokens, hidden = part.shape
    out = dispatch.empty(tokens, hidden, dtype=out_dtype, device=part.device)
    block_s = min(128, triton.next_power_of_2(splits))  # all splits in one load: no serial chain of L2 reads
    block_d = min(64, triton.next_power_of_2(hidden))
    _reduce_splits_kernel[(tokens, triton.cdiv(hidden, block_d))](
        part,
        out,
        splits,
        hidden,
        part.stride(0),
        part.stride(1),
        out.stride(0),
        BLOCK_S=block_s,
        BLOCK_D=block_d,
    )
    return out
