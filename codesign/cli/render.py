"""Terminal rendering and output files shared by the CLI commands (the library never prints)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from codesign.atomic import write_text_atomic


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)


def print_kv_table(title: str, rows: dict[str, object]) -> None:
    """A two-column table: key, value."""
    from rich.table import Table

    console().print(f"[bold underline]{title}[/]")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(str(key), str(value))
    console().print(table)


def write_atomic_text(path: str | os.PathLike, text: str, *, force: bool = False) -> Path:
    """Write `text` to `path` via a temporary file and rename; refuse to overwrite unless `force`."""
    return write_text_atomic(path, text, force=force)


def write_json_output(path: str | os.PathLike, obj: object, *, force: bool = False) -> Path:
    return write_atomic_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", force=force)
