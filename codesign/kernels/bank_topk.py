"""Bank-wise top-k: keep the k largest logits of every bank of B consecutive channels, per token.

Ties go to the lower channel index (a stable descending sort in the reference; in the kernel the k-th largest
value is found by a radix select, values above it are kept and equal values are admitted in index order).
Outputs a `Routing` (kept ids, the packed mask in the trace store's bit order, and each token tile's per-bank
union of kept channels that the sparse SwiGLU kernel reads). The predictor's second matmul can be fused in
(`predictor_bank_topk`), so the (T, I) logits never round-trip through memory.

The Triton path takes what codesign.kernels.dispatch.triton_unsupported allows (B a power of two >= 16; fp32,
bf16 or fp16 logits, compared exactly after an fp32 upcast). Anything else, e.g. B = 48 or float64 logits (an
fp32 cast would merge close values), runs the torch path, which selects on the input's own dtype, under
backend="auto", and is a one-line ConfigError under backend="triton".
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from codesign.errors import ConfigError
from codesign.kernels import dispatch
from codesign.kernels.dispatch import choose, dot_in_fp32
from codesign.kernels.routing import Routing, bank_topk_routing_ref, check_2d, resolve_tile_tokens

__all__ = ["bank_topk", "predictor_bank_topk", "check_banks"]


@triton.jit
def _bank_topk_fwd_kernel(
    logits_ptr, h_ptr, w_ptr, bias_ptr,  # either logits (T, I), or h (T, r) @ w (I, r)^T + bias (I,)
    idx_ptr, bits_ptr, cols_ptr, counts_ptr,  # outputs: (T, nb*k) i64, (T, I/8) u8, (tiles, nb, B) i32, (tiles, nb) i32
    T, R, NB,
    stride_lt, stride_ht, stride_wc, stride_it, stride_bt,
    B: tl.constexpr, K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr,
    FUSED: tl.constexpr, HAS_BIAS: tl.constexpr, DOT_F32: tl.constexpr,
):  # fmt: skip
    tile = tl.program_id(0)
    bank = tl.program_id(1)
    offs_t = tile * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_b = tl.arange(0, B)
    cols = bank * B + offs_b  # (B,) channel ids of this bank
    tmask = offs_t < T
    if FUSED:
        logits = tl.zeros((BLOCK_T, B), dtype=tl.float32)
        for r0 in range(0, R, BLOCK_R):
            offs_r = r0 + tl.arange(0, BLOCK_R)
            rmask = offs_r < R
            if BLOCK_T >= 16:  # tl.dot's M is at least 16
                h = tl.load(
                    h_ptr + offs_t[:, None] * stride_ht + offs_r[None, :],
                    mask=tmask[:, None] & rmask[None, :],
                    other=0.0,
                )
                w = tl.load(
                    w_ptr + cols[None, :] * stride_wc + offs_r[:, None], mask=rmask[:, None], other=0.0
                )  # (BR, B)
                if DOT_F32:
                    logits += tl.dot(h.to(tl.float32), w.to(tl.float32), input_precision="ieee")
                else:
                    logits += tl.dot(h, w)
            else:  # a few decode tokens: elementwise products summed over r, one token row at a time
                w = tl.load(
                    w_ptr + cols[:, None] * stride_wc + offs_r[None, :], mask=rmask[None, :], other=0.0
                ).to(tl.float32)  # (B, BR)
                for t in tl.static_range(BLOCK_T):
                    row = tl.minimum(tile * BLOCK_T + t, T - 1)  # rows past T are never stored
                    hv = tl.load(h_ptr + row * stride_ht + offs_r, mask=rmask, other=0.0).to(tl.float32)
                    part = tl.sum(w * hv[None, :], axis=1)  # (B,)
                    logits = tl.where(tl.arange(0, BLOCK_T)[:, None] == t, logits + part[None, :], logits)
        if HAS_BIAS:
            logits += tl.load(bias_ptr + cols).to(tl.float32)[None, :]
    else:
        logits = tl.load(
            logits_ptr + offs_t[:, None] * stride_lt + cols[None, :], mask=tmask[:, None], other=0.0
        )
        logits = logits.to(tl.float32)  # exact for bf16/fp16, so the order equals torch's on the input dtype

    # k-th largest value per token by radix select over an order-preserving integer key (32 count passes;
    # tl.sort would do too but costs seconds per program under the interpreter)
    logits = tl.where(logits == 0.0, 0.0, logits)  # -0.0 -> +0.0: torch treats them as equal
    bits = logits.to(tl.int32, bitcast=True)
    key = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(tl.int64) + 2147483648  # float order, in [0, 2^32)
    kth = tl.zeros((BLOCK_T,), dtype=tl.int64)
    step = tl.full((BLOCK_T,), 2147483648, tl.int64)  # the bit decided next, from 2^31 down to 2^0
    for _ in range(32):
        cand = kth | step
        enough = tl.sum((key >= cand[:, None]).to(tl.int32), axis=1) >= K
        kth = tl.where(enough, cand, kth)
        step = step >> 1
    gt = key > kth[:, None]
    eq = key == kth[:, None]
    n_gt = tl.sum(gt.to(tl.int32), axis=1)
    eq_rank = tl.cumsum(eq.to(tl.int32), axis=1)  # 1-based rank among equals
    keep = gt | (eq & (eq_rank <= (K - n_gt)[:, None]))
    keep_i = keep.to(tl.int32)

    pos = tl.cumsum(keep_i, axis=1) - 1  # slot of each kept channel: ids come out ascending
    idx_ptrs = idx_ptr + offs_t[:, None] * stride_it + bank * K + pos
    tl.store(
        idx_ptrs, cols[None, :].to(tl.int64) + tl.zeros_like(pos).to(tl.int64), mask=keep & tmask[:, None]
    )

    # packed mask: channel c -> bit c % 8 of byte c // 8 (B is a multiple of 8, so bytes never straddle banks)
    weighted = keep_i * (1 << (offs_b % 8))[None, :]
    mask_bytes = tl.sum(tl.reshape(weighted, (BLOCK_T, B // 8, 8)), axis=2)  # (BT, B/8)
    offs_byte = bank * (B // 8) + tl.arange(0, B // 8)
    tl.store(
        bits_ptr + offs_t[:, None] * stride_bt + offs_byte[None, :],
        mask_bytes.to(tl.uint8),
        mask=tmask[:, None],
    )

    # the tile's union of kept channels in this bank, compacted in ascending order
    union = tl.max(tl.where(tmask[:, None], keep_i, 0), axis=0)  # (B,)
    upos = tl.cumsum(union, axis=0) - 1
    tl.store(cols_ptr + (tile * NB + bank) * B + upos, cols, mask=union > 0)
    tl.store(counts_ptr + tile * NB + bank, tl.sum(union, axis=0))


def check_banks(intermediate: int, bank_size: int, k: int) -> None:
    """ConfigError unless bank_size divides intermediate and 0 < k <= bank_size."""
    if bank_size <= 0 or intermediate % bank_size:
        raise ConfigError(f"bank_size={bank_size} must be positive and divide intermediate={intermediate}")
    if not 0 < k <= bank_size:
        raise ConfigError(f"k={k} must be in 1..bank_size={bank_size}")


def _launch(logits, h, w, bias, tokens, intermediate, bank_size, k, tile, device) -> Routing:
    nb = intermediate // bank_size
    n_tiles = triton.cdiv(tokens, tile)
    # one tile (decode): the kernel's token block shrinks to the tokens there are, so the radix select and
    # (below 16 tokens) the predictor's products do no work on empty rows; the union is the same
    block_t = triton.next_power_of_2(tokens) if n_tiles == 1 else tile
    idx = dispatch.empty(tokens, nb * k, dtype=torch.int64, device=device)
    bits = dispatch.empty(tokens, intermediate // 8, dtype=torch.uint8, device=device)
    cols = dispatch.empty(n_tiles, nb, bank_size, dtype=torch.int32, device=device)
    counts = dispatch.empty(n_tiles, nb, dtype=torch.int32, device=device)
    fused = logits is None
    rank = h.shape[1] if fused else 0
    block_r = max(16, min(64 if block_t >= 16 else 128, triton.next_power_of_2(max(rank, 1))))
    src = h if fused else logits
    _bank_topk_fwd_kernel[(n_tiles, nb)](
        logits if not fused else src, h if fused else src, w if fused else src,
        bias if bias is not None else src,
        idx, bits, cols, counts,
        tokens, rank, nb,
        0 if fused else logits.stride(0), h.stride(0) if fused else 0, w.stride(0) if fused else 0,
        idx.stride(0), bits.stride(0),
        B=bank_size, K=k, BLOCK_T=block_t, BLOCK_R=block_r,
        FUSED=fused, HAS_BIAS=bias is not None, DOT_F32=dot_in_fp32(src.dtype),
        num_warps=4,
    )  # fmt: skip
    return Routing(idx, bits, cols, counts, intermediate, bank_size, k, tile)


def bank_topk(
    logits: torch.Tensor, bank_size: int, k: int, tile_tokens: int | None = None, backend: str = "auto"
) -> Routing:
    """Routing of logits (T, I): the k largest of every bank of `bank_size` channels, ties to the lower index."""
    check_2d(logits, "logits", "(tokens, intermediate)", "bank_topk")
    tokens, intermediate = logits.shape
    check_banks(intermediate, bank_size, k)
    tile = resolve_tile_tokens(tokens, tile_tokens)
    if choose(logits, backend, "bank_topk", bank_size, logits.dtype) == "torch":
        return bank_topk_routing_ref(logits, bank_size, k, tile)
    return _launch(
        logits.contiguous(), None, None, None, tokens, intermediate, bank_size, k, tile, logits.device
    )


def predictor_bank_topk(
    h: torch.Tensor,
    out_w: torch.Tensor,
    out_b: torch.Tensor | None,
    bank_size: int,
    k: int,
    tile_tokens: int | None = None,
    backend: str = "auto",
) -> Routing:
    """Fused predictor tail + bank top-k: logits = h (T, r) @ out_w (I, r)^T + out_b, accumulated in fp32 and
    selected in registers (the logits never reach memory). Inference only: no gradient flows."""
    check_2d(h, "h", "(tokens, rank)", "predictor_bank_topk")
    check_2d(out_w, "out_w", "(intermediate, rank)", "predictor_bank_topk")
    tokens, rank = h.shape
    intermediate = out_w.shape[0]
    if out_w.shape[1] != rank:
        raise ConfigError(f"predictor out_proj weight {tuple(out_w.shape)} does not take rank {rank}")
    check_banks(intermediate, bank_size, k)
    tile = resolve_tile_tokens(tokens, tile_tokens)
    if choose(h, backend, "predictor_bank_topk", bank_size, h.dtype) == "torch":
        dt = torch.float64 if h.dtype == torch.float64 else torch.float32  # fp32 accumulation, as the kernel
        logits = h.to(dt) @ out_w.to(dt).t() + (out_b.to(dt) if out_b is not None else 0.0)
        return bank_topk_routing_ref(logits, bank_size, k, tile)
    h, out_w = h.contiguous(), out_w.contiguous()
    return _launch(None, h, out_w, out_b, tokens, intermediate, bank_size, k, tile, h.device)
