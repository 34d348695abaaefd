"""The fused numba CPU decode kernel against its reference, the torch gather path, and an fp64 masked dense."""

import pytest
import torch
from kernels_helpers import TOLERANCES, report_mismatch

from codesign.errors import ConfigError
from codesign.kernels.cpu_decode import DECODE_MAX_TOKENS, sparse_swiglu_cpu_decode
from codesign.kernels.pack import bundle_views, pack_bundles
from codesign.kernels.sparse_swiglu import sparse_swiglu_dense_ref
from codesign.sparse.gather import sparse_swiglu_gather
from codesign.sparse.topk import bank_topk_indices, indices_to_mask

HIDDEN, INTERMEDIATE, BANK = 100, 320, 64  # d not a multiple of a SIMD width; I = 5 banks


def _problem(gen, tokens, k, dtype):
    x = torch.randn(tokens, HIDDEN, generator=gen).to(dtype)
    gate = torch.randn(INTERMEDIATE, HIDDEN, generator=gen) / HIDDEN**0.5
    up = torch.randn(INTERMEDIATE, HIDDEN, generator=gen) / HIDDEN**0.5
    down = torch.randn(HIDDEN, INTERMEDIATE, generator=gen) * (2 / (INTERMEDIATE * k / BANK)) ** 0.5
    bundle = pack_bundles(gate, up, down).to(dtype)
    idx = bank_topk_indices(torch.randn(tokens, INTERMEDIATE, generator=gen), BANK, k)
    return x, bundle, idx


def _rel(a, b) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("k", [16, 64, 1], ids=["k16", "kB", "k1"])
@pytest.mark.parametrize("tokens", [1, 3, DECODE_MAX_TOKENS])
def test_equals_torch_path_and_masked_dense(gen, tokens, k, dtype):
    x, bundle, idx = _problem(gen, tokens, k, dtype)
    gate, up, down_t = bundle_views(bundle)
    y = sparse_swiglu_cpu_decode(x, idx, bundle, threads=2)
    assert y.dtype == dtype and y.shape == x.shape
    mask = indices_to_mask(idx, INTERMEDIATE)
    ref = sparse_swiglu_dense_ref(x.double(), gate.double(), up.double(), down_t.double(), mask)
    torch_path = sparse_swiglu_gather(x, idx, gate, up, down_t.t(), bundle=bundle if tokens == 1 else None)
    atol, rtol = TOLERANCES[dtype]
    # the reference path first (stated tolerance from the one table), then the golden fp64 model
    torch.testing.assert_close(
        y.double(),
        torch_path.double(),
        atol=atol,
        rtol=rtol,
        msg=lambda m: m + report_mismatch(y, torch_path),
    )
    torch.testing.assert_close(y.double(), ref, atol=atol, rtol=rtol)
    # fp32 accumulation and one final rounding: fp32 is exact to float noise; bf16 within one output rounding
    # (2^-9 relative) and never worse than the torch path, which rounds every intermediate to bf16
    if dtype == torch.float32:
        assert _rel(y, ref) < 1e-6
    else:
        assert _rel(y, ref) < 4e-3 and _rel(y, ref) <= _rel(torch_path, ref) * 1.1 + 1e-4


def test_threads_and_schedulers_agree(gen):
    """Per-part fp32 accumulators: any thread count / scheduler gives the sum up to fp32 reordering, and the
    same call twice gives the same bits (no races)."""
    x, bundle, idx = _problem(gen, 5, 16, torch.float32)
    one = sparse_swiglu_cpu_decode(x, idx, bundle, threads=1)
    for threads in (2, 3):
        for scheduler in ("pool", "prange"):
            y = sparse_swiglu_cpu_decode(x, idx, bundle, threads=threads, scheduler=scheduler)
            torch.testing.assert_close(y, one, atol=1e-6, rtol=1e-5)
            again = sparse_swiglu_cpu_decode(x, idx, bundle, threads=threads, scheduler=scheduler)
            assert torch.equal(y, again)


def test_only_kept_channels_are_read(gen):
    """Poisoning the bundles of channels no token kept changes nothing: they are never read."""
    x, bundle, idx = _problem(gen, 2, 16, torch.bfloat16)
    y = sparse_swiglu_cpu_decode(x, idx, bundle)
    dropped = ~indices_to_mask(idx, INTERMEDIATE).any(0)
    poisoned = bundle.clone()
    poisoned[dropped] = float("nan")
    assert torch.equal(sparse_swiglu_cpu_decode(x, idx, poisoned), y)


def test_refuses_what_it_cannot_take(gen):
    x, bundle, idx = _problem(gen, 2, 16, torch.float32)
    with pytest.raises(ConfigError, match="needs 1..16 CPU tokens"):
        sparse_swiglu_cpu_decode(x.repeat(9, 1), idx.repeat(9, 1), bundle)
    with pytest.raises(ConfigError, match="needs 1..16 CPU tokens"):
        sparse_swiglu_cpu_decode(x[:0], idx[:0], bundle)
    with pytest.raises(ConfigError, match="kept ids must lie in 0..319"):
        sparse_swiglu_cpu_decode(x, idx + 64, bundle)
    with pytest.raises(ConfigError, match=r"expected x \(T, d\)"):
        sparse_swiglu_cpu_decode(x[0], idx, bundle)
    with pytest.raises(ConfigError, match="no autograd"):
        sparse_swiglu_cpu_decode(x.requires_grad_(), idx, bundle)
    with pytest.raises(ConfigError, match="scheduler='omp'"):
        sparse_swiglu_cpu_decode(x.detach(), idx, bundle, scheduler="omp")
