"""Shared fixtures: a small local corpus (KJV chapters) and tiny-model recipes built from recipes/tiny.yaml."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """~60 KJV chapters as a local .jsonl corpus (one document per chapter): fast to tokenise in bytes."""
    from codesign.data.corpus import _resolve_source

    _, kjv = _resolve_source("kjv")
    chapters: dict[str, list[str]] = {}
    with open(kjv) as f:
        for line in f:
            rec = json.loads(line)
            key = f"{rec['book']} {rec['chapter']}"
            if key not in chapters and len(chapters) == 60:
                break
            chapters.setdefault(key, []).append(rec["text"])
    path = tmp_path_factory.mktemp("corpus") / "kjv60.jsonl"
    with open(path, "w") as f:
        for key, verses in chapters.items():
            f.write(json.dumps({"id": key, "text": " ".join(verses)}) + "\n")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CODESIGN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def tiny_recipe_dict(small_corpus) -> dict:
    """recipes/tiny.yaml with the small local corpus; tests edit the dict and validate it."""
    data = yaml.safe_load((REPO / "recipes" / "tiny.yaml").read_text())
    for stage in data["stages"]:
        for key in ("lr",):
            stage[key] = float(stage[key])
    data["data"] = {"corpus": str(small_corpus)}
    data["train"]["eval_tokens"] = 256
    return data


@pytest.fixture
def write_recipe(tmp_path):
    def write(data: dict, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        return path

    return write


@pytest.fixture
def child_env() -> dict:
    """Environment for subprocesses: one intra-op thread each (the CI box has 2 cores)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run many small ops: on a shared 2-core VM, OpenMP wake-ups cost more than the ops
    (subprocesses get OMP_NUM_THREADS=1 from child_env for the same reason)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
