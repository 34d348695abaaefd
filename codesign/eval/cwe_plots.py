"""PNG figures for CWE: score vs context length with intervals, and the layer × length diagnosis heatmaps."""

from __future__ import annotations

import os
from pathlib import Path

from codesign.atomic import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def plot_scores(result: dict, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Mean generated score (and/or proxy log-likelihood) vs length, one line per variant, 95 % intervals."""
    plt = _plt()
    scores = result["scores"]
    has_gen = any("mean" in row for v in scores.values() for row in v.values())
    has_proxy = any("loglik_mean" in row for v in scores.values() for row in v.values())
    panels = [k for k, on in (("mean", has_gen), ("loglik_mean", has_proxy)) if on]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        ci = "ci95" if key == "mean" else "loglik_ci95"
        for name, rows in scores.items():
            lengths = sorted(rows, key=int)
            x = [int(L) for L in lengths]
            y = [rows[L][key] for L in lengths]
            lo = [rows[L][key] - rows[L][ci][0] for L in lengths]
            hi = [rows[L][ci][1] - rows[L][key] for L in lengths]
            ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel(
            "CWE score (generated, %)" if key == "mean" else "answer log-likelihood / token (proxy)"
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    s = result["setting"]
    fig.suptitle(
        f"RULER-CWE '{s['name']}' ({s['num_cw']} common words), {result['model']}, "
        f"{result['samples_per_length']} samples/length, 95 % bootstrap CI",
        fontsize=9,
    )
    fig.tight_layout()
    return _save(fig, plt, path, force)


def plot_diagnosis(result: dict, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Heatmaps layer × length: ablation gain, recall vs oracle, local FFN error."""
    import numpy as np

    plt = _plt()
    d = result["diagnosis"]
    panels = [
        ("kl_gain", "KL to dense removed when dense", "viridis"),
        ("recall", "recall vs dense oracle", "magma"),
        ("local_error", "local FFN relative error", "viridis"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 6))
    for ax, (key, title, cmap) in zip(axes, panels, strict=True):
        m = np.array([[np.nan if v is None else v for v in row] for row in d[key]], dtype=float)
        im = ax.imshow(m, aspect="auto", cmap=cmap, origin="lower")
        ax.set_xticks(range(len(d["lengths"])), [str(L) for L in d["lengths"]], rotation=45)
        ax.set_xlabel("context length")
        ax.set_ylabel("layer")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    culprit = d["culprit"]
    fig.suptitle(f"diagnosis of {result['model']}: ranked first = layer {culprit}", fontsize=10)
    fig.tight_layout()
    return _save(fig, plt, path, force)


def _save(fig, plt, path, force: bool) -> Path:
    path = Path(path)
    try:
        with atomic_path(path, force=force, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
    return path
