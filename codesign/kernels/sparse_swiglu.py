"""Sparse SwiGLU: y_t = sum over kept channels c of s_tc * silu(x_t . g_c) * (x_t . u_c) * d_c.

g_c, u_c, d_c are channel c's gate row, up row and down column: one bundle of the channel-major layout
(codesign.layout), passed as three (I, d) views (`bundle_views`) so that HF weights work too (slower: the down
column is then strided). s is an optional (T, I) multiplier, 1 in value, through which the predictor receives
gradient (the "gate" estimator); dropped channels get no gradient (that would need their dense value).

Formulation (decode and prefill alike, measured in bench/gpu_kernels.py against cuBLAS): tokens are cut into
tiles of `routing.tile_tokens` (16 up to 16 tokens, else 64) and every (tile, bank) reads the tile's *union* of
kept bundles once. Kernel 1 (one program per tile x bank) computes h = silu(x.g) * (x.u) for the union channels
with tl.dot and zeroes each token's non-kept entries; kernel 2 (tile x d-block x bank split) accumulates h @ down
over the union rows into fp32 partials that a third kernel sums in a fixed order (deterministic, no atomics).
One token reads exactly its kept bundles (k/B of dense); a tile reads the union of its tokens' masks, which
grows toward dense as masks differ: that cost is real and reported, not hidden.
Up to 16 tokens in one tile the forward takes the decode path instead (codesign.kernels.decode): the same
bytes cut into many small programs, so that enough loads are in flight to approach the copy bandwidth.

Backward recomputes activations (only the inputs are saved): kernel 1 recomputes x.g, x.u and dy.d_c and writes
da, db, h*m (and ds) for the union entries of (T, I) fp32 scratch (uninitialised: nothing else is read); dx is
the gathered-rows matmul of (da, db) with (gate, up); weight gradients come from one program per bank x d-block
looping over the token tiles whose union touches the bank, loading only the kept entries.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from codesign.errors import ConfigError
from codesign.kernels import dispatch
from codesign.kernels.decode import DECODE_MAX_TOKENS, _keep_bits, decode_forward
from codesign.kernels.dispatch import choose, dot_in_fp32
from codesign.kernels.gathered_rows import Blocks, _dot, gathered_rows_matmul, launch_meta
from codesign.kernels.routing import Routing, check_2d, routing_from_indices
from codesign.layout import DOWN, GATE, UP

__all__ = ["sparse_swiglu", "sparse_swiglu_indices", "sparse_swiglu_ref", "sparse_swiglu_dense_ref"]


@triton.jit
def _sparse_swiglu_fwd_kernel(
    x_ptr, g_ptr, u_ptr, s_ptr, bits_ptr, cols_ptr, counts_ptr, h_ptr,
    T, D, NB,
    stride_xt, stride_gc, stride_gd, stride_uc, stride_ud, stride_st, stride_bt, stride_ht,
    B: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_SCALE: tl.constexpr, DOT_F32: tl.constexpr,
):  # fmt: skip
    """h[t, c] = s * silu(x.g_c) * (x.u_c) for the union channels c of (tile, bank); 0 where t did not keep c."""
    tile = tl.program_id(0)
    bank = tl.program_id(1)
    offs_t = tile * BLOCK_T + tl.arange(0, BLOCK_T)
    tmask = offs_t < T
    count = tl.load(counts_ptr + tile * NB + bank)
    for j in range(0, count, BLOCK_K):
        offs_k = j + tl.arange(0, BLOCK_K)
        kmask = offs_k < count
        cols = tl.load(cols_ptr + (tile * NB + bank) * B + offs_k, mask=kmask, other=0)  # (BK,) channel ids
        rows = cols.to(tl.int64)
        acc_g = tl.zeros((BLOCK_T, BLOCK_K), tl.float32)
        acc_u = tl.zeros((BLOCK_T, BLOCK_K), tl.float32)
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            dmask = offs_d < D
            xt = tl.load(
                x_ptr + offs_t[:, None] * stride_xt + offs_d[None, :],
                mask=tmask[:, None] & dmask[None, :],
                other=0.0,
            )
            wmask = dmask[:, None] & kmask[None, :]
            gw = tl.load(
                g_ptr + rows[None, :] * stride_gc + offs_d[:, None] * stride_gd, mask=wmask, other=0.0
            )  # (BD, BK)
            uw = tl.load(
                u_ptr + rows[None, :] * stride_uc + offs_d[:, None] * stride_ud, mask=wmask, other=0.0
            )
            acc_g += _dot(xt, gw, DOT_F32)
            acc_u += _dot(xt, uw, DOT_F32)
        tk = tmask[:, None] & kmask[None, :]
        keep = _keep_bits(bits_ptr, offs_t, cols, stride_bt, tk)
        h = acc_g * tl.sigmoid(acc_g) * acc_u
        if HAS_SCALE:
            h *= tl.load(s_ptr + offs_t[:, None] * stride_st + cols[None, :], mask=keep, other=0.0).to(
                tl.float32
            )
        h = tl.where(keep, h, 0.0)  # each token keeps only its own channels of the union
        tl.store(h_ptr + offs_t[:, None] * stride_ht + cols[None, :], h, mask=tk)


@triton.jit
def _sparse_swiglu_bwd_kernel(
    x_ptr, g_ptr, u_ptr, dn_ptr, s_ptr, bits_ptr, cols_ptr, counts_ptr, dy_ptr,
    da_ptr, db_ptr, hs_ptr, ds_ptr,
    T, D, NB,
    stride_xt, stride_gc, stride_gd, stride_uc, stride_ud, stride_dc, stride_dd,
    stride_st, stride_bt, stride_yt, stride_at,
    B: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_SCALE: tl.constexpr, DOT_F32: tl.constexpr,
):  # fmt: skip
    """Recompute a = x.g, b = x.u; dh = dy.d_c; write da, db, h*m (and ds) for the union channels of (tile, bank)."""
    tile = tl.program_id(0)
    bank = tl.program_id(1)
    offs_t = tile * BLOCK_T + tl.arange(0, BLOCK_T)
    tmask = offs_t < T
    count = tl.load(counts_ptr + tile * NB + bank)
    for j in range(0, count, BLOCK_K):
        offs_k = j + tl.arange(0, BLOCK_K)
        kmask = offs_k < count
        cols = tl.load(cols_ptr + (tile * NB + bank) * B + offs_k, mask=kmask, other=0)
        rows = cols.to(tl.int64)
        a = tl.zeros((BLOCK_T, BLOCK_K), tl.float32)
        b = tl.zeros((BLOCK_T, BLOCK_K), tl.float32)
        dh = tl.zeros((BLOCK_T, BLOCK_K), tl.float32)
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            dmask = offs_d < D
            tdm = tmask[:, None] & dmask[None, :]
            xt = tl.load(x_ptr + offs_t[:, None] * stride_xt + offs_d[None, :], mask=tdm, other=0.0)
            dyt = tl.load(dy_ptr + offs_t[:, None] * stride_yt + offs_d[None, :], mask=tdm, other=0.0)
            wmask = dmask[:, None] & kmask[None, :]
            gw = tl.load(
                g_ptr + rows[None, :] * stride_gc + offs_d[:, None] * stride_gd, mask=wmask, other=0.0
            )
            uw = tl.load(
                u_ptr + rows[None, :] * stride_uc + offs_d[:, None] * stride_ud, mask=wmask, other=0.0
            )
            dw = tl.load(
                dn_ptr + rows[None, :] * stride_dc + offs_d[:, None] * stride_dd, mask=wmask, other=0.0
            )
            a += _dot(xt, gw, DOT_F32)
            b += _dot(xt, uw, DOT_F32)
            dh += _dot(dyt, dw, DOT_F32)
        tk = tmask[:, None] & kmask[None, :]
        keep = _keep_bits(bits_ptr, offs_t, cols, stride_bt, tk)
        m = tl.where(keep, 1.0, 0.0)
        if HAS_SCALE:
            m *= tl.load(s_ptr + offs_t[:, None] * stride_st + cols[None, :], mask=keep, other=0.0).to(
                tl.float32
            )
        sig = tl.sigmoid(a)
        silu = a * sig
        h = silu * b
        dhm = dh * m
        scratch = offs_t[:, None] * stride_at + cols[None, :]
        tl.store(
            da_ptr + scratch, dhm * b * sig * (1.0 + a * (1.0 - sig)), mask=tk
        )  # silu' = sig (1 + a (1 - sig))
        tl.store(db_ptr + scratch, dhm * silu, mask=tk)
        tl.store(hs_ptr + scratch, h * m, mask=tk)
        if HAS_SCALE:
            tl.store(ds_ptr + scratch, dh * h, mask=keep)


@triton.jit
def _sparse_swiglu_bwd_w_kernel(
    x_ptr, dy_ptr, da_ptr, db_ptr, hs_ptr, bits_ptr, counts_ptr, gg_ptr, gu_ptr, gd_ptr,
    T, D, NB, N_TILES, stride_xt, stride_yt, stride_at, stride_bt, stride_wc,
    B: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, DOT_F32: tl.constexpr,
):  # fmt: skip
    bank = tl.program_id(0)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = offs_d < D
    offs_c = bank * B + tl.arange(0, B)
    acc_g = tl.zeros((B, BLOCK_D), tl.float32)
    acc_u = tl.zeros((B, BLOCK_D), tl.float32)
    acc_d = tl.zeros((B, BLOCK_D), tl.float32)
    for tile in range(0, N_TILES):
        if tl.load(counts_ptr + tile * NB + bank) > 0:  # tiles whose tokens keep none of the bank add nothing
            offs_t = tile * BLOCK_T + tl.arange(0, BLOCK_T)
            tmask = offs_t < T
            tdm = tmask[:, None] & dmask[None, :]
            xt = tl.load(x_ptr + offs_t[:, None] * stride_xt + offs_d[None, :], mask=tdm, other=0.0)
            dyt = tl.load(dy_ptr + offs_t[:, None] * stride_yt + offs_d[None, :], mask=tdm, other=0.0)
            scratch = offs_t[None, :] * stride_at + offs_c[:, None]  # (B, BT): transposed view of (T, I)
            # only kept (token, channel) entries were written by the kernel above: read those, 0 elsewhere
            kept = tl.trans(_keep_bits(bits_ptr, offs_t, offs_c, stride_bt, tmask[:, None]))  # (B, BT)
            da = tl.load(da_ptr + scratch, mask=kept, other=0.0)
            db = tl.load(db_ptr + scratch, mask=kept, other=0.0)
            hs = tl.load(hs_ptr + scratch, mask=kept, other=0.0)
            acc_g += _dot(da, xt, DOT_F32)
            acc_u += _dot(db, xt, DOT_F32)
            acc_d += _dot(hs, dyt, DOT_F32)
    out = offs_c[:, None] * stride_wc + offs_d[None, :]
    tl.store(gg_ptr + out, acc_g, mask=dmask[None, :])
    tl.store(gu_ptr + out, acc_u, mask=dmask[None, :])
    tl.store(gd_ptr + out, acc_d, mask=dmask[None, :])


# ---------------------------------------------------------------------------------------------- host side


# Autotune list of the forward kernel, (BLOCK_K, BLOCK_D, warps, stages). Decode wants many bytes in flight per SM (wide d-blocks,
# deep pipelines); 64-token tiles want less shared memory per stage. Configs that overflow shared memory are
# skipped by the autotuner; codesign.kernels.aot_check compiles every config for sm_90.
H_CONFIGS = [(16, 256, 4, 3), (16, 128, 4, 4), (16, 256, 4, 4), (16, 512, 8, 3), (16, 128, 2, 5),
             (32, 256, 8, 3), (32, 128, 4, 3)]  # fmt: skip
_TUNED: dict[str, object] = {}


def _tuned_h():
    """The autotuned forward kernel, built on first CUDA use only (autotune cannot run under the interpreter)."""
    if "h" not in _TUNED:
        configs = [
            triton.Config({"BLOCK_K": k, "BLOCK_D": d}, num_warps=w, num_stages=s) for k, d, w, s in H_CONFIGS
        ]
        _TUNED["h"] = triton.autotune(configs=configs, key=["D", "NB", "BLOCK_T"])(_sparse_swiglu_fwd_kernel)
    return _TUNED["h"]


def _check(x, gate_w, up_w, down_t, routing: Routing, scale) -> None:
    check_2d(x, "x", "(tokens, hidden)", "sparse_swiglu")
    tokens, hidden = x.shape
    want = (routing.intermediate, hidden)
    for name, w in (("gate", gate_w), ("up", up_w), ("down (as rows)", down_t)):
        if tuple(w.shape) != want:
            raise ConfigError(f"sparse_swiglu: {name} weight has shape {tuple(w.shape)}, expected {want}")
        if w.dtype != x.dtype:
            raise ConfigError(f"sparse_swiglu: {name} weight is {w.dtype} but x is {x.dtype}")
    if routing.tokens != tokens:
        raise ConfigError(f"sparse_swiglu: routing holds {routing.tokens} tokens, x has {tokens}")
    if scale is not None and tuple(scale.shape) != (tokens, routing.intermediate):
        raise ConfigError(
            f"sparse_swiglu: scale has shape {tuple(scale.shape)}, expected {(tokens, routing.intermediate)}"
        )


def _forward(x, gate_w, up_w, down_t, scale, routing: Routing, blocks: Blocks) -> torch.Tensor:
    tokens, hidden = x.shape
    cuda = x.device.type == "cuda"
    dot_f32 = dot_in_fp32(x.dtype)
    if routing.tiles == 1 and tokens <= DECODE_MAX_TOKENS:  # decode: many small programs (decode.py)
        return decode_forward(x, gate_w, up_w, down_t, scale, routing, blocks, dot_f32)
    # only the union entries of h are written and read
    h = dispatch.empty(tokens, routing.intermediate, dtype=torch.float32, device=x.device)
    kernel = _tuned_h() if cuda else _sparse_swiglu_fwd_kernel
    s = scale if scale is not None else h
    kernel[(routing.tiles, routing.banks)](
        x, gate_w, up_w, s, routing.bits, routing.union_cols, routing.union_counts, h,
        tokens, hidden, routing.banks,
        x.stride(0), gate_w.stride(0), gate_w.stride(1), up_w.stride(0), up_w.stride(1),
        s.stride(0), routing.bits.stride(0), h.stride(0),
        HAS_SCALE=scale is not None, DOT_F32=dot_f32, **launch_meta(routing, blocks, cuda),
    )  # fmt: skip
    return gathered_rows_matmul(h, down_t, None, None, routing, x.dtype, blocks, dot_f32)


def _backward(dy, x, gate_w, up_w, down_t, scale, routing: Routing, blocks: Blocks, need_w: bool):
    tokens, hidden = x.shape
    dot_f32 = dot_in_fp32(x.dtype)
    cuda = x.device.type == "cuda"
    bwd_blocks = blocks if not cuda else Blocks(block_k=16, block_d=128, splits=blocks.splits)
    meta = launch_meta(routing, bwd_blocks, False)  # fixed tiles: backward is not autotuned
    # da, db, h*m: (T, I) fp32 scratch of which only the tiles' union entries are written and read (the
    # weight-gradient kernel masks its loads by the kept bits), so no zero fill; ds is the scale's gradient,
    # returned to the caller, so it is zero wherever a token dropped a channel
    da, db, hs = (
        dispatch.empty(tokens, routing.intermediate, dtype=torch.float32, device=x.device) for _ in range(3)
    )
    ds = (
        torch.zeros(tokens, routing.intermediate, dtype=torch.float32, device=x.device)
        if scale is not None
        else da
    )
    s = scale if scale is not None else da
    _sparse_swiglu_bwd_kernel[(routing.tiles, routing.banks)](
        x, gate_w, up_w, down_t, s, routing.bits, routing.union_cols, routing.union_counts, dy,
        da, db, hs, ds,
        tokens, hidden, routing.banks,
        x.stride(0), gate_w.stride(0), gate_w.stride(1), up_w.stride(0), up_w.stride(1),
        down_t.stride(0), down_t.stride(1), s.stride(0), routing.bits.stride(0), dy.stride(0), da.stride(0),
        HAS_SCALE=scale is not None, DOT_F32=dot_f32, **meta,
    )  # fmt: skip
    dx = gathered_rows_matmul(da, gate_w, db, up_w, routing, x.dtype, bwd_blocks, dot_f32)
    grads_w = (None, None, None)
    if need_w:
        grads_w = tuple(
            dispatch.empty(routing.intermediate, hidden, dtype=torch.float32, device=x.device)
            for _ in range(3)
        )
        block_d = min(bwd_blocks.block_d, triton.next_power_of_2(hidden))
        _sparse_swiglu_bwd_w_kernel[(routing.banks, triton.cdiv(hidden, block_d))](
            x, dy, da, db, hs, routing.bits, routing.union_counts, *grads_w,
            tokens, hidden, routing.banks, routing.tiles, x.stride(0), dy.stride(0), da.stride(0),
            routing.bits.stride(0), hidden,
            B=routing.bank_size, BLOCK_T=routing.tile_tokens, BLOCK_D=block_d, DOT_F32=dot_f32, num_warps=4,
        )  # fmt: skip
        grads_w = tuple(g.to(x.dtype) for g in grads_w)
    return dx, *grads_w, (ds.to(scale.dtype) if scale is not None else None)


class SparseSwiGLUFunction(torch.autograd.Function):
    """autograd over the Triton kernels; backward recomputes activations from the saved inputs."""

    @staticmethod
    def forward(ctx, x, gate_w, up_w, down_t, scale, routing, blocks):
        ctx.save_for_backward(x, gate_w, up_w, down_t, scale)
        ctx.routing, ctx.blocks = routing, blocks
        return _forward(x, gate_w, up_w, down_t, scale, routing, blocks)

    @staticmethod
    def backward(ctx, dy):
        x, gate_w, up_w, down_t, scale = ctx.saved_tensors
        need_w = any(ctx.needs_input_grad[1:4])
        dx, dg, du, dd, ds = _backward(
            dy.contiguous(), x, gate_w, up_w, down_t, scale, ctx.routing, ctx.blocks, need_w
        )
        return dx, dg, du, dd, ds, None, None


def sparse_swiglu(
    x: torch.Tensor,
    gate_w: torch.Tensor,
    up_w: torch.Tensor,
    down_t: torch.Tensor,
    routing: Routing,
    scale: torch.Tensor | None = None,
    backend: str = "auto",
    blocks: Blocks | None = None,
) -> torch.Tensor:
    """SwiGLU over each token's kept channels: x (T, d) -> (T, d), differentiable in x, weights and scale.

    gate_w, up_w, down_t are (I, d): for bundled weights pass `bundle_views(bundles)`; for HF weights pass
    gate_proj.weight, up_proj.weight, down_proj.weight.t(). `routing` comes from bank_topk /
    predictor_bank_topk / routing_from_indices; `scale` (T, I) multiplies each kept activation (gradient flows
    to it on kept channels).
    """
    _check(x, gate_w, up_w, down_t, routing, scale)
    # the one rule (dispatch.choose): banks the kernels cannot take run the torch path under "auto", forward and
    # backward alike, and are a one-line ConfigError under backend="triton"; zero tokens need no kernel
    path = choose(x, backend, "sparse_swiglu", routing.bank_size, x.dtype)
    if path == "torch" or x.shape[0] == 0:
        return sparse_swiglu_ref(x, gate_w, up_w, down_t, routing.idx, scale)
    return SparseSwiGLUFunction.apply(
        x.contiguous(), gate_w, up_w, down_t, scale, routing, blocks or Blocks()
    )


def sparse_swiglu_indices(
    x: torch.Tensor, idx: torch.Tensor, bundles: torch.Tensor, bank_size: int, backend: str = "auto"
) -> torch.Tensor:
    """Kept ids (T, nb * k) ascending + bundled weights (I, 3, d) -> (T, d): the call shape of
    codesign.sparse.gather.sparse_swiglu_gather, for a model that selects channels itself."""
    if bundles.dim() != 3 or bundles.shape[1] != 3:
        raise ConfigError(
            f"sparse_swiglu_indices: bundles must be (I, 3, d), got shape {tuple(bundles.shape)}"
        )
    routing = routing_from_indices(idx, bundles.shape[0], bank_size)
    gate, up, down_t = bundles[:, GATE], bundles[:, UP], bundles[:, DOWN]
    return sparse_swiglu(x, gate, up, down_t, routing, backend=backend)


def sparse_swiglu_ref(x, gate_w, up_w, down_t, idx, scale=None) -> torch.Tensor:
    """Torch path (and CPU default): gather the union of kept rows, compute, zero each token's non-kept entries.

    Reads only the union's rows (exactly the kept rows for one token); differentiable through index_select.
    """
    channels = torch.unique(idx)  # (U,) ascending
    local = torch.searchsorted(channels, idx)  # (T, K) position of each kept id within `channels`
    keep = torch.zeros(x.shape[0], channels.numel(), dtype=x.dtype, device=x.device).scatter_(1, local, 1.0)
    if scale is not None:
        keep = keep * scale.index_select(1, channels).to(x.dtype)
    g = x @ gate_w.index_select(0, channels).t()  # (T, U)
    h = torch.nn.functional.silu(g) * (x @ up_w.index_select(0, channels).t()) * keep
    return h @ down_t.index_select(0, channels)  # (T, d)


def sparse_swiglu_dense_ref(x, gate_w, up_w, down_t, mask, scale=None) -> torch.Tensor:
    """Masked dense SwiGLU (the golden model for tests, in whatever dtype it is given, e.g. fp64)."""
    m = mask.to(x.dtype) * (scale.to(x.dtype) if scale is not None else 1.0)
    return (torch.nn.functional.silu(x @ gate_w.t()) * (x @ up_w.t()) * m) @ down_t
