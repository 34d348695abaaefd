"""Bad sweep input: one line and exit 2 before any work starts, and nothing written."""

from __future__ import annotations

import pytest
import yaml
from sweep_helpers import REPO, tiny_spec_dict

from codesign.cli import main

CASES = [
    ("empty-grid", {"grid": {"bank_sizes": [], "densities": [0.25]}}, [], "grid: empty"),
    ("k-ge-B", {"grid": {"bank_sizes": [64], "ks": [64], "densities": None}}, [], "k=64 >= B=64"),
    ("B-not-dividing", {"grid": {"bank_sizes": [96], "densities": [0.25]}}, [], "B=96 does not divide"),
    ("not-whole-k", {"grid": {"bank_sizes": [64], "densities": [0.3]}}, [], "is not a whole k"),
    ("ref-k", {"references": {"bank_size": 64, "k": 80, "modes": ["global_topk"]}}, [], "k=80 >= B=64"),
    ("missing-model", {"model": {"adapter": "/nonexistent/a.safetensors"}}, [], "does not exist"),
    ("missing-recipe", {"model": {"recipe": "/nonexistent/r.yaml"}}, [], "recipe file not found"),
    ("two-models", {"model": {"adapter": "a", "recipe": "b"}}, [], "exactly one of"),
    ("unknown-key", {"grd": {}}, [], "grd: unknown key"),
    ("unknown-knob", {"hardware": {"set": {"sram.nonsense_bytes": [1]}}}, [], "nonsense_bytes"),
    ("bad-knob-value", {"hardware": {"set": {"sram.num_banks": [-4]}}}, [], "num_banks"),
    ("reserved-knob", {"hardware": {"set": {"sparsity.k": [8]}}}, [], "set by each sweep point"),
    ("missing-hw", {"hardware": {"configs": ["/nonexistent/hw.yaml"]}}, [], "does not exist"),
    ("zero-batch", {"hardware": {"batch": [0]}}, [], "positive batch"),
    ("batch-over-prompts", {"hardware": {"batch": [1, 16]}}, [], "batch 16 needs at least"),
    ("finetune-no-recipe", {"accuracy": {"finetune_steps": 3}}, [], "needs accuracy.finetune_recipe"),
    ("ray-unreachable", {}, ["--executor", "ray", "--ray-address", "127.0.0.1:9"], "127.0.0.1:9"),
    ("ray-address-local", {}, ["--ray-address", "127.0.0.1:9"], "--ray-address needs --executor ray"),
    ("negative-workers", {}, ["--workers", "-1"], "--workers must be >= 0"),
    ("zero-threads", {}, ["--torch-threads", "0"], "--torch-threads must be >= 1"),
]


@pytest.mark.parametrize(("changes", "extra", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_before_any_work(tmp_path, capsys, changes, extra, needle):
    spec = tiny_spec_dict()
    for key, value in changes.items():  # a replacement, key by key (None drops a key)
        if isinstance(value, dict) and isinstance(spec.get(key), dict) and key != "model":
            spec[key] = {k: v for k, v in {**spec[key], **value}.items() if v is not None}
        else:
            spec[key] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    if "ray" in extra and needle.startswith("127"):
        pytest.importorskip("ray")
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--spec", str(path), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert not out.exists()  # refused before anything was written


def test_existing_results_are_not_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.csv").write_text("an earlier sweep\n")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tiny_spec_dict()))
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--spec", str(path), "--out", str(out)])
    assert exc.value.code == 2 and "already exists" in capsys.readouterr().err
    assert (out / "sweep.csv").read_text() == "an earlier sweep\n" and not (out / "cache").exists()


def test_missing_spec(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--spec", str(tmp_path / "nope.yaml")])
    assert "sweep spec not found" in capsys.readouterr().err
    assert (REPO / "sweeps" / "smollm2-bank.yaml").is_file()
