"""Upcycling, save/load round trip, fits and baselines on tiny models; bad input gives one clear error."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from codesign.errors import CodesignError, ConfigError, ModelError, OutputExistsError
from codesign.eval.recall import track_recall
from codesign.sparse import (
    SparseSwiGLU,
    SparsityConfig,
    current_config,
    set_layer_k,
    set_mode,
    sparse_modules,
    upcycle,
)
from codesign.sparse.baselines import calibrate_thresholds, train_posthoc_predictors
from codesign.sparse.fit import collect_mlp_inputs, fit_predictors
from codesign.sparse.io import load_model, load_sparse, save_sparse


def test_upcycle_swaps_every_mlp(tiny_model, arch):
    model = tiny_model(arch, layers=3)
    old = [layer.mlp for layer in model.model.layers]
    replaced = upcycle(model, SparsityConfig(rank=8))
    assert list(replaced) == [f"model.layers.{i}.mlp" for i in range(3)]
    assert [replaced[n] for n in replaced] == old
    mods = sparse_modules(model)
    assert [m.layer_idx for m in mods] == [0, 1, 2]
    for m, o in zip(mods, old, strict=True):
        assert (
            isinstance(m, SparseSwiGLU) and m.gate_proj.weight is o.gate_proj.weight
        )  # same tensors, no copy
    keys = set(model.state_dict())
    assert (
        "model.layers.0.mlp.gate_proj.weight" in keys
        and "model.layers.0.mlp.predictor.in_proj.weight" in keys
    )


def test_svd_init_tracks_gate(tiny_model):
    """At full rank the SVD predictor reproduces the gate pre-activation exactly."""
    model = tiny_model("llama", hidden=64, intermediate=128)
    upcycle(model, SparsityConfig(rank=64, init="svd"))
    m = sparse_modules(model)[0]
    x = torch.randn(10, 64)
    torch.testing.assert_close(m.predictor(x), m.gate_proj(x), atol=1e-4, rtol=1e-4)


def _recall(model, ids):
    with track_recall(model) as tracker:
        with torch.no_grad():
            model(input_ids=ids)
    return tracker.summary()["recall_mean"]


def test_fit_and_posthoc_beat_random_predictor(tiny_model):
    """Measured, not assumed: data-fit and post-hoc predictors recall the oracle better than chance (k/B)."""
    model = tiny_model("qwen2", intermediate=256)
    upcycle(model, SparsityConfig(rank=16, init="random"))
    gen = torch.Generator().manual_seed(1)
    fit_ids = torch.randint(0, 128, (8, 64), generator=gen)
    ids = torch.randint(0, 128, (2, 64), generator=gen)
    random_recall = _recall(model, ids)
    inputs = collect_mlp_inputs(model, fit_ids)
    assert inputs[0].shape == (8 * 64, 64)
    explained = fit_predictors(model, inputs)
    assert all(0 < v <= 1 for v in explained.values())
    fit_recall = _recall(model, ids)
    train_posthoc_predictors(model, inputs, steps=60, batch_tokens=256)
    posthoc_recall = _recall(model, ids)
    assert random_recall < 0.3  # chance is k/B = 0.25
    assert fit_recall > 0.35 and posthoc_recall > 0.35


def test_threshold_calibration_hits_target_sparsity(tiny_model):
    model = tiny_model("llama", intermediate=320)
    upcycle(model, SparsityConfig(rank=8))
    ids = torch.randint(0, 128, (4, 32), generator=torch.Generator().manual_seed(2))
    calibrate_thresholds(model, collect_mlp_inputs(model, ids), sparsity=0.75)
    with track_recall(model) as tracker:
        with torch.no_grad():
            model(input_ids=ids)
    # The calibration inputs are the dense model's; in threshold mode each layer sees an upstream that is
    # already sparse, so the density is near but not exactly 25 %.
    assert abs(tracker.summary()["kept_density_mean"] - 0.25) < 0.05


def test_mode_helpers_and_current_config(tiny_model):
    model = tiny_model("qwen2")
    upcycle(model, SparsityConfig(rank=8))
    set_layer_k(model, 1, 4)
    set_mode(model, "global_topk")
    cfg = current_config(model)
    assert cfg.mode == "global_topk" and cfg.k_per_layer == {1: 4} and cfg.k == 16
    with pytest.raises(ModelError, match="no sparse layer 7"):
        set_layer_k(model, 7, 4)
    with pytest.raises(ConfigError, match="exceeds bank_size"):
        set_layer_k(model, 0, 65)
    with pytest.raises(ConfigError, match="mode='bogus'"):
        set_mode(model, "bogus")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_save_load_round_trip_exact(tiny_model, tmp_path, dtype):
    model = tiny_model("llama", dtype=dtype)
    upcycle(model, SparsityConfig(rank=8, k_per_layer={0: 8}, estimator="ste+gate"))
    set_mode(model, "bank_topk")
    for m in sparse_modules(model):
        m.threshold.fill_(0.125)
    out = save_sparse(model, tmp_path / "sparse")
    loaded, tokenizer = load_sparse(out)
    assert tokenizer is None
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    assert current_config(loaded) == current_config(model)
    ids = torch.randint(0, 128, (2, 9))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)
    assert load_model(out)[0].config.codesign_sparsity["k_per_layer"] == {"0": 8}
    assert not list(tmp_path.glob(".*"))  # no temp directory left behind


def test_save_refuses_existing_and_force_replaces(tiny_model, tmp_path):
    model = tiny_model("qwen2")
    upcycle(model, SparsityConfig(rank=8))
    out = tmp_path / "sparse"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        save_sparse(model, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    save_sparse(model, out, force=True)
    assert not (out / "keep.txt").exists() and (out / "config.json").is_file()


class NoSwiGLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)


@pytest.mark.parametrize(
    ("make", "error", "text"),
    [
        (lambda m: upcycle(NoSwiGLU(), SparsityConfig()), ModelError, "has no SwiGLU MLP"),
        (
            lambda m: upcycle(m, SparsityConfig(bank_size=48, k=16)),
            ModelError,
            "bank_size=48 does not divide",
        ),
        (lambda m: SparsityConfig(k=65), ConfigError, "k=65 exceeds bank_size=64"),
        (lambda m: SparsityConfig(k=0), ConfigError, "k must be a positive integer, got 0"),
        (lambda m: SparsityConfig(k=-2), ConfigError, "got -2"),
        (lambda m: load_sparse("/nonexistent/model"), ModelError, "does not exist"),
        (lambda m: save_sparse(NoSwiGLU(), "/tmp/never-written"), ModelError, "no SparseSwiGLU"),
    ],
)
def test_bad_input_one_clear_error(tiny_model, make, error, text):
    model = tiny_model("qwen2", intermediate=320)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(error, match=text) as info:
        make(model)
    assert "\n" not in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing half-swapped


def test_cli_bad_input_writes_nothing(tmp_path):
    from codesign.cli import cli

    runner = CliRunner()
    out = tmp_path / "out"
    cases = [
        (["--model", str(tmp_path / "missing"), "--out", str(out)], "does not exist"),
        (["--model", "x", "--k", "0", "--out", str(out)], "k must be a positive integer"),
        (["--model", "x", "--k", "65", "--out", str(out)], "exceeds bank_size"),
    ]
    for args, text in cases:
        res = runner.invoke(cli, ["upcycle", *args], standalone_mode=False)
        assert isinstance(res.exception, CodesignError) and text in str(res.exception), res.output
        assert not out.exists()
    res = runner.invoke(cli, ["eval", "ppl", "--model", str(tmp_path / "missing")], standalone_mode=False)
    assert isinstance(res.exception, ModelError) and "does not exist" in str(res.exception)


def test_cli_upcycle_tiny_checkpoint(tiny_model, tmp_path):
    from codesign.cli import cli

    dense = tmp_path / "dense"
    tiny_model("qwen2").save_pretrained(dense)
    out = tmp_path / "sparse"
    args = ["upcycle", "--model", str(dense), "--k", "8", "--rank", "8", "--init", "svd", "--out", str(out)]
    res = CliRunner().invoke(cli, args, standalone_mode=False)
    assert res.exception is None, res.output
    cfg = json.loads((out / "config.json").read_text())["codesign_sparsity"]
    assert (cfg["k"], cfg["rank"], cfg["init"]) == (8, 8, "svd")
    res = CliRunner().invoke(cli, args, standalone_mode=False)
    assert isinstance(res.exception, OutputExistsError)


def test_upcycle_keeps_train_eval_state(tiny_model):
    model = tiny_model("qwen2")
    upcycle(model, SparsityConfig(rank=8))
    assert not any(m.training for m in sparse_modules(model))
