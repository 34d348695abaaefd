"""Shapes the kernels cannot take are routed to the torch path ("auto") or refused in one line ("triton"), by
one rule (codesign.kernels.dispatch.choose) shared by the launchers and SparseSwiGLU; zero tokens work."""

import pytest
import torch

from codesign.errors import ConfigError
from codesign.kernels.bank_topk import bank_topk, predictor_bank_topk
from codesign.kernels.pack import bundle_views, pack_bundles
from codesign.kernels.routing import bank_topk_routing_ref, routing_from_indices
from codesign.kernels.sparse_swiglu import sparse_swiglu, sparse_swiglu_dense_ref, sparse_swiglu_indices
from codesign.sparse import SparseSwiGLU, SparsityConfig
from codesign.sparse.topk import bank_topk_indices

HIDDEN = 40


def _weights(gen, intermediate, dtype=torch.float32):
    gate = torch.randn(intermediate, HIDDEN, generator=gen) / HIDDEN**0.5
    up = torch.randn(intermediate, HIDDEN, generator=gen) / HIDDEN**0.5
    down = torch.randn(HIDDEN, intermediate, generator=gen) / intermediate**0.5
    return pack_bundles(gate, up, down).to(dtype)


@pytest.mark.parametrize("bank", [48, 8])  # not a power of two; below 16
def test_unsupported_bank_runs_torch_forward_and_backward_or_is_refused(gen, bank):
    intermediate, k, tokens = bank * 4, bank // 4, 5
    bundle = _weights(gen, intermediate)
    logits = torch.randn(tokens, intermediate, generator=gen)
    routing = bank_topk(logits, bank, k)  # auto: the torch path selects
    want = bank_topk_routing_ref(logits, bank, k)
    assert torch.equal(routing.idx, want.idx) and torch.equal(routing.bits, want.bits)
    x = torch.randn(tokens, HIDDEN, generator=gen, requires_grad=True)
    weights = [w.clone().requires_grad_() for w in bundle_views(bundle)]
    y = sparse_swiglu(x, *weights, routing)  # auto: torch path, forward and backward
    y.square().sum().backward()
    ref_in = [t.detach().double().requires_grad_() for t in (x, *weights)]
    ref = sparse_swiglu_dense_ref(*ref_in, routing.mask())
    ref.square().sum().backward()
    torch.testing.assert_close(y.double(), ref, atol=1e-5, rtol=1e-4)
    for ours, theirs in zip((x, *weights), ref_in, strict=True):
        torch.testing.assert_close(ours.grad.double(), theirs.grad, atol=1e-5, rtol=1e-4)
    # asked for Triton: one line, whatever the op
    with pytest.raises(ConfigError, match=f"power-of-two bank size >= 16 \\(got {bank}\\)"):
        bank_topk(logits, bank, k, backend="triton")
    with pytest.raises(
        ConfigError, match=f"sparse_swiglu: backend='triton' needs a power-of-two.*got {bank}"
    ):
        sparse_swiglu(x, *weights, routing, backend="triton")
    with pytest.raises(ConfigError, match="predictor_bank_topk: backend='triton'"):
        predictor_bank_topk(
            torch.randn(tokens, 8), torch.randn(intermediate, 8), None, bank, k, backend="triton"
        )


def test_module_follows_the_same_rule(gen):
    torch.manual_seed(0)
    m = SparseSwiGLU(HIDDEN, 192, SparsityConfig(bank_size=48, k=12, rank=4), layer_idx=3).eval()
    x = torch.randn(2, HIDDEN, generator=gen)
    with torch.no_grad():
        m.kernel_backend = "torch"
        want = m(x)
        m.kernel_backend = "auto"  # CPU: the numba kernel takes any bank size; equal to the torch path
        torch.testing.assert_close(m(x), want, atol=1e-5, rtol=1e-5)
        m.kernel_backend = "triton"
        with pytest.raises(ConfigError, match="layer 3: kernel_backend='triton' needs a power-of-two bank"):
            m(x)


@pytest.mark.parametrize("tile", [4, 8, 24, 128])
def test_tile_tokens_must_compile_on_sm90(gen, tile):
    logits = torch.randn(3, 128, generator=gen)
    message = f"tile_tokens={tile} is not one of 16, 64"
    with pytest.raises(ConfigError, match=message):
        bank_topk(logits, 64, 16, tile_tokens=tile)
    with pytest.raises(ConfigError, match=message):
        routing_from_indices(bank_topk_indices(logits, 64, 16), 128, 64, tile_tokens=tile)
    assert bank_topk(logits, 64, 16, tile_tokens=64).tile_tokens == 64


def test_float64_logits_select_on_float64(gen):
    """Values 1e-12 apart are equal in fp32 (ties to the lower index) but ordered in fp64."""
    logits = torch.zeros(2, 64, dtype=torch.float64)
    logits[:, 40:] = 1.0 + 1e-12 * torch.arange(24, dtype=torch.float64)  # 40..63 increasing by 1e-12
    got = bank_topk(logits, 64, 4)  # auto: the torch path on the input's dtype
    assert got.idx[0].tolist() == [60, 61, 62, 63]  # an fp32 cast would give 40..43
    assert torch.equal(got.idx, bank_topk_routing_ref(logits, 64, 4).idx)
    with pytest.raises(ConfigError, match="bank_topk: backend='triton' takes fp32, bf16 or fp16 data"):
        bank_topk(logits, 64, 4, backend="triton")


def test_zero_tokens_everywhere(gen):
    bundle = _weights(gen, 128)
    empty_idx = torch.zeros(0, 32, dtype=torch.int64)
    routing = routing_from_indices(empty_idx, 128, 64)
    assert routing.tokens == 0 and routing.mask().shape == (0, 128)
    assert bank_topk(torch.zeros(0, 128), 64, 16).idx.shape == (0, 32)
    x = torch.zeros(0, HIDDEN)
    for backend in ("auto", "triton", "torch"):
        assert sparse_swiglu_indices(x, empty_idx, bundle, 64, backend=backend).shape == (0, HIDDEN)
        assert sparse_swiglu(x, *bundle_views(bundle), routing, backend=backend).shape == (0, HIDDEN)
    m = SparseSwiGLU(HIDDEN, 128, SparsityConfig(bank_size=64, k=16, rank=4), layer_idx=0).eval()
    with torch.no_grad():
        assert m(torch.zeros(0, HIDDEN)).shape == (0, HIDDEN)
        assert m(torch.zeros(2, 0, HIDDEN)).shape == (2, 0, HIDDEN)


def test_wrong_ranks_name_the_expected_shapes(gen):
    bundle = _weights(gen, 128)
    with pytest.raises(
        ConfigError, match=r"bank_topk: logits must be \(tokens, intermediate\), got shape \(2, 3, 128\)"
    ):
        bank_topk(torch.zeros(2, 3, 128), 64, 16)
    routing = bank_topk(torch.zeros(1, 128), 64, 16)
    with pytest.raises(ConfigError, match=r"sparse_swiglu: x must be \(tokens, hidden\), got shape \(40,\)"):
        sparse_swiglu(torch.zeros(HIDDEN), *bundle_views(bundle), routing)
    with pytest.raises(ConfigError, match=r"routing_from_indices: kept ids must be \(tokens, banks \* k\)"):
        routing_from_indices(torch.zeros(32, dtype=torch.int64), 128, 64)
    with pytest.raises(ConfigError, match=r"predictor_bank_topk: h must be \(tokens, rank\)"):
        predictor_bank_topk(torch.zeros(8), torch.zeros(128, 8), None, 64, 16)
