"""SparseSwiGLU mechanics: k = B is dense, masks hold k per bank, sparse == masked dense, ties, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from codesign.errors import ConfigError
from codesign.sparse import SparseSwiGLU, SparsityConfig, set_mode, sparse_modules, upcycle
from codesign.sparse.gather import sparse_swiglu_gather
from codesign.sparse.topk import bank_topk_indices, global_topk_indices, indices_to_mask

# One tolerance table for every numeric comparison (dtype -> atol, rtol), relative to output scale ~1.
TOL = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (2e-2, 2e-2)}
SHAPES = [
    (1, 1),
    (1, 7),
    (3, 5),
    (2, 1),
    (6,),
]  # leading dims before the hidden dim: decode, prefill, batch, 2-D


def make_module(dtype=torch.float32, hidden=48, intermediate=320, k=16, rank=8, seed=None, **cfg):
    torch.manual_seed(seed if seed is not None else torch.randint(0, 2**31, ()).item())
    m = (
        SparseSwiGLU(hidden, intermediate, SparsityConfig(k=k, rank=rank, **cfg), layer_idx=0)
        .to(dtype)
        .eval()
    )
    return m


def masked_dense(m: SparseSwiGLU, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The reference: dense SwiGLU in fp32 with the dropped channels zeroed."""
    xf = x.float()
    h = F.silu(xf @ m.gate_proj.weight.float().t()) * (xf @ m.up_proj.weight.float().t())
    return (h * mask) @ m.down_proj.weight.float().t()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("lead", SHAPES)
def test_sparse_equals_masked_dense(dtype, lead):
    m = make_module(dtype)
    x = torch.randn(*lead, m.hidden).to(dtype)
    out = m(x)
    assert out.shape == x.shape and out.dtype == dtype
    mask = m.last_mask
    assert mask.shape == (*lead, m.intermediate) and mask.dtype == torch.bool
    ref = masked_dense(m, x, mask)
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(out.float(), ref, atol=atol * ref.abs().max().item(), rtol=rtol)
    # The mask is the bank top-k of the predictor logits it exposes.
    expect = indices_to_mask(bank_topk_indices(m.last_logits.float(), 64, 16), m.intermediate)
    assert torch.equal(mask, expect)


@pytest.mark.parametrize("mode", ["bank_topk", "global_topk", "oracle"])
def test_mask_counts(mode):
    m = make_module()
    m.set_mode(mode)
    x = torch.randn(4, 9, m.hidden)
    m(x)
    mask = m.last_mask
    if mode == "global_topk":
        assert (mask.sum(-1) == m.intermediate // 64 * 16).all()
        assert not (mask.reshape(4, 9, 5, 64).sum(-1) == 16).all()  # no bank balance at random
    else:
        assert (mask.reshape(4, 9, 5, 64).sum(-1) == 16).all()


@pytest.mark.parametrize("training", [False, True])
def test_k_equals_bank_is_dense(tiny_model, arch, training):
    model = tiny_model(arch)
    ids = torch.randint(0, 128, (2, 11))
    ref = model(input_ids=ids).logits
    upcycle(model, SparsityConfig(bank_size=64, k=64, rank=8))
    model.train(training)
    out = model(input_ids=ids).logits
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert all(m.last_mask.all() for m in sparse_modules(model))


def test_dense_mode_and_oracle_logits():
    m = make_module()
    x = torch.randn(3, m.hidden)
    m.set_mode("dense")
    out = m(x)
    torch.testing.assert_close(out, masked_dense(m, x, torch.ones(m.intermediate)), atol=1e-5, rtol=1e-5)
    assert m.last_mask.all() and m.last_logits is None
    m.set_mode("oracle")
    m(x)
    assert m.last_logits is None
    xf = x.float()
    h = F.silu(xf @ m.gate_proj.weight.t()) * (xf @ m.up_proj.weight.t())
    assert torch.equal(m.last_mask, indices_to_mask(bank_topk_indices(h.abs(), 64, 16), m.intermediate))


def test_gather_paths_agree():
    """The one-token bundle path and the multi-token union path give the same rows."""
    m = make_module()
    x = torch.randn(5, m.hidden)
    idx = bank_topk_indices(torch.randn(5, m.intermediate), 64, 16)
    w = (m.gate_proj.weight, m.up_proj.weight, m.down_proj.weight)
    batched = sparse_swiglu_gather(x, idx, *w)
    single = torch.cat([sparse_swiglu_gather(x[i : i + 1], idx[i : i + 1], *w) for i in range(5)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        batched, masked_dense(m, x, indices_to_mask(idx, m.intermediate)), atol=1e-5, rtol=1e-5
    )


def test_decode_bundle_follows_weight_updates():
    m = make_module()
    x = torch.randn(1, m.hidden)
    m(x)
    with torch.no_grad():
        m.up_proj.weight.mul_(2.0)
    out = m(x)
    torch.testing.assert_close(out, masked_dense(m, x, m.last_mask), atol=1e-5, rtol=1e-5)


def test_ties_break_to_lower_index():
    scores = torch.zeros(2, 128)
    scores[0, 70] = 1.0  # bank 1 has one clear winner, then ties
    idx = bank_topk_indices(scores, 64, 4)
    assert idx[0].tolist() == [0, 1, 2, 3, 64, 65, 66, 70]
    assert idx[1].tolist() == [0, 1, 2, 3, 64, 65, 66, 67]
    assert global_topk_indices(scores, 3)[0].tolist() == [0, 1, 70]
    assert torch.equal(bank_topk_indices(scores, 64, 4), idx)


@pytest.mark.parametrize("estimator", ["ste", "gate", "ste+gate"])
def test_gradients_reach_predictor(estimator):
    m = make_module(estimator=estimator).train()
    x = torch.randn(4, 6, m.hidden)
    m(x).pow(2).sum().backward()
    for p in m.predictor.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert m.aux_loss is None


def test_ste_reaches_dropped_channels_gate_only_kept():
    """ste gives dropped channels a gradient (it needs their dense value); gate only touches kept ones."""
    grads = {}
    for est in ("ste", "gate"):
        m = make_module(estimator=est, seed=3, predictor_bias=True).train()
        x = torch.randn(8, m.hidden, generator=torch.Generator().manual_seed(3))
        m(x).pow(2).sum().backward()
        grads[est] = m.predictor.out_proj.bias.grad
        dropped_everywhere = ~m.last_mask.any(0)
    assert grads["gate"][dropped_everywhere].abs().max() == 0
    assert grads["ste"][dropped_everywhere].abs().max() > 0


def test_aux_loss_toward_oracle():
    m = make_module(aux_loss=True).train()
    x = torch.randn(16, m.hidden)
    m(x)
    assert m.aux_loss is not None and m.aux_loss.ndim == 0
    m.aux_loss.backward()
    assert m.predictor.in_proj.weight.grad.abs().sum() > 0
    m.eval()
    m(x)
    assert m.aux_loss is None


def test_per_layer_k_and_set_mode(tiny_model, arch):
    model = tiny_model(arch)
    upcycle(model, SparsityConfig(k=16, rank=8, k_per_layer={1: 8}))
    ids = torch.randint(0, 128, (1, 5))
    model(input_ids=ids)
    mods = sparse_modules(model)
    assert [m.k for m in mods] == [16, 8]
    assert (mods[1].last_mask.reshape(1, 5, -1, 64).sum(-1) == 8).all()
    set_mode(model, "dense")
    model(input_ids=ids)
    assert all(m.last_mask.all() for m in mods)


def test_decode_split_over_threads_matches_reference():
    """The one-token path splits kept channels over worker threads; the sum must equal the reference."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        m = make_module(hidden=32, intermediate=1024, k=16)  # 256 kept channels: 2 workers of 2 chunks
        m.kernel_backend = "torch"  # the torch gather path (auto takes the fused kernel on CPU)
        x = torch.randn(1, m.hidden)
        with torch.no_grad():
            out = m(x)
        torch.testing.assert_close(out, masked_dense(m, x, m.last_mask), atol=1e-5, rtol=1e-5)
        out = m(x.requires_grad_())  # grad mode reaches the workers: the output carries a graph to x
        assert out.requires_grad
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_eval_decode_on_cpu_takes_the_fused_kernel(dtype):
    """auto = the numba kernel for 1..16 CPU tokens without autograd, equal to the torch path (its reference);
    17 tokens, or autograd, take the torch path; forcing numba where it cannot run is a one-line error."""
    m = make_module(dtype, seed=5)
    x = torch.randn(4, m.hidden, generator=torch.Generator().manual_seed(5)).to(dtype)
    with torch.no_grad():
        assert m._compute_path(x) == "numba" and m._compute_path(x.repeat(5, 1)) == "torch"
        m.kernel_backend = "torch"
        want = m(x)
        for backend in ("auto", "numba"):
            m.kernel_backend = backend
            got = m(x)
            atol, rtol = TOL[dtype]
            torch.testing.assert_close(
                got.float(), want.float(), atol=atol * want.abs().max().item(), rtol=rtol
            )
        with pytest.raises(ConfigError, match="kernel_backend='numba' takes 1..16 CPU tokens"):
            m(x.repeat(5, 1))
    m.kernel_backend = "auto"
    assert m._compute_path(x.requires_grad_()) == "torch"  # autograd needs the torch path
