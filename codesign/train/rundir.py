"""A training run's directory: file names, the metrics log, and loading the model a run left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from codesign.atomic import write_text_atomic
from codesign.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from codesign.train.models import build_model, model_name

METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"
ADAPTER_NAME = "adapter.safetensors"
EVALS_NAME = "evals.jsonl"


def load_run_model(run_dir: str | os.PathLike) -> tuple[nn.Module, object, str]:
    """(model in eval mode, tokenizer, name) as a training run's checkpoint left it."""
    from codesign.sparse.upcycle import upcycle
    from codesign.train.recipe import recipe_from_dict, sparsity_config

    state = load_checkpoint(Path(run_dir) / CHECKPOINT_NAME)
    data = {k: v for k, v in state["recipe"].items() if k != "path"}
    recipe = recipe_from_dict(data, where=state["recipe"].get("path") or str(run_dir))
    model, tokenizer = build_model(recipe.model, recipe.seed)
    if state["sparse"]:
        with torch.random.fork_rng():
            upcycle(model, sparsity_config(recipe).replace(init="random"))
    model.load_state_dict(state["model"])
    return model.eval(), tokenizer, f"{model_name(recipe.model)}@{recipe.name}:step{state['step']}"


def first_difference(a, b, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return first_difference(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return first_difference(x, y, f"{prefix}[{i}]")
    return f"{prefix}: {a!r} -> {b!r}"


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric rows a killed run logged after its last checkpoint; the resumed run re-logs them."""
    if not path.is_file():
        return
    rows = [
        line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step
    ]
    write_text_atomic(path, "".join(r + "\n" for r in rows))


def atomic_json(path: Path, obj: dict) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2))
