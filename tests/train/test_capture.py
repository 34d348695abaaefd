"""Trace capture: what lands in the store is exactly what the sparse layers kept, with its metadata."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codesign.errors import OutputExistsError, TraceError
from codesign.sparse import SparsityConfig, sparse_modules, upcycle
from codesign.sparse.capture import RoutingCapture
from codesign.trace.store import TraceReader
from codesign.train.models import build_tiny
from codesign.train.recipe import TinyModel


@pytest.fixture
def sparse_tiny():
    model = build_tiny(TinyModel(hidden=64, intermediate=192, layers=3, heads=4, kv_heads=2), seed=1)
    upcycle(model, SparsityConfig(bank_size=64, k=8, rank=16, init="random"))
    return model.eval()


def _masks_of(model, x):
    """Reference: each layer's mask from a plain forward, (B*T, L, I)."""
    with torch.no_grad():
        model(input_ids=x)
    return torch.stack([m.last_mask.reshape(-1, m.intermediate) for m in sparse_modules(model)], 1).numpy()


def test_recorded_masks_match_the_forward(sparse_tiny, tmp_path):
    gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    xs = [torch.randint(0, 257, (2, 24), generator=gen) for _ in range(3)]
    cap = RoutingCapture(tmp_path / "t.zarr", with_logits=True, model_name="tiny", source="test")
    cap.attach(sparse_tiny)
    expected = []
    for step, x in enumerate(xs):
        cap.arm(x, phase="eval", step=step, split="validation")
        with torch.no_grad():
            sparse_tiny(input_ids=x)
        cap.disarm()
        expected.append(_masks_of(sparse_tiny, x))
    with torch.no_grad():
        sparse_tiny(input_ids=xs[0])  # an unarmed forward records nothing
    cap.close()
    r = TraceReader(tmp_path / "t.zarr")
    assert r.num_tokens == 3 * 2 * 24 and r.has_logits
    assert (r.meta.layers, r.meta.intermediate, r.meta.bank_size, r.meta.k, r.meta.predictor_rank) == (
        3,
        192,
        64,
        8,
        16,
    )
    chunk = r.read(0, r.num_tokens)
    np.testing.assert_array_equal(chunk.masks(), np.concatenate(expected))
    assert chunk.masks().sum(-1).min() == chunk.masks().sum(-1).max() == 3 * 8  # k per bank, 3 banks
    np.testing.assert_array_equal(chunk.token_id, torch.cat(xs).reshape(-1).numpy())
    np.testing.assert_array_equal(chunk.seq_id, np.repeat(np.arange(6), 24))
    np.testing.assert_array_equal(chunk.position, np.tile(np.arange(24), 6))
    assert not chunk.is_decode.any()
    # Kept channels are the top-8 logits of every bank: the stored fp16 logits agree with the stored mask.
    lg = chunk.logits.reshape(-1, 3, 3, 64).astype(np.float32)  # (T, L, banks, B)
    kth = np.sort(lg, -1)[..., -8][..., None]
    assert (
        lg[chunk.masks().reshape(lg.shape)] >= kth.repeat(64, -1)[chunk.masks().reshape(lg.shape)] - 1e-2
    ).all()
    segs = r.meta.extra["segments"]
    assert [(s["step"], s["first_token"], s["num_tokens"], s["phase"]) for s in segs] == [
        (0, 0, 48, "eval"),
        (1, 48, 48, "eval"),
        (2, 96, 48, "eval"),
    ]


def test_decode_positions_and_sequence_ids(sparse_tiny, tmp_path):
    cap = RoutingCapture(tmp_path / "d.zarr", model_name="tiny", source="test")
    cap.attach(sparse_tiny)
    seq = cap.new_seq_ids(2)
    for pos in range(5):
        x = torch.randint(0, 257, (2, 1))
        cap.arm(x, phase="generate", is_decode=True, positions=np.full((2, 1), 10 + pos), seq_ids=seq)
        with torch.no_grad():
            sparse_tiny(input_ids=x)
        cap.disarm()
    cap.close()
    c = TraceReader(tmp_path / "d.zarr").read(0, 10)
    assert c.is_decode.all()
    np.testing.assert_array_equal(c.seq_id, np.tile([0, 1], 5))
    np.testing.assert_array_equal(c.position, np.repeat(np.arange(10, 15), 2))


def test_capture_refuses_existing_path_and_dense_models(sparse_tiny, tmp_path):
    (tmp_path / "x.zarr").mkdir()
    with pytest.raises(OutputExistsError):
        RoutingCapture(tmp_path / "x.zarr", model_name="tiny").attach(sparse_tiny)
    dense = build_tiny(TinyModel(), seed=0)
    with pytest.raises(TraceError, match="sparse model"):
        RoutingCapture(tmp_path / "y.zarr", model_name="tiny").attach(dense)


def test_train_with_trace_out_records_sampled_steps_and_eval(tiny_recipe_dict, tmp_path):
    from codesign.train.capture import capture_for_recipe
    from codesign.train.recipe import recipe_from_dict
    from codesign.train.trainer import Trainer

    r = recipe_from_dict(tiny_recipe_dict)
    with capture_for_recipe(tmp_path / "tr.zarr", r) as cap:
        Trainer(r, tmp_path / "run", capture=cap).run()
    meta = TraceReader(tmp_path / "tr.zarr").meta
    segs = meta.extra["segments"]
    train_steps = [s["step"] for s in segs if s["phase"] == "train"]
    assert train_steps == [
        4,
        6,
    ]  # sparse stage = global steps 4..7, trace_every 2; dense steps never recorded
    evals = [s for s in segs if s["phase"] == "eval"]
    assert evals and all(s["split"] == "validation" and s["step"] == 8 for s in evals)
    assert meta.model_name == "tiny-qwen2" and meta.source == "train:tiny" and meta.k == 16
