"""Bad input through the CLI: one line on stderr, exit code 2, nothing lost or overwritten."""

from __future__ import annotations

import pytest

from codesign.cli import main


def _fails(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_unknown_recipe_key(tiny_recipe_dict, write_recipe, capsys):
    tiny_recipe_dict["stages"][1]["learning_rate"] = 1e-3
    err = _fails(["train", "--recipe", str(write_recipe(tiny_recipe_dict))], capsys)
    assert "recipe.yaml: stages[1].learning_rate: unknown key" in err


def test_k_above_bank_size(tiny_recipe_dict, write_recipe, capsys):
    tiny_recipe_dict["sparsity"]["k"] = 65
    err = _fails(["train", "--recipe", str(write_recipe(tiny_recipe_dict))], capsys)
    assert "sparsity" in err and "k=65 exceeds bank_size=64" in err


def test_context_above_model_limit(tiny_recipe_dict, write_recipe, tmp_path, capsys):
    tiny_recipe_dict["stages"][1]["seq_len"] = 1024  # the tiny model allows 512
    err = _fails(
        ["train", "--recipe", str(write_recipe(tiny_recipe_dict)), "--out", str(tmp_path / "o")], capsys
    )
    assert "stages[1].seq_len=1024 exceeds the model's context limit" in err


def test_missing_corpus_file(tiny_recipe_dict, write_recipe, tmp_path, capsys):
    tiny_recipe_dict["data"]["corpus"] = str(tmp_path / "nope.jsonl")
    err = _fails(
        ["train", "--recipe", str(write_recipe(tiny_recipe_dict)), "--out", str(tmp_path / "o")], capsys
    )
    assert "corpus file not found" in err and "nope.jsonl" in err


def test_missing_recipe_and_bad_values(tmp_path, tiny_recipe_dict, write_recipe, capsys):
    assert "recipe file not found" in _fails(["train", "--recipe", str(tmp_path / "none.yaml")], capsys)
    tiny_recipe_dict["stages"][0]["lr"] = "fast"
    assert "stages[0].lr" in _fails(["train", "--recipe", str(write_recipe(tiny_recipe_dict))], capsys)


def test_resume_missing_or_corrupt_checkpoint(tiny_recipe_dict, write_recipe, tmp_path, capsys):
    recipe = str(write_recipe(tiny_recipe_dict))
    out = tmp_path / "run"
    err = _fails(["train", "--recipe", recipe, "--out", str(out), "--resume"], capsys)
    assert "checkpoint" in err and "does not exist" in err
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"\x00garbage, not a torch file")
    err = _fails(["train", "--recipe", recipe, "--out", str(out), "--resume"], capsys)
    assert "corrupt" in err
    assert (out / "checkpoint.pt").read_bytes() == b"\x00garbage, not a torch file"


def test_existing_outputs_are_not_overwritten(tiny_recipe_dict, write_recipe, tmp_path, capsys):
    recipe = str(write_recipe(tiny_recipe_dict))
    trace = tmp_path / "trace.zarr"
    trace.mkdir()
    (trace / "keep").write_text("mine")
    err = _fails(
        ["train", "--recipe", recipe, "--out", str(tmp_path / "o"), "--trace-out", str(trace)], capsys
    )
    assert "already exists" in err and (trace / "keep").read_text() == "mine"
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("old run\n")
    err = _fails(["train", "--recipe", recipe, "--out", str(out)], capsys)
    assert "already exists" in err and (out / "metrics.jsonl").read_text() == "old run\n"


def test_refused_run_leaves_nothing_behind(tiny_recipe_dict, write_recipe, tmp_path, capsys):
    """A run refused after the trainer started (context above the model's limit) removes the run directory
    and trace store it created, so nothing is left for a rerun to mistake for a run."""
    tiny_recipe_dict["stages"][1]["seq_len"] = 1024
    recipe = str(write_recipe(tiny_recipe_dict))
    out, trace = tmp_path / "runs" / "o", tmp_path / "t.zarr"
    for _ in range(2):  # the rerun is refused the same way, not with "already exists"
        err = _fails(["train", "--recipe", recipe, "--out", str(out), "--trace-out", str(trace)], capsys)
        assert "exceeds the model's context limit" in err
        assert not out.exists() and not trace.exists()


def test_output_under_a_file_is_refused_before_the_run(tiny_recipe_dict, write_recipe, tmp_path, capsys):
    (tmp_path / "f").write_text("a file")
    recipe = str(write_recipe(tiny_recipe_dict))
    err = _fails(["train", "--recipe", recipe, "--out", str(tmp_path / "f" / "run")], capsys)
    assert "is a file, not a directory" in err and "--out" in err
