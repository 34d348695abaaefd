"""Perplexity with routing capture: every evaluated window's routing lands in the trace store, unchanged."""

import numpy as np
import torch
from transformers import AutoModelForCausalLM, Qwen2Config

from codesign.eval.ppl import perplexity
from codesign.sparse import SparsityConfig, upcycle
from codesign.sparse.capture import RoutingCapture
from codesign.sparse.upcycle import sparse_modules
from codesign.trace.store import TraceReader


def test_perplexity_records_each_windows_routing(tmp_path):
    config = Qwen2Config(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=97,
        max_position_embeddings=64,
    )
    model = AutoModelForCausalLM.from_config(config).eval()
    upcycle(model, SparsityConfig(bank_size=64, k=16, rank=8))
    windows = torch.randint(0, 97, (5, 12))
    masks = []
    for m in sparse_modules(model):  # what the model itself decided, per layer
        m.register_forward_hook(lambda mod, i, o: masks.append(mod.last_mask.clone()))
    capture = RoutingCapture(tmp_path / "t.zarr", model_name="tiny", source="eval:test")
    capture.attach(model)
    plain = perplexity(model, windows, batch_size=2)
    masks.clear()
    traced = perplexity(
        model,
        windows,
        batch_size=2,
        before_forward=lambda b: capture.arm(b, phase="eval", split="validation"),
        after_forward=capture.disarm,
    )
    capture.close()
    assert traced.ppl == plain.ppl  # capture observes, never changes the computation
    r = TraceReader(tmp_path / "t.zarr")
    assert r.num_tokens == 60 and not r.read(0, 60).is_decode.any()
    # masks: per batch, one (b, L, I) tensor per layer -> (tokens, layers, I)
    per_batch = [torch.stack(masks[i : i + 2], dim=2).reshape(-1, 2, 128) for i in range(0, len(masks), 2)]
    np.testing.assert_array_equal(r.read(0, 60).masks(), torch.cat(per_batch).numpy())
    np.testing.assert_array_equal(r.read(0, 60).token_id, windows.reshape(-1).numpy())
