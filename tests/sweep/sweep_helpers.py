"""Tiny sweep specs (the random tiny model of recipes/tiny.yaml, small eval budget) written to tmp files."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TIMING = ("_s", "_cached")  # columns that legitimately differ between two runs of the same sweep


def tiny_spec_dict(**changes) -> dict:
    spec = {
        "name": "tiny-test",
        "model": {"recipe": str(REPO / "recipes" / "tiny.yaml")},
        "grid": {"bank_sizes": [32, 64], "densities": [0.25]},
        "references": {"bank_size": 64, "k": 16, "modes": ["dense"]},
        "eval": {
            "tokens": 128,
            "context_len": 64,
            "batch_size": 4,
            "prompts": 4,
            "prompt_len": 8,
            "new_tokens": 6,
            "threshold_calib_tokens": 256,
        },  # fmt: skip
        "hardware": {"configs": [str(REPO / "hwconfigs" / "bank64.yaml")], "batch": [1, 4]},
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec


def write_spec(path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump(tiny_spec_dict(**changes)))
    return path


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.endswith(TIMING)} for r in rows]
