"""`codesign validate` — hold the simulator's traffic against what the Triton FFN kernels really load."""

from __future__ import annotations

import os

import click

from codesign.cli.params import OutputPath


def _ints(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None


@click.command()
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="cpu: kernels under the Triton interpreter + traffic probe; cuda: ncu bytes and CUDA-event "
                   "time on a GPU.")  # fmt: skip
@click.option("--quick", is_flag=True, help="The small subset CI runs (seconds).")
@click.option("--source", type=click.Choice(["all", "synthetic", "recorded"]), default="all", show_default=True,
              help="Masks from synthetic traces, the recorded trace, or both.")  # fmt: skip
@click.option("--trace", "trace_path", type=click.Path(), default=None,
              help="Trace store for the recorded cases (default: the SmolLM2 trace shipped in the package).")  # fmt: skip
@click.option("--tokens", default=None, help="Tokens per launch, e.g. 1,4,16 (default: the grid).")
@click.option("--bank-size", "-B", "banks", default=None, help="Bank sizes, e.g. 32,64,128.")
@click.option("--k", "-k", "ks", default=None, help="Kept channels per bank (default: B/8, B/4, B/2).")
@click.option("--hidden", type=int, default=None, help="Synthetic cases: hidden size d.")
@click.option("--intermediate", type=int, default=None, help="Synthetic cases: FFN intermediate size I.")
@click.option("--layers", type=int, default=None, help="FFN layers per case.")
@click.option("--launches", type=int, default=None, help="Consecutive launches per case.")
@click.option("--hw", type=click.Path(dir_okay=False), default=None,
              help="GPU-like hwconfig the simulator starts from (default: hwconfigs/h200.yaml).")  # fmt: skip
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a key of the simulator's memory-system config (applied last).")  # fmt: skip
@click.option("--json", "json_path", type=OutputPath(dir_okay=False), default=None, help="Write the results.")
@click.option("--compare", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Compare a --device cuda results file measured on a machine without the simulator.")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite the --json file if it exists.")
def validate(device, quick, source, trace_path, tokens, banks, ks, hidden, intermediate, layers, launches, hw,
             overrides, json_path, compare, force) -> None:  # fmt: skip
    """Run the FFN kernels and the simulator configured as their memory system; compare bytes (and time).

    Exits 1 if any case is out of tolerance, 2 on bad input.
    """
    from codesign.errors import OutputExistsError

    if json_path and os.path.exists(json_path) and not force:
        raise OutputExistsError(json_path)  # refuse before the slow run, not after it
    if device == "cuda" or compare:
        from codesign.validate.cuda import run_cuda_cli, run_cuda_progress_total

        total = run_cuda_progress_total(quick, _ints(tokens)) if not compare else 0
        report = _with_progress(
            lambda progress: run_cuda_cli(quick, _ints(tokens), hw, overrides, compare, progress), total
        )
        json_path = json_path or _default_cuda_path(report)
    else:
        # The interpreter is chosen when a kernel is defined, so it must be on before codesign.kernels loads.
        os.environ["TRITON_INTERPRET"] = "1"
        from codesign.validate.cases import select_cases
        from codesign.validate.cpu import run_cpu

        cases = select_cases(source, trace_path, quick, _ints(tokens), _ints(banks), _ints(ks), hidden,
                             intermediate, layers, launches)  # fmt: skip
        report = _with_progress(lambda progress: run_cpu(cases, hw, overrides, progress), len(cases))
    _render(report)
    if json_path:
        from codesign.cli.render import write_json_output

        write_json_output(json_path, report, force=force)
        click.echo(f"wrote {json_path}")
    if report["ok"] is False:
        raise SystemExit(1)


def _default_cuda_path(report: dict) -> str:
    """bench/results/validate-cuda-<device>-<UTC date>.json (the results directory when run from the tree)."""
    device = report["device"].removeprefix("cuda (").rstrip(")").split()[-1].lower()
    stamp = report["date_utc"].replace("-", "").replace(":", "")
    folder = "bench/results" if os.path.isdir("bench/results") else "."
    return os.path.join(folder, f"validate-cuda-{device}-{stamp}.json")


def _with_progress(run, total: int):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from codesign.cli.render import console

    columns = (TextColumn("validating"), BarColumn(), TextColumn("{task.completed}/{task.total} {task.description}"),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console(stderr=True), transient=True) as bar:
        task = bar.add_task("", total=total)

        def progress(done: int, _total: int, name: str) -> None:
            bar.update(task, completed=done, description=name)

        return run(progress)


def _render(report: dict) -> None:
    """One row per case: weights measured vs simulated (32 B sectors), then every check's error in bytes."""
    from rich import box
    from rich.table import Table

    from codesign.cli.render import console

    out = console()
    out.width = max(out.width, 150)  # a table to read, not to wrap: wider than a narrow terminal if need be
    quantities = list(report["tolerances"])
    table = Table(
        title=f"codesign validate — {report['device']}; simulator: {report['hwconfig']}", box=box.SIMPLE
    )
    table.add_column("case", no_wrap=True)
    for name in ("measured B", "simulated B"):
        table.add_column(name, justify="right")
    for q in quantities:
        table.add_column(f"error {q}", justify="right")
    table.add_column("")
    for case in report["cases"]:
        checks = {c["quantity"]: c for c in case["checks"]}
        first = checks[quantities[0]]
        row = [
            case["case"]["name"],
            _num(first["measured"], first["unit"]),
            _num(first["simulated"], first["unit"]),
        ]
        for q in quantities:
            c = checks.get(q)
            row.append("—" if c is None else _err(c))
        ok = case["ok"]
        row.append("not compared" if ok is None else "[green]ok[/]" if ok else "[bold red]FAIL[/]")
        table.add_row(*row)
    out.print(table)
    if report["ok"] is None:
        verdict = "[yellow]measured only: the simulator is not importable here (see --compare)[/]"
    else:
        verdict = "[green]all within tolerance[/]" if report["ok"] else "[bold red]OUT OF TOLERANCE[/]"
    out.print(f"{report['cases_total']} cases, {report['cases_failed']} failed: {verdict}")
    out.print(f"measured / simulated: {quantities[0]}; tolerances:")
    for quantity, rule in report["tolerances"].items():
        out.print(f"  {quantity}: {rule}")


def _num(value, unit: str) -> str:
    if value is None:
        return "not measured"
    return f"{value:,}" if unit == "B" and float(value).is_integer() else f"{value:.4g}"


def _err(check: dict) -> str:
    if check["error"] is None:
        return "not measured" if check["measured"] is None else "not simulated"
    text = _num(check["error"], check["unit"])
    text = text if text.startswith("-") else "+" + text
    if check["relative_error"] is not None and check["measured"]:
        text += f" ({check['relative_error']:+.1%})"
    return text if check["ok"] else f"[bold red]{text}[/]"
