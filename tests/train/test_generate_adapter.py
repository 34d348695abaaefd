"""`eval generate` decode-step routing capture, and adapters round-tripping a predictor-only run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codesign.errors import ModelError
from codesign.eval.generate import greedy_generate
from codesign.sparse import SparsityConfig, sparse_modules, upcycle
from codesign.sparse.capture import RoutingCapture
from codesign.trace.store import TraceReader
from codesign.train.models import build_tiny
from codesign.train.recipe import TinyModel, recipe_from_dict
from codesign.train.trainer import Trainer


def _sparse_tiny(seed=1):
    model = build_tiny(TinyModel(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2), seed=seed)
    upcycle(model, SparsityConfig(bank_size=64, k=16, rank=8, init="random"))
    return model.eval()


def test_greedy_decode_matches_full_recompute_and_records_decode_steps(tmp_path):
    model = _sparse_tiny()
    prompts = torch.randint(0, 256, (3, 10))
    with RoutingCapture(tmp_path / "g.zarr", model_name="tiny", source="test") as cap:
        cap.attach(model)
        out = greedy_generate(model, prompts, 6, capture=cap, autocast=False)
    # Greedy with a KV cache == argmax of a full forward over the growing sequence, token by token.
    seq = prompts
    with torch.no_grad():
        for t in range(6):
            nxt = model(input_ids=seq).logits[:, -1].argmax(-1)
            assert torch.equal(nxt, out[:, t]), t
            seq = torch.cat([seq, nxt[:, None]], 1)
    c = TraceReader(tmp_path / "g.zarr").read(0, 10_000)
    assert c.num_tokens == 3 * 10 + 3 * 5
    assert not c.is_decode[:30].any() and c.is_decode[30:].all()
    np.testing.assert_array_equal(c.seq_id[30:], np.tile([0, 1, 2], 5))
    np.testing.assert_array_equal(c.position[30:], np.repeat(np.arange(10, 15), 3))
    np.testing.assert_array_equal(c.token_id[30:], out[:, :5].T.reshape(-1).numpy())
    # Decode routing is the sparse layers' own choice on that token: recompute the last step's masks.
    with torch.no_grad():
        model(input_ids=seq[:, :-1])
    last = np.stack([m.last_mask[:, -1].numpy() for m in sparse_modules(model)], 1)  # (3, L, I)
    np.testing.assert_array_equal(c.masks()[-3:], last)


def test_predictor_only_run_ships_an_adapter_that_reproduces_the_model(tiny_recipe_dict, tmp_path):
    from codesign.train.adapter import apply_adapter, export_adapter, read_adapter

    stage = dict(tiny_recipe_dict["stages"][1], trainable="predictor", steps=3, grad_accum=1, warmup_steps=0)
    data = dict(
        tiny_recipe_dict, stages=[dict(tiny_recipe_dict["stages"][0], steps=0, warmup_steps=0), stage]
    )
    r = recipe_from_dict(data)
    t = Trainer(r, tmp_path / "run")
    summary = t.run()
    assert summary["adapter"] is not None
    header, tensors = read_adapter(summary["adapter"])
    assert header["base"] == "tiny" and all(".predictor." in n for n in tensors)
    assert {v.dtype for v in tensors.values()} == {torch.float16}
    base = build_tiny(r.model.tiny, r.seed)
    apply_adapter(base, summary["adapter"])
    trained = t.model.state_dict()
    for name, value in base.state_dict().items():
        if ".predictor." in name:  # fp16 in the file
            torch.testing.assert_close(value, trained[name].to(torch.float16).float(), rtol=0, atol=0)
        else:
            assert torch.equal(value, trained[name]), name
    # Exporting from the run's checkpoint gives the same tensors (the path for a run stopped early).
    exported = export_adapter(tmp_path / "run", tmp_path / "exported.safetensors")
    header2, tensors2 = read_adapter(exported)
    assert header2["provenance"]["checkpoint_step"] == 3 and tensors2.keys() == tensors.keys()
    assert all(torch.equal(tensors[n], tensors2[n]) for n in tensors)
    (tmp_path / "junk.safetensors").write_bytes(b"not an adapter")
    with pytest.raises(ModelError, match="unreadable"):
        apply_adapter(build_tiny(r.model.tiny, r.seed), tmp_path / "junk.safetensors")


def test_eval_generate_cli_on_a_run_directory(tiny_recipe_dict, tmp_path, capsys):
    from codesign.cli import cli
    from codesign.cli.train import generate_command

    r = recipe_from_dict(tiny_recipe_dict)
    Trainer(r, tmp_path / "run").run()
    cli.add_command(generate_command)  # the integrator attaches it under `eval`; here directly
    try:
        cli.main(
            args=[
                "generate",
                "--model",
                str(tmp_path / "run"),
                "--corpus",
                tiny_recipe_dict["data"]["corpus"],
                "--prompts",
                "2",
                "--prompt-len",
                "16",
                "--new-tokens",
                "4",
                "--eval-windows",
                "1",
                "--eval-len",
                "32",
                "--trace-out",
                str(tmp_path / "gen.zarr"),
            ],
            standalone_mode=False,
        )
    finally:
        cli.commands.pop("generate", None)
    reader = TraceReader(tmp_path / "gen.zarr")
    assert reader.num_tokens == 32 + 2 * 16 + 2 * 3
    phases = [s["phase"] for s in reader.meta.extra["segments"]]
    assert phases == ["eval", "generate", "generate", "generate", "generate"]
    assert reader.meta.source.startswith("eval+generate:local")


def test_ffn_run_ships_predictors_plus_a_low_rank_delta(tiny_recipe_dict, tmp_path):
    """A predictor+ffn run exports as predictors + a rank-r delta per FFN weight; at full rank the adapted
    base equals the trained model up to the fp16 storage of the factors; a smaller rank is refused when it
    exceeds the layer, and the rank is required."""
    from codesign.train.adapter import apply_adapter, export_adapter, low_rank_deltas, read_adapter

    stage = dict(tiny_recipe_dict["stages"][1], trainable="predictor+ffn", steps=3, warmup_steps=0)
    data = dict(
        tiny_recipe_dict, stages=[dict(tiny_recipe_dict["stages"][0], steps=0, warmup_steps=0), stage]
    )
    r = recipe_from_dict(data)
    t = Trainer(r, tmp_path / "run")
    assert t.run()["adapter"] is None  # the FFN changed: no predictor-only adapter at the end of the run
    with pytest.raises(ModelError, match="delta rank"):
        export_adapter(tmp_path / "run", tmp_path / "a.safetensors")
    base = build_tiny(r.model.tiny, r.seed)
    full = min(base.config.hidden_size, base.config.intermediate_size)
    with pytest.raises(ModelError, match="exceeds the layer"):
        export_adapter(tmp_path / "run", tmp_path / "a.safetensors", delta_rank=full + 1)
    path = export_adapter(tmp_path / "run", tmp_path / "a.safetensors", delta_rank=full)
    header, tensors = read_adapter(path)
    assert header["ffn_delta_rank"] == full
    assert sum(n.endswith(".delta_a") for n in tensors) == 3 * r.model.tiny.layers
    adapted = apply_adapter(base, path).state_dict()
    trained = t.model.state_dict()
    for name, value in trained.items():
        if name.endswith(("gate_proj.weight", "up_proj.weight", "down_proj.weight")):
            delta = value - build_tiny(r.model.tiny, r.seed).state_dict()[name]
            assert delta.abs().max() > 0, name  # the FFN really trained
            # fp16 factors: error a small fraction of the delta itself, not of the weight
            assert (adapted[name] - value).abs().max() <= 2e-3 * delta.abs().max() + 1e-6, name
    # int8: every stored matrix within half a quantisation step of its fp16 value (per row), about half the
    # bytes, and the adapter applies through the same path
    q_path = export_adapter(tmp_path / "run", tmp_path / "q.safetensors", delta_rank=full, quantization="int8")
    q_header, q_tensors = read_adapter(q_path)
    assert q_header["quantization"] == "int8" and set(q_tensors) == set(tensors)
    for name, value in tensors.items():
        if value.dim() == 2:
            step = value.float().abs().amax(dim=1, keepdim=True) / 127
            assert ((q_tensors[name] - value.float()).abs() <= step / 2 + 1e-3 * step + 1e-8).all(), name
            assert (q_tensors[name] != value.float()).any(), name  # really quantised
    assert q_path.stat().st_size < 0.7 * path.stat().st_size
    apply_adapter(build_tiny(r.model.tiny, r.seed), q_path)
    # Truncation error falls with rank (the factorisation is an SVD): rank 1 < rank 4 < full.
    errs = [
        max(low_rank_deltas(t.model, build_tiny(r.model.tiny, r.seed), k)[1].values()) for k in (1, 4, full)
    ]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-5


def test_adapter_over_a_different_base_is_refused(tiny_recipe_dict, tmp_path):
    from codesign.train.adapter import apply_adapter

    stage = dict(tiny_recipe_dict["stages"][1], trainable="predictor", steps=1, warmup_steps=0)
    data = dict(
        tiny_recipe_dict, stages=[dict(tiny_recipe_dict["stages"][0], steps=0, warmup_steps=0), stage]
    )
    r = recipe_from_dict(data)
    summary = Trainer(r, tmp_path / "run").run()
    other = build_tiny(TinyModel(hidden=32, intermediate=128, layers=2, heads=4, kv_heads=2), seed=0)
    with pytest.raises(ModelError, match="shape"):
        apply_adapter(other, summary["adapter"])
