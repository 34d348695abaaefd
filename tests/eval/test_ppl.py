"""Perplexity and recall-vs-oracle on tiny random models (the real checkpoint is in test_smollm2.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from codesign.errors import ConfigError
from codesign.eval.ppl import perplexity
from codesign.eval.recall import track_recall
from codesign.sparse import SparsityConfig, set_mode, upcycle


def tiny(intermediate=320):
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=intermediate,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def test_perplexity_matches_hf_loss():
    model = tiny()
    windows = np.random.default_rng().integers(0, 128, size=(5, 17))
    res = perplexity(model, windows, batch_size=2)
    with torch.no_grad():
        ids = torch.as_tensor(windows)
        losses = [float(model(input_ids=ids[i : i + 1], labels=ids[i : i + 1]).loss) for i in range(5)]
    assert res.tokens_evaluated == 5 * 16 and res.windows == 5 and res.context_len == 17
    assert math.isclose(res.ppl, math.exp(sum(losses) / 5), rel_tol=1e-5)


def test_perplexity_rejects_bad_windows():
    with pytest.raises(ConfigError, match=r"shape \(n, L >= 2\)"):
        perplexity(tiny(), np.zeros((3, 1), dtype=np.int64))


@pytest.mark.parametrize(("mode", "recall", "density"), [("oracle", 1.0, 0.25), ("dense", 1.0, 1.0)])
def test_recall_bounds(mode, recall, density):
    model = tiny()
    upcycle(model, SparsityConfig(rank=8))
    set_mode(model, mode)
    with track_recall(model) as tracker:
        perplexity(model, np.random.default_rng().integers(0, 128, size=(2, 12)))
    s = tracker.summary()
    assert len(s["recall_per_layer"]) == 2
    assert s["recall_min"] == pytest.approx(recall) and s["kept_density_mean"] == pytest.approx(density)


def test_recall_counts_hits():
    """Recall is |kept ∩ oracle| / |oracle|: checked against a direct computation on one layer."""
    model = tiny()
    upcycle(model, SparsityConfig(rank=8, init="random"))
    mlp = model.model.layers[0].mlp
    x = torch.randn(1, 6, 64)
    with track_recall(model) as tracker:
        with torch.no_grad():
            mlp(x)
    from codesign.sparse.topk import indices_to_mask

    oracle = indices_to_mask(mlp.oracle_indices(x.reshape(6, 64)), 320)
    expect = float((oracle & mlp.last_mask.reshape(6, 320)).sum() / oracle.sum())
    assert tracker.summary()["recall_per_layer"] == [pytest.approx(expect)]
    assert 0.0 < expect < 1.0
