"""An upcycled model runs its sparse FFNs through the Triton kernels (here under the interpreter, as on CUDA)
and gives the same logits as the torch gather path, for one decode token and for a small prefill."""

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config

from codesign.errors import ConfigError
from codesign.sparse import SparsityConfig, upcycle
from codesign.sparse.upcycle import sparse_modules


def tiny_sparse_model(dtype, layers=2):
    config = Qwen2Config(
        hidden_size=64,
        intermediate_size=320,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=64,
    )
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    upcycle(model, SparsityConfig(bank_size=64, k=16, rank=8))  # I = 320: five banks, not a power of two
    return model


def logits_with(model, backend, ids):
    for m in sparse_modules(model):
        m.kernel_backend = backend
    with torch.no_grad():
        return model(ids).logits.float()


# bf16 runs one layer: a second layer's routing sees the first layer's bf16 rounding, which differs between
# two correct implementations and can flip near-tied channels.
@pytest.mark.parametrize("dtype, atol, layers", [(torch.float32, 1e-4, 2), (torch.bfloat16, 6e-2, 1)])
@pytest.mark.parametrize("tokens", [1, 3])
def test_model_logits_equal_through_kernels_and_torch(gen, dtype, atol, layers, tokens):
    model = tiny_sparse_model(dtype, layers)
    ids = torch.randint(0, 128, (1, tokens), generator=gen)
    ref = logits_with(model, "torch", ids)
    masks_ref = [m.last_mask.clone() for m in sparse_modules(model)]
    got = logits_with(model, "triton", ids)
    for m, mask in zip(sparse_modules(model), masks_ref, strict=True):
        assert torch.equal(m.last_mask, mask)  # same routing, so the same channels were computed
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, atol=atol, rtol=atol)


def test_forcing_kernels_on_an_unsupported_layer_is_a_clear_error():
    model = tiny_sparse_model(torch.float32)
    for m in sparse_modules(model):
        m.set_mode("global_topk")
    with pytest.raises(ConfigError, match="kernel_backend='triton' needs bank_topk mode"):
        logits_with(model, "triton", torch.zeros(1, 2, dtype=torch.long))
