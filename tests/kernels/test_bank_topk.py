import pytest
import torch

from codesign.errors import ConfigError
from codesign.kernels.bank_topk import bank_topk, predictor_bank_topk
from codesign.kernels.routing import (
    bank_topk_routing_ref,
    pack_mask_bits,
    routing_from_indices,
    unpack_mask_bits,
)
from codesign.sparse.topk import bank_topk_indices

# (tokens, intermediate, bank_size, k): one row, odd token counts, I = 320, k = B, k = 1, another bank size
SHAPES = [(1, 320, 64, 16), (3, 320, 64, 64), (17, 320, 64, 1), (5, 256, 32, 8), (70, 256, 128, 16)]


def _assert_same_routing(got, want):
    assert torch.equal(got.idx, want.idx), (got.idx != want.idx).nonzero()[:5]
    assert torch.equal(got.bits, want.bits)
    assert torch.equal(got.union_counts, want.union_counts)
    valid = torch.arange(got.bank_size) < want.union_counts.unsqueeze(-1)  # (tiles, nb, B)
    assert torch.equal(got.union_cols[valid], want.union_cols[valid])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}-I{}-B{}-k{}".format(*s))
def test_masks_equal_torch_reference_with_ties(gen, poison, shape, dtype):
    tokens, intermediate, bank_size, k = shape
    logits = torch.randn(tokens, intermediate, generator=gen)
    logits = (logits * 4).round() / 4  # coarse values: many exact ties inside a bank
    logits[:, 1] = -0.0  # -0.0 and +0.0 are equal, ties go to the lower index
    logits[:, 2] = 0.0
    logits = logits.to(dtype)
    got = bank_topk(logits, bank_size, k, backend="triton")
    _assert_same_routing(got, bank_topk_routing_ref(logits, bank_size, k))
    assert (got.mask().view(tokens, -1, bank_size).sum(-1) == k).all()


def test_matches_the_model_selection(gen):
    logits = (torch.randn(9, 320, generator=gen) * 2).round()
    got = bank_topk(logits, 64, 16, backend="triton")
    want = bank_topk_indices(logits, 64, 16)
    assert torch.equal(got.idx, want)
    _assert_same_routing(routing_from_indices(want, 320, 64), got)


def test_mask_bits_are_little_endian_per_byte():
    mask = torch.zeros(1, 20, dtype=torch.bool)
    mask[0, [0, 3, 8, 19]] = True  # byte 0: bits 0, 3 -> 9; byte 1: bit 0 -> 1; byte 2: bit 3 -> 8
    bits = pack_mask_bits(mask)
    assert bits.tolist() == [[9, 1, 8]]
    assert torch.equal(unpack_mask_bits(bits, 20), mask)


@pytest.mark.parametrize("tokens", [1, 3, 9, 17])  # decode blocks: elementwise (1, 3), tl.dot (9); two tiles
def test_fused_predictor_equals_unfused(gen, poison, tokens):
    rank, intermediate = 24, 320
    h = torch.randn(tokens, rank, generator=gen)
    w = torch.randn(intermediate, rank, generator=gen)
    b = torch.randn(intermediate, generator=gen)
    got = predictor_bank_topk(h, w, b, 64, 16, backend="triton")
    logits = h.double() @ w.double().t() + b.double()
    want = bank_topk_routing_ref(logits, 64, 16)
    differ = got.mask() != want.mask()
    if differ.any():  # fp32 accumulation order may only flip channels tied with the bank's boundary
        kth = logits.view(tokens, -1, 64).sort(-1, descending=True).values[..., 15:17]  # k-th, (k+1)-th
        gap = (kth[..., 0] - kth[..., 1]).repeat_interleave(64, dim=1)
        assert (gap[differ] < 1e-4).all(), "fused top-k differs away from a near-tie"
    else:
        _assert_same_routing(got, want)


def test_bad_banks_raise_config_error():
    with pytest.raises(ConfigError, match="divide intermediate=300"):
        bank_topk(torch.zeros(1, 300), 64, 16)
    with pytest.raises(ConfigError, match="k=65"):
        bank_topk(torch.zeros(1, 320), 64, 65)
