"""What every benchmark records beside its numbers, and how it writes them (atomically) to bench/results/."""

from __future__ import annotations

import json
import os
import platform

from codesign.atomic import write_text_atomic


def torch_host(note: str | None = None) -> dict:
    """Host description for a torch benchmark: threads, platform, torch version (+ a note on how to read it)."""
    import torch

    host = {
        "cpu_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
    }
    if note:
        host["note"] = note
    return host


def write_result(path: str | os.PathLike, result: dict) -> None:
    """Write `result` as JSON via a temporary file and a rename, so a killed run never leaves half a file."""
    write_text_atomic(path, json.dumps(result, indent=1))
