"""Routing traces: the chunked store, synthetic generators, statistics, and the embedded default trace."""

from __future__ import annotations

from pathlib import Path

DEFAULT_DIR = Path(__file__).parent / "default"


def default_trace_path() -> Path:
    """The small trace shipped inside the package, used by `codesign simulate` when no --trace is given.

    A trace recorded from the trained SmolLM2-135M by the project's pipeline when present, else the
    synthetic SmolLM2-shaped one (its metadata says `synthetic`, and so does every report made from it).
    """
    import json

    from codesign.errors import TraceError

    for name in ("smollm2-trained.zarr", "smollm2-synthetic.zarr"):
        commit = DEFAULT_DIR / name / "commit.json"
        # A store still being recorded (no committed tokens yet) is not a usable default.
        if commit.is_file() and json.loads(commit.read_text()).get("num_tokens", 0) > 0:
            return DEFAULT_DIR / name

    raise TraceError(f"no embedded default trace under {DEFAULT_DIR} (broken install?); pass --trace PATH")
