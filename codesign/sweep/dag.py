"""The sweep as a DAG of stages (networkx): model point → (fine-tune) → eval + trace → simulate per hardware
point (→ layer-range parts merged, when the spec splits them). Nodes are tuples naming the stage and points;
node attributes hold the ModelPoint / HwPoint. Cache keys are made when a node's inputs are known."""

from __future__ import annotations

import networkx as nx

from codesign.sweep.cache import code_version, digest
from codesign.sweep.grid import Grid, HwPoint, ModelPoint
from codesign.sweep.spec import SweepSpec


def build_dag(spec: SweepSpec, grid: Grid) -> nx.DiGraph:
    g = nx.DiGraph()
    parts = spec.simulate.split_layers
    for mp in grid.model_points:
        ev = ("eval", mp.id)
        g.add_node(ev, stage="eval", point=mp)
        if mp.finetune_steps and mp.mode == "bank_topk":
            ft = ("finetune", mp.id)
            g.add_node(ft, stage="finetune", point=mp)
            g.add_edge(ft, ev)
        for hp in grid.hw_points:
            sim = ("sim", mp.id, hp.id)
            g.add_node(sim, stage="sim", point=mp, hw=hp)
            if parts == 1:
                g.add_edge(ev, sim)
                continue
            for i in range(parts):
                part = ("simpart", mp.id, hp.id, i)
                g.add_node(part, stage="simpart", point=mp, hw=hp, part=i)
                g.add_edge(ev, part)
                g.add_edge(part, sim)
    assert nx.is_directed_acyclic_graph(g)
    return g


def finetune_key(spec: SweepSpec, mp: ModelPoint, recipe_fp: str) -> str:
    return digest(
        ["finetune", code_version("finetune"), recipe_fp, mp.bank_size, mp.k, mp.finetune_steps, spec.seed]
    )


def eval_key(spec: SweepSpec, mp: ModelPoint, source_fp: str, finetune: str | None) -> str:
    base = {"finetune": finetune} if finetune else {"source": source_fp}
    return digest(
        ["eval", code_version("eval"), base, mp.mode, mp.bank_size, mp.k, spec.eval.model_dump(), spec.seed]
    )


def sim_key(spec: SweepSpec, mp: ModelPoint, hp: HwPoint, trace_sha: str, hw_resolved: str) -> str:
    # Everything the simulation reads: the trace's content, the fully resolved hardware (so two spellings of
    # one machine are one key), (B, k) and batch. Not the point names: two points with one trace and one
    # hardware simulate once.
    return digest(["sim", code_version("sim"), trace_sha, hw_resolved, mp.bank_size, mp.sim_k, hp.batch,
                   spec.simulate.phase])  # fmt: skip


def hw_digest(hp: HwPoint, bank_size: int, k: int) -> str:
    """Digest of the resolved hwconfig of a hardware point at (B, k), without the file it came from."""
    from codesign.jobs.simulate import hw_config

    resolved = hw_config(hp.config, list(hp.overrides), bank_size, k).resolved()
    resolved.pop("source", None)
    return digest(resolved)
