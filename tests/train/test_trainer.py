"""Trainer: stages run, resume is exact (in-process and after SIGKILL), DDP on 2 gloo processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from codesign.errors import ConfigError
from codesign.train.checkpoint import load_checkpoint
from codesign.train.models import build_model
from codesign.train.recipe import recipe_from_dict
from codesign.train.trainer import Trainer


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _losses(out):
    """What must not depend on interruption: every logged loss, LR and token count (not the timings)."""
    keys = ("step", "stage", "loss", "lm_loss", "kl_loss", "aux_loss", "lr", "tokens_seen")
    return [tuple(row[k] for k in keys) for row in _metrics(out)]


def test_stages_upcycle_and_train_what_they_say(tiny_recipe_dict, tmp_path):
    from codesign.sparse.upcycle import sparse_modules

    r = recipe_from_dict(tiny_recipe_dict)
    t = Trainer(r, tmp_path / "run")
    before = dict(build_model(r.model, r.seed)[0].named_parameters())
    summary = t.run()
    assert summary["steps"] == r.total_steps == 8
    assert set(summary["evals"]) == {"dense", "sparse"}
    assert len(sparse_modules(t.model)) == 2
    rows = _metrics(tmp_path / "run")
    assert [row["step"] for row in rows] == list(range(1, 9))
    assert {row["stage"] for row in rows} == {"dense", "sparse"}
    sparse_rows = [row for row in rows if row["stage"] == "sparse"]
    assert all(row["kl_loss"] > 0 and row["aux_loss"] > 0 for row in sparse_rows)
    # Stage 1 trains everything (embeddings move); stage 2 trains predictor + FFN only: attention stays.
    state = t.model.state_dict()
    assert not torch.equal(state["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    assert summary["tokens_seen"] == 4 * (4 * 64) + 4 * (2 * 2 * 128)


def test_resume_is_bit_exact(tiny_recipe_dict, tmp_path):
    """N steps straight == N/2 + save + load + N/2, across the dense -> sparse boundary, KL teacher included."""
    tiny_recipe_dict["stages"][1]["steps"] = 6
    tiny_recipe_dict["train"]["checkpoint_every"] = 100  # only the forced stop / stage-end checkpoints
    r = recipe_from_dict(tiny_recipe_dict)
    straight = Trainer(r, tmp_path / "a")
    straight.run()
    first = Trainer(r, tmp_path / "b")
    first.run(stop_after=7)  # mid sparse stage (dense 4 + 3 sparse)
    assert load_checkpoint(tmp_path / "b")["step"] == 7
    resumed = Trainer(r, tmp_path / "b", resume=True)
    resumed.run()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")


def test_a_checkpoint_from_before_a_new_optional_key_still_resumes(tiny_recipe_dict, tmp_path):
    """A recipe key added to the schema later (at its default) does not block resuming an older run; a
    changed value does."""
    from codesign.train.checkpoint import save_checkpoint

    r = recipe_from_dict(tiny_recipe_dict)
    Trainer(r, tmp_path / "a").run(stop_after=2)
    state = load_checkpoint(tmp_path / "a")
    del state["recipe"]["train"]["kl_topk"]  # as written before the key existed
    state.pop("format_version")
    save_checkpoint(state, tmp_path / "a" / "checkpoint.pt")
    Trainer(r, tmp_path / "a", resume=True).run(stop_after=3)
    assert load_checkpoint(tmp_path / "a")["step"] == 3
    changed = dict(tiny_recipe_dict, train=dict(tiny_recipe_dict["train"], kl_topk=8))
    with pytest.raises(ConfigError, match="kl_topk"):
        Trainer(recipe_from_dict(changed), tmp_path / "a", resume=True).run()


def test_sigkill_then_resume_reaches_the_same_loss(tiny_recipe_dict, tmp_path, write_recipe, child_env):
    data = dict(tiny_recipe_dict, stages=[dict(tiny_recipe_dict["stages"][0], steps=60)])
    data["train"] = dict(data["train"], checkpoint_every=3)
    path = write_recipe(data)
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "codesign", "train", "--recipe", str(path), "--out", str(out)],
        env=child_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 300  # generous: the shared CI box can be slow to import torch + transformers
    while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.02)  # a little past the checkpoint: the kill loses logged-but-unsaved steps
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (out / "summary.json").exists(), "the run finished before it could be killed"
    killed_at = load_checkpoint(out)["step"]
    assert 0 < killed_at < 60
    r = recipe_from_dict(data, where=str(path))
    Trainer(r, out, resume=True).run()
    Trainer(r, tmp_path / "straight").run()
    resumed = _losses(out)
    assert [row[0] for row in resumed] == list(range(1, 61))
    assert resumed == _losses(tmp_path / "straight")


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun + gloo checked on Linux")
def test_ddp_two_gloo_processes_match_grad_accumulation(tiny_recipe_dict, tmp_path, write_recipe, child_env):
    """2 processes x batch 2 (DDP averages gradients) == 1 process x batch 2 x grad_accum 2: same data, same math."""
    stage = dict(tiny_recipe_dict["stages"][0], steps=3, batch_size=2, grad_accum=1, warmup_steps=0)
    data = dict(tiny_recipe_dict, stages=[stage])
    path = write_recipe(data, "ddp.yaml")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    res = subprocess.run(
        [*torchrun, "-m", "codesign", "train", "--recipe", str(path), "--out", str(tmp_path / "ddp")],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert ddp["world_size"] == 2 and ddp["tokens_seen"] == 3 * 2 * 2 * 64
    single = dict(data, stages=[dict(stage, grad_accum=2)])
    ref = Trainer(recipe_from_dict(single), tmp_path / "single").run()
    assert ref["tokens_seen"] == ddp["tokens_seen"]
    a, b = ddp["evals"]["dense"]["val_loss"], ref["evals"]["dense"]["val_loss"]
    assert abs(a - b) < 1e-4, (a, b)
    assert _metrics(tmp_path / "ddp")[0]["loss"] == pytest.approx(
        _metrics(tmp_path / "single")[0]["loss"], abs=1e-5
    )
