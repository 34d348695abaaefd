"""PNG plots of a simulator report (matplotlib, Agg backend): time bound by each resource, bank load, DRAM per layer.

Each plot's title carries the report's label ("synthetic" when the trace is synthetic). Existing files are
refused unless `force`; each PNG is written to a temporary name and renamed into place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codesign.atomic import atomic_path
from codesign.errors import OutputExistsError

PLOT_FILES = ("bottleneck.png", "bank_load.png", "dram_per_layer.png")
BOUND_KEYS = (("dram_cycles", "DRAM"), ("sram_port_cycles", "SRAM ports"), ("compute_cycles", "compute"),
              ("vector_cycles", "vector lanes (top-k, norms, softmax)"))  # fmt: skip


def _title(report: dict, text: str) -> str:
    text = f"{text} — scope: {report['scope']}"
    return f"{text} [{report['label']}]" if report["label"] else text


def _variants(report: dict) -> list[tuple[str, dict]]:
    out = [("bank top-k", report), ("dense", report["dense_baseline"])]
    if report.get("global_topk"):
        out.append(("global top-k", report["global_topk"]))
    return out


def _save(fig, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")


def write_plots(report: dict, directory, force: bool = False) -> list[Path]:
    """Write the three PNGs under `directory`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = Path(directory)
    paths = [d / name for name in PLOT_FILES]
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise OutputExistsError(existing[0])
    d.mkdir(parents=True, exist_ok=True)

    # 1. time bound by each resource per variant (stacked, ms): each layer-step to its critical path's owner
    fig, ax = plt.subplots(figsize=(6, 4))
    variants = _variants(report)
    freq = report["hwconfig"]["clock"]["frequency_hz"]
    bottom = np.zeros(len(variants))
    for key, label in BOUND_KEYS:
        ms = np.array([v["bound_by"][key] / freq * 1e3 for _, v in variants])
        ax.bar([name for name, _ in variants], ms, bottom=bottom, label=label)
        bottom += ms
    ax.set_ylabel("time (ms)")
    ax.legend()
    ax.set_title(_title(report, f"Time bound by each resource, batch {report['batch']}"))
    _save(fig, paths[0])
    plt.close(fig)

    # 2. per model bank load (channels read) per layer
    load = np.array(report["bank_load_channels"], dtype=float)  # (L, nb)
    fig, ax = plt.subplots(figsize=(max(6, load.shape[1] * 0.12 + 2), max(3, load.shape[0] * 0.15 + 1)))
    im = ax.imshow(load, aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="channel bundles read")
    ax.set_xlabel(f"model bank ({report['model']['bank_mapping']})")
    ax.set_ylabel("layer")
    ax.set_title(_title(report, "Per-bank load"))
    _save(fig, paths[1])
    plt.close(fig)

    # 3. DRAM traffic per layer, sparse vs dense
    fig, ax = plt.subplots(figsize=(7, 4))
    layers = np.arange(len(report["per_layer"]))
    sparse = np.array([r["dram_read_bytes"] for r in report["per_layer"]]) / 2**20
    dense = np.array([r["dram_read_bytes"] for r in report["dense_baseline_per_layer"]]) / 2**20
    ax.bar(layers - 0.2, dense, width=0.4, label="dense")
    ax.bar(layers + 0.2, sparse, width=0.4, label="bank top-k")
    ax.set_xlabel("layer")
    ax.set_ylabel("DRAM read (MiB)")
    ax.legend()
    ax.set_title(_title(report, "DRAM traffic per layer"))
    _save(fig, paths[2])
    plt.close(fig)
    return paths
