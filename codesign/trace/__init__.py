"""Routing traces: the chunked store, synthetic generators, statistics, and the embedded default trace."""

from __future__ import annotations

from pathlib import Path

DEFAULT_DIR = Path(__file__).parent / "default"


def default_trace_path() -> Path:
    """The small trace shipped inside the package, used by `codesign simulate` when no --trace is given.

    A trace recorded from the trained SmolLM2-135M by the project's pipeline when present, else the
    synthetic SmolLM2-shaped one (its metadata says `synthetic`, and so does every report made from it).
    """
    for name in ("smollm2-trained.zarr", "smollm2-synthetic.zarr"):
        if (DEFAULT_DIR / name / "commit.json").is_file():
            return DEFAULT_DIR / name
    from codesign.errors import TraceError

    raise TraceError(f"no embedded default trace under {DEFAULT_DIR} (broken install?); pass --trace PATH")
