"""The `codesign` command line: a click group with one sub-command (or sub-group) per user job.

Each job lives in its own module under codesign/cli/ and imports its heavy dependencies (torch, numba,
zarr) inside the command, so `codesign --help` and `codesign simulate` never load the model stack.
Library code raises `CodesignError`; `main` turns it into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import importlib
import sys

import click

from codesign import __version__
from codesign.cli.params import bound_numbers
from codesign.errors import CodesignError

# (module, attribute) of every command; each module owns one user job.
COMMANDS: list[tuple[str, str]] = [
    ("codesign.cli.trace", "trace"),
    ("codesign.cli.simulate", "simulate"),
    ("codesign.cli.train", "train"),
    ("codesign.cli.kernels", "kernels"),
    ("codesign.cli.model", "upcycle"),
    ("codesign.cli.model", "eval_group"),
    ("codesign.cli.sweep", "sweep"),
    ("codesign.cli.validate", "validate"),
    ("codesign.cli.adapter", "adapter_group"),
    ("codesign.cli.cwe", "diagnose"),  # importing it also adds `eval cwe` to the eval group
    ("codesign.cli.cwe", "repair"),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="codesign")
def cli() -> None:
    """Co-design bank-sparse LLMs and the bank-structured accelerators that run them."""


for _module, _attr in COMMANDS:
    cli.add_command(getattr(importlib.import_module(_module), _attr))
bound_numbers(cli)  # every int option fits int64, every float is finite: refused while parsing, before work


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user mistakes become one line and exit code 2, never a traceback."""
    try:
        cli.main(args=argv, prog_name="codesign", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except CodesignError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        click.echo(f"error: {exc.strerror}: {exc.filename}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
