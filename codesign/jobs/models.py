"""Load a sparse model from whichever form the user has: an adapter, a training run directory, or a checkpoint.

Choosing among the three touches train (adapters, run directories) and sparse (checkpoints), so it is a job,
not part of eval: eval receives a loaded model.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from codesign.errors import ConfigError, ModelError


def load_for_generate(
    model_spec: str | None, adapter: str | os.PathLike | None
) -> tuple[nn.Module, object, str]:
    """(sparse model, tokenizer, name) from an adapter, a training run directory, or a sparse checkpoint."""
    if adapter is not None:
        from codesign.train.adapter import load_adapted, read_adapter

        header, _ = read_adapter(adapter)
        if model_spec not in (None, header["base"]):
            raise ModelError(f"adapter {adapter} applies to base {header['base']!r}, not {model_spec!r}")
        model, tok = load_adapted(adapter)
        # The model is the base architecture; which adapter routed it is provenance (meta.extra).
        return model, tok, header["base"]
    if model_spec is None:
        raise ConfigError("give --model (a sparse checkpoint or a training run directory) or --adapter")
    path = Path(model_spec)
    if (path / "checkpoint.pt").is_file():
        from codesign.train.rundir import load_run_model

        model, tok, name = load_run_model(path)
        return model, tok, name
    from codesign.sparse.io import load_model

    model, tok = load_model(model_spec)
    return model, tok, path.name
