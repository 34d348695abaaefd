"""Trainer checkpoints: one torch file, written atomically (temp file + fsync + os.replace).

A checkpoint is a plain dict (see Trainer.state_dict): model, optimizer and scheduler state, the global step,
tokens seen, every RNG the run draws from, the data position and the resolved recipe. A crash mid-write
leaves the previous checkpoint intact; a truncated or foreign file is a one-line ModelError on load.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from codesign.atomic import atomic_path
from codesign.errors import ModelError

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write `state` to `path` atomically; the previous file stays valid until the new one is complete."""
    with atomic_path(path) as tmp:
        torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by save_checkpoint; ModelError naming the file if missing or corrupt."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise ModelError(f"cannot resume: checkpoint {path} does not exist")
    try:
        # weights_only: a checkpoint is tensors, numbers, strings and dicts; never arbitrary pickled code.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError / pickle / zip errors for damaged files
        raise ModelError(f"cannot resume: checkpoint {path} is corrupt ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"cannot resume: {path} is not a codesign trainer checkpoint (format {FORMAT_VERSION})"
        )
    return state


def rng_state() -> dict:
    """Every RNG a training step may draw from (python, numpy, torch CPU), as checkpointable values."""
    np_state = np.random.get_state()
    return {
        "python": list(_tuple_to_list(random.getstate())),
        "numpy": {
            "key": torch.from_numpy(np_state[1].copy()),
            "pos": int(np_state[2]),
            "gauss": [int(np_state[3]), float(np_state[4])],
        },
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict) -> None:
    random.setstate(_list_to_tuple(state["python"]))
    has_gauss, cached = state["numpy"]["gauss"]
    np.random.set_state(("MT19937", state["numpy"]["key"].numpy(), state["numpy"]["pos"], has_gauss, cached))
    torch.set_rng_state(state["torch"])


def _tuple_to_list(x):
    # weights_only loading accepts lists of ints but not nested tuples from random.getstate() in every torch.
    return [_tuple_to_list(v) for v in x] if isinstance(x, tuple) else x


def _list_to_tuple(x):
    return tuple(_list_to_tuple(v) for v in x) if isinstance(x, list) else x
