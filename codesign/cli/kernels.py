"""`codesign kernels probe` — measure the bytes a Triton kernel loads (interpreter) against the bundled layout."""

from __future__ import annotations

import os

import click

from codesign.cli.params import OutputPath
from codesign.cli.render import console, print_kv_table, write_json_output
from codesign.errors import OutputExistsError

OPS = ("sparse_swiglu_decode",)
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@click.group()
def kernels() -> None:
    """Triton kernels of the sparse FFN: traffic probe."""


@kernels.command()
@click.option("--op", type=click.Choice(OPS), default="sparse_swiglu_decode", show_default=True)
@click.option("--hidden", type=int, default=576, show_default=True, help="Hidden size d.")
@click.option("--intermediate", type=int, default=1536, show_default=True, help="FFN intermediate size I.")
@click.option("--bank-size", "-B", type=int, default=64, show_default=True, help="Channels per bank.")
@click.option("--k", "-k", type=int, default=16, show_default=True, help="Kept channels per bank.")
@click.option("--tokens", type=int, default=1, show_default=True, help="Tokens in the batch (1 = decode).")
@click.option("--dtype", type=click.Choice(list(DTYPES)), default="bf16", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--json", "json_path", type=OutputPath(dir_okay=False), default=None, help="Write the report here."
)
@click.option("--force", is_flag=True, help="Overwrite the --json file if it exists.")
def probe(op, hidden, intermediate, bank_size, k, tokens, dtype, seed, json_path, force) -> None:
    """Run one launch under TRITON_INTERPRET=1 and count the 32-byte sectors its loads touch.

    Prints measured weight bytes against the bundled-layout prediction (channels read x bundle bytes) and
    against dense. Slow by nature (the interpreter runs every program in numpy): keep shapes model-sized.
    """
    if json_path and os.path.exists(json_path) and not force:
        raise OutputExistsError(json_path)  # refuse before the slow run, not after it
    # The interpreter is chosen when a kernel is defined, so it must be on before codesign.kernels loads.
    os.environ["TRITON_INTERPRET"] = "1"
    import torch

    from codesign.kernels.probe import probe_sparse_swiglu

    with console(stderr=True).status(f"probing {op} under the Triton interpreter"):
        report = probe_sparse_swiglu(
            hidden, intermediate, bank_size, k, tokens=tokens, dtype=getattr(torch, DTYPES[dtype]), seed=seed
        )
    report["op"] = op
    rows = {key: value for key, value in report.items() if key not in ("probe", "shape")}
    rows.update(report["shape"])
    print_kv_table(f"{op}: measured loads vs bundled-layout prediction", rows)
    if json_path:
        write_json_output(json_path, report, force=force)
