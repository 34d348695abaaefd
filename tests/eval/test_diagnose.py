"""Layer diagnosis on a tiny sparse Llama: a planted predictor fault must be ranked first, by every measure."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_cwe import TINY, tiny_sparse  # tests/eval is on sys.path (rootdir-relative imports)

from codesign.errors import ConfigError
from codesign.eval.cwe import make_samples
from codesign.eval.diagnose import bucket_of, diagnose, plant_fault
from codesign.train.models import ByteTokenizer


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    model, tok = tiny_sparse(layers=4), ByteTokenizer()
    samples = make_samples(tok, TINY, 1024, 2, seed=3)
    return model, tok, samples


def test_planted_fault_is_ranked_first(setup):
    model, tok, samples = setup
    healthy = diagnose(model, tok, samples)
    for planted in (1, 2):
        faulty = copy.deepcopy(model)
        plant_fault(faulty, planted)
        d = diagnose(faulty, tok, samples)
        assert d["culprit"] == planted, d["ranking"]
        row = next(r for r in d["ranking"] if r["layer"] == planted)
        assert row["recall_rank"] == 1  # lowest recall of all layers
        # near g = 0, |silu(g)| ~ |g| / 2 is symmetric, so a random model's negated predictor still keeps many
        # large channels: its recall drops (lowest of all layers, above) but not to zero
        assert row["recall"] < healthy["recall"][planted][0]
        assert max(d["local_error"], key=lambda e: e[0]) is d["local_error"][planted]
    # the original model is untouched by diagnosing copies, and diagnose restores modes
    from codesign.sparse.upcycle import sparse_modules

    assert [m.mode for m in sparse_modules(model)] == ["bank_topk"] * 4


def test_diagnosis_shapes_and_sanity(setup):
    model, tok, samples = setup
    d = diagnose(model, tok, samples, layers=[0, 3])
    assert d["lengths"] == [1024] and [r["layer"] for r in d["ranking"][:2]] in ([0, 3], [3, 0])
    assert [r["ablated"] for r in d["ranking"]] == [True, True, False, False]
    assert d["ablation_gain"][1] == [None] and len(d["recall"]) == 4
    # the residual stream before any sparse layer is identical, so the first layer's divergence is its own jump
    assert d["divergence_jump"][0] == pytest.approx(d["divergence"][0])
    assert all(0.0 <= r[0] <= 1.0 for r in d["recall"])
    assert d["recall_by_position"]["edges"] == [0, 256, 512, 1024]


def test_screen_ablates_the_worst_local_layers(setup):
    model, tok, samples = setup
    faulty = copy.deepcopy(model)
    plant_fault(faulty, 2)
    d = diagnose(faulty, tok, samples, screen=1)
    assert d["ablated_layers"] == [2] and d["culprit"] == 2 and d["ranking"][1]["ablation_gain"] is None


def test_position_buckets_and_bad_input():
    assert bucket_of(np.array([0, 255, 256, 1023, 1024, 8191])).tolist() == [0, 0, 1, 2, 3, 5]
    from transformers import AutoModelForCausalLM, LlamaConfig

    dense = AutoModelForCausalLM.from_config(
        LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            vocab_size=257,
        )  # fmt: skip
    )
    with pytest.raises(ConfigError, match="needs a sparse model"):
        diagnose(dense, ByteTokenizer(), [])
    with pytest.raises(ConfigError, match="layers 0..3"):
        plant_fault(tiny_sparse(layers=4), 4)
