"""`codesign simulate` — replay a routing trace on a bank-structured accelerator and report its cost."""

from __future__ import annotations

from pathlib import Path

import click

from codesign.cli.params import OutputPath


@click.command()
@click.option("--hw", "hw", required=True, type=click.Path(dir_okay=False), help="Hardware config YAML.")
@click.option("--trace", "trace_path", type=click.Path(), default=None,
              help="Trace store (default: the trace embedded in the package).")  # fmt: skip
@click.option(
    "--batch", type=int, default=None, help="Concurrent decode tokens per step (default: the config's)."
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key by dotted path, e.g. --set dram.stacks=2 (repeatable).")  # fmt: skip
@click.option(
    "--json", "json_path", type=OutputPath(dir_okay=False), default=None, help="Write the report as JSON."
)
@click.option("--csv", "csv_dir", type=OutputPath(file_okay=False), default=None,
              help="Write totals.csv, per_layer.csv, per_bank.csv into this directory.")  # fmt: skip
@click.option("--plot", "plot_dir", type=OutputPath(file_okay=False), default=None,
              help="Write PNG plots (time bound by each resource, bank load, DRAM per layer) into this directory.")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
def simulate(hw, trace_path, batch, overrides, json_path, csv_dir, plot_dir, force) -> None:
    """Simulate a trace on the accelerator in HW, with the dense and global top-k baselines."""
    from codesign.errors import OutputExistsError
    from codesign.sim.config import load_hwconfig
    from codesign.sim.plots import PLOT_FILES, write_plots
    from codesign.sim.report import CSV_FILES, build_report, write_csv, write_json
    from codesign.sim.simulation import simulate as run_simulation
    from codesign.trace import default_trace_path

    if batch is not None and batch <= 0:
        raise click.BadParameter(f"must be a positive number of tokens, got {batch}", param_hint="--batch")
    # Refuse existing outputs before a long run, not after it.
    planned = [Path(json_path)] if json_path else []
    planned += [Path(csv_dir) / n for n in CSV_FILES] if csv_dir else []
    planned += [Path(plot_dir) / n for n in PLOT_FILES] if plot_dir else []
    for path in planned:
        if path.exists() and not force:
            raise OutputExistsError(path)
    cfg = load_hwconfig(hw, overrides)
    trace = Path(trace_path) if trace_path else default_trace_path()
    result = _run_with_progress(run_simulation, cfg, trace, batch)
    report = build_report(result)
    if json_path:
        write_json(report, json_path, force=force)
    if csv_dir:
        write_csv(report, csv_dir, force=force)
    if plot_dir:
        write_plots(report, plot_dir, force=force)
    _render(report, [p for p in planned])


PROGRESS_AFTER_S = 2.0  # runs shorter than this show no bar


def _run_with_progress(run_simulation, cfg, trace, batch):
    """Run with a progress bar (tokens, tokens/s, time left) on stderr, shown once the run passes ~2 s."""
    import time

    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    from codesign.cli.render import console

    class TokensPerSecond(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:,.0f} tokens/s" if task.speed else "")

    columns = (TextColumn("simulating"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} tokens"),
               TokensPerSecond(), TimeElapsedColumn(), TimeRemainingColumn())  # fmt: skip
    bar = Progress(*columns, console=console(stderr=True), transient=True)
    task = bar.add_task("simulate", total=None)
    t0, shown = time.monotonic(), False

    def advance(tokens: int, total: int) -> None:
        nonlocal shown
        bar.update(task, advance=tokens, total=total)
        if not shown and time.monotonic() - t0 > PROGRESS_AFTER_S:
            bar.start()
            shown = True

    try:
        return run_simulation(cfg, trace, batch=batch, progress=advance)
    finally:
        if shown:
            bar.stop()


def _fmt(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.4g}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _pct(summary: dict, key: str) -> str:
    cycles = summary["totals"]["cycles"]
    return f"{summary['bound_by'][key] / cycles:.1%}" if cycles else "—"


def _render(report: dict, written: list[Path]) -> None:
    from rich.table import Table

    from codesign.cli.render import console

    out = console()
    label = f" [bold red]({report['label']})[/]" if report["label"] else ""
    t = report["trace"]
    hw = report["hwconfig"]
    out.print(f"[bold]codesign simulate[/]{label}: {hw['name']} × {t['model_name']} "
              f"({t['tokens']} tokens, {t['source']}), batch {report['batch']}")  # fmt: skip
    out.print(report["scope_note"])
    variants = [("bank top-k", report), ("dense", report["dense_baseline"])]
    if report["global_topk"]:
        variants.append(("global top-k", report["global_topk"]))
    table = Table(title=f"totals{' — ' + report['label'] if report['label'] else ''}")
    table.add_column("")
    for name, _ in variants:
        table.add_column(name, justify="right")
    rows = ("cycles", "time_s", "tokens_per_s", "dram_read_bytes", "sram_read_bytes", "hit_rate", "union_density",
            "energy_per_token_pj", "bank_imbalance")  # fmt: skip
    for key in rows:
        table.add_row(key, *(_fmt(v["totals"][key]) for _, v in variants))
    if report["scope"] == "model":  # where the bytes go, and the FFN part alone beside the whole step
        for key in ("dram_ffn_bytes", "dram_predictor_bytes", "dram_attention_bytes", "dram_kv_read_bytes",
                    "dram_head_bytes"):  # fmt: skip
            table.add_row(f"  {key}", *(_fmt(v["totals"][key]) for _, v in variants))
        table.add_row("FFN only: tokens_per_s", *(_fmt(v["ffn_scope"]["tokens_per_s"]) for _, v in variants))
    for key in report["bound_by"]:  # each layer-step's cycles go to the resource owning its critical path
        table.add_row(f"bound by {key.removesuffix('_cycles')}", *(_pct(v, key) for _, v in variants))
    for key in report["utilisation"]:
        table.add_row(f"utilisation: {key}", *(f"{v['utilisation'][key]:.1%}" for _, v in variants))
    out.print(table)
    for base in ("vs_dense", "vs_global_topk"):
        if report[base]:
            r = report[base]
            ffn = f" (FFN only: {_fmt(r['ffn_scope_speedup'])}×)" if report["scope"] == "model" else ""
            out.print(f"{base}: speedup {_fmt(r['speedup'])}×{ffn}, DRAM bytes {_fmt(r['dram_bytes_ratio'])}×, "
                      f"energy {_fmt(r['energy_ratio'])}×")  # fmt: skip
    if not report["global_topk"]:
        out.print(f"global top-k: {report['global_topk_note']}")
    measured = report["union_density_vs_batch"]
    if measured:
        model = report["union_density_uniform_model"]
        pairs = ", ".join(f"b={b}: {measured[b]:.3f} ({model[b]:.3f})" for b in measured)
        out.print(f"union density vs batch (independent-uniform model in brackets): {pairs}")
    area = report["area"]
    out.print(f"SRAM: {_fmt(area['sram_area_mm2'])} mm², {_fmt(area['sram_leakage_mw'])} mW leakage; "
              "energy is estimated from per-event costs (see the report's notes)")  # fmt: skip
    for path in written:
        out.print(f"wrote {path}")
