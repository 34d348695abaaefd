"""The stage cache: each stage's result stored under a key made from everything it depends on.

A key hashes the stage name, the slice of the spec the stage reads, the code version of the packages it runs
(a hash of their source files, so an edited simulator invalidates simulations but not evaluations) and the
content hashes of its inputs (the model file, the trace store). An interrupted or extended sweep therefore
recomputes only missing keys, and two points whose inputs agree share one result. Results are JSON written
atomically; artifacts (trace stores, fine-tune runs) live beside them under the same key.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path

from codesign.atomic import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]  # the codesign package

# Source each stage runs: packages, or single modules of codesign/jobs (a change to any changes the keys).
STAGE_CODE = {
    "finetune": ("train", "sparse", "data", "kernels", "jobs/finetune.py"),
    "eval": ("eval", "sparse", "data", "kernels", "train", "jobs/models.py", "jobs/evaluate.py"),
    "sim": ("sim", "trace", "jobs/simulate.py"),
}


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


@cache
def code_version(stage: str) -> str:
    """Hash of the source files `stage` runs, plus the root modules (errors, layout, atomic...) they share."""
    h = hashlib.sha256()
    files = sorted(ROOT.glob("*.py"))
    for part in STAGE_CODE[stage]:
        files += [ROOT / part] if part.endswith(".py") else sorted((ROOT / part).rglob("*.py"))
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def file_fingerprint(path: str | os.PathLike) -> str:
    """Content hash of a file, or of a directory's files (names, sizes and contents; large files by size+mtime)."""
    p = Path(path)
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        h.update(str(f.relative_to(p) if f != p else f.name).encode())
        st = f.stat()
        if st.st_size <= 256 << 20:
            h.update(f.read_bytes())
        else:  # a multi-GB checkpoint: size and modification time stand in for its bytes
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def trace_fingerprint(path: str | os.PathLike) -> str:
    """Content hash of a committed trace store: its commit record holds per-array CRCs and token counts."""
    p = Path(path)
    h = hashlib.sha256((p / "commit.json").read_bytes())
    zattrs = p / "zarr.json" if (p / "zarr.json").is_file() else p / ".zattrs"
    if zattrs.is_file():
        h.update(zattrs.read_bytes())
    return h.hexdigest()[:24]


class Cache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _file(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.json"

    def get(self, stage: str, key: str) -> dict | None:
        f = self._file(stage, key)
        if not f.is_file():
            return None
        try:
            return json.loads(f.read_text())
        except json.JSONDecodeError:  # never half-written (atomic), but a hand-edited file is a miss
            return None

    def put(self, stage: str, key: str, result: dict) -> None:
        f = self._file(stage, key)
        f.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(f, json.dumps(result, sort_keys=True, indent=1, default=float))

    def artifact(self, kind: str, key: str, suffix: str = "") -> Path:
        """Where a stage keeps its artifact (trace store, run directory) for `key`."""
        d = self.root / kind
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{key}{suffix}"
