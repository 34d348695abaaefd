"""Decode path of the sparse SwiGLU forward: one token tile (T <= 16), read at as much of the copy bandwidth as
the GPU gives.

Why a separate path: at one token the general kernel's grid is (1 tile, nb banks) = 296 programs at Qwen2.5-7B
shapes, each looping serially over d for its 16 union channels, about two programs per SM: too few bytes in
flight (measured 1.3 TB/s of 4.25 on an H200). Here every stage has many small programs:

1. `_decode_gate_up_kernel`, grid (banks, d-chunks): the union's gate and up rows over one chunk of d, into
   fp32 partial dot products pa, pb (d-chunks, T, I), union entries only.
2. `_decode_down_kernel`, grid (d-blocks, bank splits): sums the partials over the d-chunks (one vector load,
   fixed tree order), h = silu(a) * b, zeroes non-kept entries (and applies the scale), and accumulates
   h @ down rows into fp32 partials (bank splits, T, d).
3. `reduce_splits`: sums the bank splits (one vector load per output block, fixed tree order) into (T, d).

Up to 4 tokens the products are elementwise multiplies and sums (a 16-row tl.dot would waste 3/4 or more of
its lanes); from 5 to 16 tokens, tl.dot. Every union bundle is read exactly once (gate/up by one d-chunk
program each, down by one d-block program each), so the bytes equal the bundled-layout prediction, and the
result does not depend on scheduling (no atomics).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from codesign.kernels import dispatch
from codesign.kernels.gathered_rows import Blocks, _dot, reduce_splits
from codesign.kernels.routing import Routing

DECODE_MAX_TOKENS = 16  # one 16-token tile: the decode path
ELEMENTWISE_MAX_TOKENS = 4  # up to here no tl.dot (its M is at least 16)
PROGRAMS_PER_SM = 12  # target grid size: enough loads in flight to cover DRAM latency
MAX_PARTIAL_BYTES = 4 << 20  # bank-split partials of the down projection stay L2-resident

# Autotune lists, (BLOCK_K, BLOCK_D, warps, stages); codesign.kernels.aot_check compiles each for sm_90.
GATE_UP_CONFIGS = [(16, 256, 4, 3), (16, 256, 8, 3), (16, 512, 8, 3), (16, 128, 4, 4), (16, 512, 8, 2)]
DOWN_CONFIGS = [(16, 256, 4, 3), (16, 128, 4, 4), (16, 512, 8, 3), (32, 128, 4, 3), (16, 64, 2, 4)]
_TUNED: dict[str, object] = {}


@triton.jit
def _keep_bits(bits_ptr, offs_t, cols, stride_bt, valid):
    """(BT, BK) bool: bit cols % 8 of byte cols // 8 of each token's packed mask."""
    byte = tl.load(bits_ptr + offs_t[:, None] * stride_bt + (cols >> 3)[None, :], mask=valid, other=0)
    return ((byte.to(tl.int32) >> (cols & 7)[None, :]) & 1) != 0


@triton.jit
def _decode_gate_up_kernel(
    x_ptr, g_ptr, u_ptr, cols_ptr, counts_ptr, pa_ptr, pb_ptr,
    T, D, D_CHUNK,
    stride_xt, stride_gc, stride_gd, stride_uc, stride_ud, stride_ps, stride_pt,
    B: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    USE_DOT: tl.constexpr, DOT_F32: tl.constexpr,
):  # fmt: skip
    """pa[chunk, t, c] = x[t, chunk] . g_c[chunk] (pb with u_c) for the union channels c of the bank."""
    bank = tl.program_id(0)
    chunk = tl.program_id(1)
    offs_t = tl.arange(0, BLOCK_T)
    tmask = offs_t < T
    d_lo = chunk * D_CHUNK
    d_hi = tl.minimum(d_lo + D_CHUNK, D)
    count = tl.load(counts_ptr + bank)
    for j in range(0, count, BLOCK_K):
        offs_k = j + tl.arange(0, BLOCK_K)
        kmask = offs_k < count
        cols = tl.load(cols_ptr + bank * B + offs_k, mask=kmask, other=0)  # (BK,) channel ids
        rows = cols.to(tl.int64)
        acc_a = tl.zeros((BLOCK_T, BLOCK_K), tl.float32)
        acc_b = tl.zeros((BLOCK_T, BLOCK_K), tl.float32)
        for d0 in range(d_lo, d_hi, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            dmask = offs_d < d_hi
            if USE_DOT:
                xt = tl.load(
                    x_ptr + offs_t[:, None] * stride_xt + offs_d[None, :],
                    mask=tmask[:, None] & dmask[None, :],
                    other=0.0,
                )
                wmask = dmask[:, None] & kmask[None, :]
                gw = tl.load(
                    g_ptr + rows[None, :] * stride_gc + offs_d[:, None] * stride_gd, mask=wmask, other=0.0
                )
                uw = tl.load(
                    u_ptr + rows[None, :] * stride_uc + offs_d[:, None] * stride_ud, mask=wmask, other=0.0
                )
                acc_a += _dot(xt, gw, DOT_F32)  # (BT, BD) @ (BD, BK)
                acc_b += _dot(xt, uw, DOT_F32)
            else:
                # weights once, then one x row per token; d spans one warp's lanes, so tl.sum needs no barrier
                wmask = kmask[:, None] & dmask[None, :]
                gw = tl.load(
                    g_ptr + rows[:, None] * stride_gc + offs_d[None, :] * stride_gd, mask=wmask, other=0.0
                )
                uw = tl.load(
                    u_ptr + rows[:, None] * stride_uc + offs_d[None, :] * stride_ud, mask=wmask, other=0.0
                )
                for t in tl.static_range(BLOCK_T):
                    # rows past T re-read row T - 1 (never stored): no scalar-and-block mask needed
                    row = tl.minimum(t, T - 1)
                    xv = tl.load(x_ptr + row * stride_xt + offs_d, mask=dmask, other=0.0).to(tl.float32)
                    sel = offs_t[:, None] == t
                    acc_a = tl.where(
                        sel, acc_a + tl.sum(gw.to(tl.float32) * xv[None, :], axis=1)[None, :], acc_a
                    )
                    acc_b = tl.where(
                        sel, acc_b + tl.sum(uw.to(tl.float32) * xv[None, :], axis=1)[None, :], acc_b
                    )
        out = chunk * stride_ps + offs_t[:, None] * stride_pt + cols[None, :]
        tk = tmask[:, None] & kmask[None, :]
        tl.store(pa_ptr + out, acc_a, mask=tk)
        tl.store(pb_ptr + out, acc_b, mask=tk)


@triton.jit
def _decode_down_kernel(
    pa_ptr, pb_ptr, s_ptr, bits_ptr, cols_ptr, counts_ptr, dn_ptr, part_ptr,
    T, D, NB, N_CHUNKS, BANKS_PER_PROG,
    stride_ps, stride_pt, stride_st, stride_bt, stride_dc, stride_dd, stride_qs, stride_qt,
    B: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr,
    HAS_SCALE: tl.constexpr, USE_DOT: tl.constexpr, DOT_F32: tl.constexpr,
):  # fmt: skip
    """part[split, t, dblock] = sum over the split's union channels c of h[t, c] down[c, dblock]."""
    offs_d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    split = tl.program_id(1)
    offs_t = tl.arange(0, BLOCK_T)
    offs_s = tl.arange(0, BLOCK_S)
    tmask = offs_t < T
    dmask = offs_d < D
    smask = offs_s < N_CHUNKS
    if USE_DOT:
        acc = tl.zeros((BLOCK_T, BLOCK_D), tl.float32)
    else:
        acc = tl.zeros((BLOCK_T, BLOCK_K, BLOCK_D), tl.float32)  # summed over channels once, at the end
    bank_lo = split * BANKS_PER_PROG
    bank_hi = tl.minimum(bank_lo + BANKS_PER_PROG, NB)
    for bank in range(bank_lo, bank_hi):
        count = tl.load(counts_ptr + bank)
        for j in range(0, count, BLOCK_K):
            offs_k = j + tl.arange(0, BLOCK_K)
            kmask = offs_k < count
            cols = tl.load(cols_ptr + bank * B + offs_k, mask=kmask, other=0)
            rows = cols.to(tl.int64)
            # the weight load goes first, so it is in flight while the partials are summed
            if USE_DOT:
                w = tl.load(
                    dn_ptr + rows[:, None] * stride_dc + offs_d[None, :] * stride_dd,
                    mask=kmask[:, None] & dmask[None, :],
                    other=0.0,
                )  # (BK, BD)
            else:
                w = tl.load(
                    dn_ptr + rows[None, :, None] * stride_dc + offs_d[None, None, :] * stride_dd,
                    mask=kmask[None, :, None] & dmask[None, None, :],
                    other=0.0,
                )  # (1, BK, BD)
            tk = tmask[:, None] & kmask[None, :]
            # all d-chunk partials of (T, BK) in one load, summed in a fixed tree order
            p = offs_s[:, None, None] * stride_ps + offs_t[None, :, None] * stride_pt + cols[None, None, :]
            pmask = smask[:, None, None] & tk[None, :, :]
            a = tl.sum(tl.load(pa_ptr + p, mask=pmask, other=0.0), axis=0)  # (BT, BK)
            b = tl.sum(tl.load(pb_ptr + p, mask=pmask, other=0.0), axis=0)
            keep = _keep_bits(bits_ptr, offs_t, cols, stride_bt, tk)
            h = a * tl.sigmoid(a) * b
            if HAS_SCALE:
                h *= tl.load(s_ptr + offs_t[:, None] * stride_st + cols[None, :], mask=keep, other=0.0).to(
                    tl.float32
                )
            h = tl.where(keep, h, 0.0)  # each token keeps only its own channels of the union
            if USE_DOT:
                acc += _dot(h, w, DOT_F32)
            else:
                acc += h[:, :, None] * w.to(tl.float32)
    if not USE_DOT:
        acc = tl.sum(acc, axis=1)  # (BT, BK, BD) -> (BT, BD)
    out = part_ptr + split * stride_qs + offs_t[:, None] * stride_qt + offs_d[None, :]
    tl.store(out, acc, mask=tmask[:, None] & dmask[None, :])


# ---------------------------------------------------------------------------------------------- host side


def _tuned(name: str):
    """Autotuned kernels, built on first CUDA use only (autotune cannot run under the interpreter).
    Keys hold BLOCK_T / USE_DOT, so 1, 2-4 and 5-16 tokens tune separately from each other and from prefill."""
    if name not in _TUNED:
        kernel, configs, key = {
            "gate_up": (_decode_gate_up_kernel, GATE_UP_CONFIGS, ["D", "D_CHUNK", "BLOCK_T", "USE_DOT"]),
            "down": (_decode_down_kernel, DOWN_CONFIGS, ["D", "NB", "BANKS_PER_PROG", "BLOCK_T", "BLOCK_S", "USE_DOT"]),
        }[name]  # fmt: skip
        tconfigs = [
            triton.Config({"BLOCK_K": k, "BLOCK_D": d}, num_warps=w, num_stages=s) for k, d, w, s in configs
        ]
        _TUNED[name] = triton.autotune(configs=tconfigs, key=key)(kernel)
    return _TUNED[name]


def _sms(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def d_chunk(hidden: int, banks: int, blocks: Blocks, device: torch.device) -> int:
    """d per gate/up program: small enough for PROGRAMS_PER_SM x SMs programs, a multiple of 256 (CUDA)."""
    if blocks.d_chunk is not None:
        return blocks.d_chunk
    if device.type != "cuda":
        return 2 * blocks.block_d  # the interpreter: two d-blocks per chunk, so the inner loop runs twice
    quantum = 256
    want_chunks = triton.cdiv(PROGRAMS_PER_SM * _sms(device), banks)
    return quantum * max(1, triton.cdiv(hidden, quantum) // want_chunks)


def bank_splits(tokens: int, hidden: int, banks: int, blocks: Blocks, device: torch.device) -> int:
    """Bank splits of the down projection: PROGRAMS_PER_SM x SMs programs over 256-wide d-blocks, with the
    fp32 partials (splits x T x d) under MAX_PARTIAL_BYTES."""
    if blocks.splits is not None:
        return max(1, min(blocks.splits, banks))
    if device.type != "cuda":
        return min(2, banks)
    want = triton.cdiv(PROGRAMS_PER_SM * _sms(device), triton.cdiv(hidden, 256))
    cap = max(1, MAX_PARTIAL_BYTES // (tokens * hidden * 4))
    return max(1, min(banks, want, cap))


def _meta(x, routing: Routing, blocks: Blocks, dot_f32: bool) -> tuple[dict, dict]:
    tokens = x.shape[0]
    use_dot = tokens > ELEMENTWISE_MAX_TOKENS
    block_t = 16 if use_dot else triton.next_power_of_2(tokens)
    meta = {"B": routing.bank_size, "BLOCK_T": block_t, "USE_DOT": use_dot, "DOT_F32": dot_f32}
    fixed = {"BLOCK_K": blocks.block_k, "BLOCK_D": blocks.block_d, "num_warps": 4}
    return meta, {} if x.device.type == "cuda" else fixed


def _gate_up(x, gate_w, up_w, routing: Routing, blocks: Blocks, meta: dict, fixed: dict):
    """Stage 1: (pa, pb), each (d-chunks, T, I) fp32, union entries only."""
    tokens, hidden = x.shape
    nb, device = routing.banks, x.device
    chunk = d_chunk(hidden, nb, blocks, device)
    n_chunks = triton.cdiv(hidden, chunk)
    pa = dispatch.empty(n_chunks, tokens, routing.intermediate, dtype=torch.float32, device=device)
    pb = dispatch.empty(n_chunks, tokens, routing.intermediate, dtype=torch.float32, device=device)
    kernel = _tuned("gate_up") if device.type == "cuda" else _decode_gate_up_kernel
    kernel[(nb, n_chunks)](
        x, gate_w, up_w, routing.union_cols, routing.union_counts, pa, pb,
        tokens, hidden, chunk,
        x.stride(0), gate_w.stride(0), gate_w.stride(1), up_w.stride(0), up_w.stride(1), pa.stride(0), pa.stride(1),
        **meta, **fixed,
    )  # fmt: skip
    return pa, pb


def _down(pa, pb, down_t, scale, routing: Routing, blocks: Blocks, meta: dict, fixed: dict):
    """Stage 2: (bank splits, T, d) fp32 partials of h @ down, h combined from the d-chunk partials."""
    n_chunks, tokens, _ = pa.shape
    hidden, nb, device = down_t.shape[1], routing.banks, pa.device
    splits = bank_splits(tokens, hidden, nb, blocks, device)
    per = triton.cdiv(nb, splits)
    splits = triton.cdiv(nb, per)
    part = dispatch.empty(splits, tokens, hidden, dtype=torch.float32, device=device)
    s = scale if scale is not None else pa[0]
    kernel = _tuned("down") if device.type == "cuda" else _decode_down_kernel
    grid = lambda m: (triton.cdiv(hidden, m["BLOCK_D"]), splits)  # noqa: E731
    kernel[grid](
        pa, pb, s, routing.bits, routing.union_cols, routing.union_counts, down_t, part,
        tokens, hidden, nb, n_chunks, per,
        pa.stride(0), pa.stride(1), s.stride(0), routing.bits.stride(0), down_t.stride(0), down_t.stride(1),
        part.stride(0), part.stride(1),
        BLOCK_S=triton.next_power_of_2(n_chunks), HAS_SCALE=scale is not None, **meta, **fixed,
    )  # fmt: skip
    return part


def decode_forward(x, gate_w, up_w, down_t, scale, routing: Routing, blocks: Blocks, dot_f32: bool):
    """y (T, d) for T <= DECODE_MAX_TOKENS tokens in one routing tile (see the module docstring)."""
    assert routing.tiles == 1 and x.shape[0] <= DECODE_MAX_TOKENS, (
        "decode path: one tile of at most 16 tokens"
    )
    meta, fixed = _meta(x, routing, blocks, dot_f32)
    pa, pb = _gate_up(x, gate_w, up_w, routing, blocks, meta, fixed)
    part = _down(pa, pb, down_t, scale, routing, blocks, meta, fixed)
    return reduce_splits(part, x.dtype)


def decode_stages(x, gate_w, up_w, down_t, routing: Routing, blocks: Blocks | None = None):
    """[(name, fn)]: the decode path's launches one at a time, each fed its predecessor's output (for
    benchmarks: where the time of one sparse FFN goes)."""
    blocks = blocks or Blocks()
    meta, fixed = _meta(x, routing, blocks, dispatch.dot_in_fp32(x.dtype))
    pa, pb = _gate_up(x, gate_w, up_w, routing, blocks, meta, fixed)
    part = _down(pa, pb, down_t, None, routing, blocks, meta, fixed)
    return [
        ("gate_up", lambda: _gate_up(x, gate_w, up_w, routing, blocks, meta, fixed)),
        ("down", lambda: _down(pa, pb, down_t, None, routing, blocks, meta, fixed)),
        ("reduce", lambda: reduce_splits(part, x.dtype)),
    ]


def tuned_configs() -> dict[str, dict]:
    """The configs the decode autotuners chose so far, per kernel and key (for benchmark records)."""
    return {name: {str(k): str(v) for k, v in tuner.cache.items()} for name, tuner in _TUNED.items()}
