"""`run_sweep`: the whole `codesign sweep` job as one library call.

Order of work: validate the spec and every point (one line, nothing started), refuse existing outputs
without `force`, start the executor (Ray's address checked), then walk the DAG generation by generation:
a node whose key is in the cache is read back, the rest of a generation is handed to the executor at once,
and a node whose input failed is marked failed with that error. Rows, fronts, plots and the
recommendation are written at the end, atomically.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from codesign.errors import ConfigError, OutputExistsError
from codesign.sweep.cache import Cache, file_fingerprint
from codesign.sweep.dag import build_dag, eval_key, finetune_key, hw_digest, sim_key
from codesign.sweep.executors import make_executor
from codesign.sweep.grid import check_spec
from codesign.sweep.spec import SweepSpec
from codesign.sweep.stages import run_task

OUTPUT_FILES = ("sweep.csv", "sweep.json", "pareto.json", "summary.json")


@dataclass
class SweepResult:
    rows: list[dict]
    summary: dict
    recommendation: list[str]
    files: list[str] = field(default_factory=list)


def _source_fingerprint(spec: SweepSpec) -> str:
    p = spec.model.path
    return file_fingerprint(p) if Path(p).exists() else f"name:{p}"


def run_sweep(
    spec: SweepSpec,
    out_dir: str | os.PathLike,
    *,
    executor: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force: bool = False,
    plots: bool = True,
    torch_threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> SweepResult:
    from codesign.sweep import table

    say = progress or (lambda _m: None)
    if torch_threads is not None and torch_threads < 1:
        raise ConfigError(f"--torch-threads must be >= 1, got {torch_threads}")
    grid = check_spec(spec)
    out = Path(out_dir)
    for name in OUTPUT_FILES:
        if (out / name).exists() and not force:
            raise OutputExistsError(out / name)
    cache = Cache(cache_dir if cache_dir is not None else out / "cache")
    g = build_dag(spec, grid)
    ex = make_executor(executor, workers, ray_address)
    t0 = time.perf_counter()
    results: dict = {}
    counts = {"computed": 0, "cached": 0, "failed": 0}
    try:
        source_fp = _source_fingerprint(spec)
        recipe_fp = file_fingerprint(spec.accuracy.finetune_recipe) if spec.accuracy.finetune_recipe else ""
        hw_fps: dict = {}  # (hw point, B, k) -> resolved-config digest, filled as sim keys are made
        for generation in nx.topological_generations(g):
            todo = []
            for node in generation:
                attrs = g.nodes[node]
                failed = [results[p] for p in g.predecessors(node) if not results[p]["ok"]]
                if failed:
                    results[node] = {"ok": False, "error": failed[0]["error"], "upstream": True}
                    continue
                if attrs["stage"] == "sim" and spec.simulate.split_layers > 1:
                    continue  # merged below from its parts
                key, task = _task(spec, g, node, results, cache, source_fp, recipe_fp, hw_fps, torch_threads)
                if attrs["stage"] == "simpart":  # no part is needed when the merged simulation is cached
                    if cache.get("sim", key.rsplit("-part", 1)[0]) is not None:
                        results[node] = {"ok": True, "result": None, "cached": True, "key": key}
                        continue
                    hit = None
                else:
                    hit = cache.get(attrs["stage"], key)
                if hit is not None:
                    results[node] = {"ok": True, "result": hit, "cached": True, "key": key}
                    counts["cached"] += 1
                else:
                    todo.append((node, key, task))
            unique = list({key: task for _, key, task in todo}.items())  # one run per key
            stage_of = {key: g.nodes[node]["stage"] for node, key, _ in todo}
            done: dict[str, dict] = {}
            for n, (i, res) in enumerate(ex.imap(run_task, [t for _, t in unique]), 1):
                key = unique[i][0]
                done[key] = res
                counts["computed" if res["ok"] else "failed"] += 1
                if res["ok"] and stage_of[key] != "simpart":
                    cache.put(stage_of[key], key, res["result"])  # now: an interrupted sweep keeps it
                state = "ok" if res["ok"] else f"failed: {res['error']}"
                node = next(nd for nd, k, _ in todo if k == key)
                say(f"{n}/{len(unique)} {':'.join(map(str, node))} {res.get('stage_s', 0):.1f} s {state}")
            for node, key, _ in todo:
                results[node] = {**done[key], "key": key, "cached": False}
            for node in generation:  # layer-split simulations: merge the parts, exactly
                if node not in results:
                    results[node] = _merge(spec, g, node, results, cache, hw_fps, counts)
    finally:
        ex.close()
    wall_s = time.perf_counter() - t0
    rows = table.build_rows(spec, grid, g, results)
    table.mark_fronts(rows)
    rec = table.recommend(rows, spec.recommend.ppl_tolerance)
    summary = {
        "spec": spec.model_dump(),
        "executor": executor,
        "workers": workers,
        "wall_s": wall_s,
        "nodes": g.number_of_nodes(),
        "model_points": len(grid.model_points),
        "hw_points": len(grid.hw_points),
        **counts,
        "rows": len(rows),
        "rows_failed": sum(r["status"] != "ok" for r in rows),
        "recommendation": rec,
    }
    files = table.write_outputs(out, rows, summary, force=force)
    if plots:
        from codesign.sweep.plots import write_plots

        files += write_plots(rows, out / "plots", force=force)
    return SweepResult(rows, summary, rec, [str(f) for f in files])


def _task(spec, g, node, results, cache, source_fp, recipe_fp, hw_fps, torch_threads):
    attrs = g.nodes[node]
    mp = attrs["point"]
    stage = attrs["stage"]
    if stage == "finetune":
        key = finetune_key(spec, mp, recipe_fp)
        return key, {"stage": "finetune", "recipe": spec.accuracy.finetune_recipe, "bank_size": mp.bank_size,
                     "k": mp.k, "steps": mp.finetune_steps, "seed": spec.seed, "torch_threads": torch_threads,
                     "run_dir": str(cache.artifact("runs", key))}  # fmt: skip
    if stage == "eval":
        ft = ("finetune", mp.id)
        ft_key = results[ft]["key"] if ft in results else None
        key = eval_key(spec, mp, source_fp, ft_key)
        return key, {"stage": "eval", "source": {"kind": spec.model.kind, "path": spec.model.path},
                     "seed": spec.seed, "run_dir": results[ft]["result"]["run_dir"] if ft_key else None,
                     "mode": mp.mode, "bank_size": mp.bank_size, "k": mp.k, "eval": spec.eval.model_dump(),
                     "trace": str(cache.artifact("traces", key, ".zarr")), "torch_threads": torch_threads}  # fmt: skip
    hp = attrs["hw"]
    ev = results[("eval", mp.id)]["result"]
    key = sim_key(spec, mp, hp, ev["trace_sha"], _hw(hw_fps, hp, mp))
    task = {"stage": "sim", "hw": hp.config, "overrides": list(hp.overrides), "bank_size": mp.bank_size,
            "k": mp.sim_k, "batch": hp.batch, "trace": ev["trace"], "phase": spec.simulate.phase,
            "work_dir": str(cache.root)}  # fmt: skip
    if stage == "simpart":
        from codesign.jobs.simulate import layer_ranges
        from codesign.trace.store import TraceReader

        ranges = layer_ranges(TraceReader(ev["trace"]).meta.layers, spec.simulate.split_layers)
        task["layers"] = list(ranges[attrs["part"]])
        key = f"{key}-part{attrs['part']}"
    return key, task


def _hw(memo: dict, hp, mp) -> str:
    k = (hp, mp.bank_size, mp.sim_k)
    if k not in memo:
        memo[k] = hw_digest(hp, mp.bank_size, mp.sim_k)
    return memo[k]


def _merge(spec, g, node, results, cache, hw_fps, counts) -> dict:
    from codesign.jobs.simulate import merge_layer_parts, metrics

    attrs = g.nodes[node]
    mp, hp = attrs["point"], attrs["hw"]
    key = sim_key(spec, mp, hp, results[("eval", mp.id)]["result"]["trace_sha"], _hw(hw_fps, hp, mp))
    hit = cache.get("sim", key)
    if hit is not None:
        counts["cached"] += 1
        return {"ok": True, "result": hit, "cached": True, "key": key}
    parts = sorted(g.predecessors(node), key=lambda p: p[-1])
    try:
        merged = metrics(*merge_layer_parts([results[p]["result"]["parts"] for p in parts]))
    except Exception as exc:  # noqa: BLE001 - a point's failure is a row, not a crash
        counts["failed"] += 1
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "key": key}
    merged["layer_parts"] = len(parts)
    cache.put("sim", key, merged)
    counts["computed"] += 1
    return {"ok": True, "result": merged, "cached": False, "key": key,
            "stage_s": sum(results[p].get("stage_s", 0.0) for p in parts)}  # fmt: skip
