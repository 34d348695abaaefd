import pytest
import torch
from kernels_helpers import TOLERANCES, report_mismatch

from codesign.errors import ConfigError
from codesign.kernels.bank_topk import bank_topk
from codesign.kernels.dispatch import resolve
from codesign.kernels.pack import bundle_views, pack_bundles
from codesign.kernels.sparse_swiglu import (
    Blocks,
    sparse_swiglu,
    sparse_swiglu_dense_ref,
    sparse_swiglu_indices,
    sparse_swiglu_ref,
)
from codesign.sparse.gather import sparse_swiglu_gather

HIDDEN, INTERMEDIATE, BANK = 100, 320, 64  # d not a multiple of any block; I = 320 is 5 banks of 64
# small blocks, 3 bank splits, 2 decode d-chunks: every loop (chunks per bank, d-blocks, splits) runs more than once
SMALL = Blocks(block_k=16, block_d=32, splits=3, d_chunk=64)


def _problem(gen, tokens, k, dtype, hidden=HIDDEN, intermediate=INTERMEDIATE):
    """x (T, d), bundles (I, 3, d) and a routing, scaled so that outputs are of order 1."""
    x = torch.randn(tokens, hidden, generator=gen).to(dtype)
    gate = torch.randn(intermediate, hidden, generator=gen) / hidden**0.5
    up = torch.randn(intermediate, hidden, generator=gen) / hidden**0.5
    down = torch.randn(hidden, intermediate, generator=gen) * (2 / (intermediate * k / BANK)) ** 0.5
    bundles = pack_bundles(gate, up, down).to(dtype)
    routing = bank_topk(torch.randn(tokens, intermediate, generator=gen), BANK, k, backend="triton")
    return x, bundles, routing


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("k", [16, 64, 1], ids=["k16", "kB", "k1"])
@pytest.mark.parametrize("tokens", [1, 3, 9, 17])  # decode: elementwise (1, 3) and tl.dot (9); 17: prefill
def test_forward_equals_masked_dense(gen, poison, tokens, k, dtype):
    x, bundles, routing = _problem(gen, tokens, k, dtype)
    y = sparse_swiglu(x, *bundle_views(bundles), routing, backend="triton", blocks=SMALL)
    ref = sparse_swiglu_dense_ref(x.double(), *(w.double() for w in bundle_views(bundles)), routing.mask())
    atol, rtol = TOLERANCES[dtype]
    assert torch.isfinite(y).all(), report_mismatch(y, ref)
    torch.testing.assert_close(
        y.double(), ref, atol=atol, rtol=rtol, msg=lambda m: m + "\n" + report_mismatch(y, ref)
    )
    # about as accurate as torch's own computation in this dtype; 3x because the interpreter's fp32 -> bf16
    # cast truncates (up to 1 ulp) where torch rounds (half an ulp), which dominates with few kept channels
    torch_err = _rel(sparse_swiglu_ref(x, *bundle_views(bundles), routing.idx), ref)
    assert _rel(y, ref) <= 3 * torch_err + 1e-6


@pytest.mark.parametrize("tokens", [2, 16])
def test_decode_path_is_deterministic_and_scaled(gen, poison, tokens):
    """Decode path (one tile): the same bits on a second run (no atomics), and the scale multiplies h."""
    x, bundles, routing = _problem(gen, tokens, 16, torch.float32)
    scale = torch.rand(tokens, INTERMEDIATE, generator=gen) + 0.5
    y1 = sparse_swiglu(x, *bundle_views(bundles), routing, scale=scale, backend="triton", blocks=SMALL)
    y2 = sparse_swiglu(x, *bundle_views(bundles), routing, scale=scale, backend="triton", blocks=SMALL)
    assert torch.equal(y1, y2)
    ref = sparse_swiglu_dense_ref(
        x.double(), *(w.double() for w in bundle_views(bundles)), routing.mask(), scale=scale.double()
    )
    torch.testing.assert_close(y1.double(), ref, atol=1e-5, rtol=1e-4)


def test_k_equals_bank_is_the_dense_mlp(gen):
    x, bundles, routing = _problem(gen, 5, BANK, torch.float32)
    gate, up, down_t = bundle_views(bundles)
    dense = (
        torch.nn.functional.silu(x.double() @ gate.double().t()) * (x.double() @ up.double().t())
    ) @ down_t.double()
    y = sparse_swiglu(x, gate, up, down_t, routing, backend="triton")
    torch.testing.assert_close(y.double(), dense, atol=1e-5, rtol=1e-4)


def test_prefill_tiles_and_default_blocks(gen, poison):
    """70 tokens = two 64-token tiles, default blocks; HF (strided down) weights give the same result."""
    x, bundles, routing = _problem(gen, 70, 16, torch.float32)
    assert routing.tile_tokens == 64 and routing.tiles == 2
    y = sparse_swiglu(x, *bundle_views(bundles), routing, backend="triton")
    gate, up, down_t = bundle_views(bundles)
    hf_down = down_t.t().contiguous()  # (d, I) as stored by Hugging Face
    y_hf = sparse_swiglu(x, gate.contiguous(), up.contiguous(), hf_down.t(), routing, backend="triton")
    ref = sparse_swiglu_dense_ref(x.double(), gate.double(), up.double(), down_t.double(), routing.mask())
    torch.testing.assert_close(y.double(), ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(y_hf, y, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("tokens", [1, 17, 70])
def test_gradients_match_fp64_reference(gen, poison, tokens):
    """x, gate/up/down rows and the predictor scale, under one upstream gradient."""
    x, bundles, routing = _problem(gen, tokens, 16, torch.float32)
    scale = torch.rand(tokens, INTERMEDIATE, generator=gen) + 0.5
    dy = torch.randn(tokens, HIDDEN, generator=gen)
    weights = [w.clone() for w in bundle_views(bundles)]
    ours = [t.clone().requires_grad_() for t in (x, *weights, scale)]
    y = sparse_swiglu(*ours[:4], routing, scale=ours[4], backend="triton", blocks=SMALL)
    y.backward(dy)
    ref = [t.double().requires_grad_() for t in (x, *weights, scale)]
    y_ref = sparse_swiglu_dense_ref(*ref[:4], routing.mask(), scale=ref[4])
    y_ref.backward(dy.double())
    torch.testing.assert_close(y.double(), y_ref, atol=1e-5, rtol=1e-4)
    for name, a, b in zip(("x", "gate", "up", "down", "scale"), ours, ref, strict=True):
        assert torch.isfinite(a.grad).all(), f"d{name}: " + report_mismatch(a.grad, b.grad)
        torch.testing.assert_close(
            a.grad.double(), b.grad, atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"d{n}: {m}"
        )
    # rows no token kept get exactly zero gradient; dropped channels give the scale no gradient
    unused = ~routing.mask().any(0)
    assert (ours[1].grad[unused] == 0).all() and (ours[4].grad[~routing.mask()] == 0).all()


def test_bf16_gradients(gen):
    x, bundles, routing = _problem(gen, 3, 16, torch.bfloat16)
    dy = torch.randn(3, HIDDEN, generator=gen).bfloat16()
    ours = [t.clone().requires_grad_() for t in (x, *bundle_views(bundles))]
    sparse_swiglu(*ours, routing, backend="triton").backward(dy)
    ref = [t.double().requires_grad_() for t in (x, *bundle_views(bundles))]
    sparse_swiglu_dense_ref(*ref, routing.mask()).backward(dy.double())
    for a, b in zip(ours, ref, strict=True):
        assert _rel(a.grad, b.grad) < 2e-2


def test_torch_backend_is_the_reference(gen):
    x, bundles, routing = _problem(gen, 3, 16, torch.float32)
    y_torch = sparse_swiglu(x, *bundle_views(bundles), routing, backend="torch")
    y_triton = sparse_swiglu(x, *bundle_views(bundles), routing, backend="triton")
    torch.testing.assert_close(y_torch, y_triton, atol=1e-5, rtol=1e-4)


def test_mismatched_inputs_raise_config_error(gen):
    x, bundles, routing = _problem(gen, 3, 16, torch.float32)
    gate, up, down_t = bundle_views(bundles)
    with pytest.raises(ConfigError, match="gate weight has shape"):
        sparse_swiglu(x, gate[:10], up, down_t, routing)
    with pytest.raises(ConfigError, match="routing holds 3 tokens, x has 2"):
        sparse_swiglu(x[:2], gate, up, down_t, routing)
    with pytest.raises(ConfigError, match="is torch.bfloat16 but x is torch.float32"):
        sparse_swiglu(x, gate.bfloat16(), up, down_t, routing)


def test_drop_in_for_the_model_gather(gen):
    """Same call shape and result as codesign.sparse.gather.sparse_swiglu_gather (the model's CPU path)."""
    x, bundles, routing = _problem(gen, 3, 16, torch.float32)
    gate, up, down_t = bundle_views(bundles)
    want = sparse_swiglu_gather(x, routing.idx, gate, up, down_t.t())
    got = sparse_swiglu_indices(x, routing.idx, bundles, BANK, backend="triton")
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="backend='cuda!'"):
        resolve(torch.zeros(1), "cuda!")
