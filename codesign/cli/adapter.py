"""`codesign adapter export` — ship a training run as a small adapter over its unchanged base checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from codesign.cli.params import OutputPath
from codesign.cli.render import console


@click.group("adapter")
def adapter_group() -> None:
    """Adapters: predictors (+ a low-rank FFN delta) applied over the unchanged base checkpoint."""


@adapter_group.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("out", type=OutputPath(path_type=Path))
@click.option(
    "--delta-rank",
    type=click.IntRange(min=1),
    default=None,
    help="Rank of the SVD delta per FFN weight (required when the run trained the FFN).",
)
@click.option("--int8", is_flag=True, help="Store matrices as int8 with per-row fp16 scales (half the size).")
@click.option("--force", is_flag=True, help="Overwrite OUT.")
def export_command(run_dir: Path, out: Path, delta_rank: int | None, int8: bool, force: bool) -> None:
    """Write RUN_DIR's checkpoint as an adapter file OUT (safetensors, fp16 or int8)."""
    from codesign.errors import OutputExistsError
    from codesign.train.adapter import export_adapter, read_adapter

    if out.exists() and not force:
        raise OutputExistsError(out)  # before loading two models
    path = export_adapter(
        run_dir, out, force=force, delta_rank=delta_rank, quantization="int8" if int8 else None
    )
    header, tensors = read_adapter(path)
    size_mb = path.stat().st_size / 1e6
    rank = header.get("ffn_delta_rank")
    console().print(
        f"adapter {path}: {len(tensors)} tensors, {size_mb:.1f} MB, base {header['base']}, "
        f"FFN delta rank {rank if rank else 'none (predictors only)'}"
        + (f", {header['quantization']}" if header.get("quantization") else "")
    )
