"""PNG plots of a sweep: perplexity against tokens/s and against energy/token, one panel per hardware point,
the Pareto front drawn as a line, the method's 16/64 starred and the reference points marked."""

from __future__ import annotations

import math
from pathlib import Path

from codesign.atomic import atomic_path
from codesign.errors import OutputExistsError
from codesign.sweep.table import REFERENCE

PLOTS = {
    "sweep_ppl_vs_tokens_per_s.png": ("tokens_per_s", "pareto_tokens_per_s", "decode tokens/s (simulated)"),
    "sweep_ppl_vs_energy_per_token.png": (
        "energy_per_token_pj",
        "pareto_energy",
        "energy per token (pJ, estimated)",
    ),
}
REF_MARKERS = {"dense": ("X", "black"), "global_topk": ("^", "tab:red"), "threshold": ("s", "tab:purple")}


def write_plots(rows: list[dict], directory: str | Path, *, force: bool = False) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = Path(directory)
    targets = [d / name for name in PLOTS]
    for t in targets:
        if t.exists() and not force:
            raise OutputExistsError(t)
    d.mkdir(parents=True, exist_ok=True)
    hws = list(dict.fromkeys(r["hw_point"] for r in rows))
    cols = min(len(hws), 2 if len(hws) <= 4 else 3)
    nrows = math.ceil(len(hws) / cols)
    sizes = sorted({r["bank_size"] for r in rows if r["mode"] == "bank_topk"})
    cmap = plt.get_cmap("viridis", max(2, len(sizes)))
    color = {b: cmap(i) for i, b in enumerate(sizes)}
    for target, (col, flag, label) in zip(targets, PLOTS.values(), strict=True):
        fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 4.0 * nrows), squeeze=False)
        for ax, hw in zip(axes.flat, hws, strict=False):
            ok = [r for r in rows if r["hw_point"] == hw and r["status"] == "ok" and r[col] is not None]
            for b in sizes:
                pts = [r for r in ok if r["mode"] == "bank_topk" and r["bank_size"] == b]
                ax.scatter([r[col] for r in pts], [r["ppl"] for r in pts], s=[18 + 60 * r["density"] for r in pts],
                           color=color[b], label=f"B={b}", alpha=0.85, zorder=3)  # fmt: skip
            for mode, (marker, c) in REF_MARKERS.items():
                pts = [r for r in ok if r["mode"] == mode]
                if pts:
                    ax.scatter([r[col] for r in pts], [r["ppl"] for r in pts], marker=marker, color=c, s=70,
                               label=mode, zorder=4)  # fmt: skip
            fr = sorted((r for r in ok if r[flag]), key=lambda r: r[col])
            if fr:
                ax.plot([r[col] for r in fr], [r["ppl"] for r in fr], "--", color="tab:orange", lw=1.2,
                        label="Pareto front", zorder=2)  # fmt: skip
            ref = [r for r in ok if (r["mode"], r["bank_size"], r["k"]) == REFERENCE]
            for r in ref:
                ax.scatter([r[col]], [r["ppl"]], marker="*", s=260, facecolor="none", edgecolor="red", lw=1.5,
                           zorder=5, label="16/64")  # fmt: skip
                ax.annotate(
                    "16/64", (r[col], r["ppl"]), textcoords="offset points", xytext=(6, 6), color="red"
                )
            for r in fr:
                if r["mode"] == "bank_topk" and (r["mode"], r["bank_size"], r["k"]) != REFERENCE:
                    ax.annotate(f"{r['k']}/{r['bank_size']}", (r[col], r["ppl"]), textcoords="offset points",
                                xytext=(4, -10), fontsize=7, color="tab:orange")  # fmt: skip
            if not ok:
                ax.text(0.5, 0.5, "no successful point", ha="center", va="center", transform=ax.transAxes)
            else:
                ax.set_yscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel("validation perplexity")
            ax.set_title(hw, fontsize=9)
            ax.grid(alpha=0.3, which="both")
        for ax in list(axes.flat)[len(hws) :]:
            ax.axis("off")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(8, len(labels)), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        with atomic_path(target, force=True, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
    return targets
