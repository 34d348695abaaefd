"""`codesign sweep`: bank size B × k (× hardware knobs) against accuracy, with Pareto fronts and plots."""

from __future__ import annotations

from pathlib import Path

import click

from codesign.cli.params import OutputPath
from codesign.cli.render import console


@click.command("sweep")
@click.option("--spec", "spec_path", required=True, type=click.Path(path_type=Path), help="Sweep spec YAML.")
@click.option("--out", type=OutputPath(file_okay=False, path_type=Path), default=None,
              help="Output directory [default: sweep-results/<spec name>].")  # fmt: skip
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: a process pool; ray: Ray tasks (a local Ray, or --ray-address).")  # fmt: skip
@click.option(
    "--workers", default=1, show_default=True, help="Processes (local) or CPUs (local Ray); 0 = inline."
)
@click.option("--ray-address", default=None, help="Ray cluster to join (host:port or ray://host:port).")
@click.option("--cache", "cache_dir", type=OutputPath(file_okay=False, path_type=Path), default=None,
              help="Stage cache directory [default: OUT/cache]; reused by reruns and extended sweeps.")  # fmt: skip
@click.option("--torch-threads", type=int, default=None, help="torch threads per worker (eval, fine-tune).")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--force", is_flag=True, help="Overwrite existing result files (the cache is always reused).")
def sweep(spec_path, out, executor, workers, ray_address, cache_dir, torch_threads, no_plots, force) -> None:
    """Co-design sweep: accuracy (ppl, recall) and simulated cost of every (B, k) on every hardware point."""
    from codesign.sweep.run import run_sweep
    from codesign.sweep.spec import load_spec

    spec = load_spec(spec_path)
    out = out or Path("sweep-results") / spec.name
    err = console(stderr=True)
    result = run_sweep(spec, out, executor=executor, workers=workers, ray_address=ray_address,
                       cache_dir=cache_dir, force=force, plots=not no_plots, torch_threads=torch_threads,
                       progress=lambda msg: err.print(f"[dim]{msg}[/]"))  # fmt: skip
    _render(result, out)


def _render(result, out: Path) -> None:
    from rich.table import Table

    c = console()
    rows = result.rows
    t = Table(title=f"{len(rows)} rows ({result.summary['rows_failed']} failed) → {out}", box=None)
    for name in ("point", "hw_point", "ppl", "recall", "tok/s", "pJ/token", "vs dense", "front"):
        t.add_column(name, justify="left" if name in ("point", "hw_point") else "right")
    for r in rows:
        if r["status"] != "ok":
            t.add_row(r["point"], r["hw_point"], "[red]failed[/]", r["error"][:60], "", "", "", "")
            continue
        mark = ("T" if r["pareto_tokens_per_s"] else "") + ("E" if r["pareto_energy"] else "")
        t.add_row(r["point"], r["hw_point"], f"{r['ppl']:.3f}",
                  "" if r["recall_mean"] is None else f"{r['recall_mean']:.3f}", f"{r['tokens_per_s']:.0f}",
                  f"{r['energy_per_token_pj']:.3g}", f"{r['speedup_vs_dense']:.2f}×", mark)  # fmt: skip
    c.print(t)
    s = result.summary
    c.print(f"{s['nodes']} stages: {s['computed']} computed, {s['cached']} from cache, {s['failed']} failed, "
            f"{s['wall_s']:.1f} s ({s['executor']})")  # fmt: skip
    c.print("[bold]front[/]: T = ppl vs tokens/s, E = ppl vs energy/token; simulated, energy estimated")
    for line in result.recommendation:
        c.print(line)
