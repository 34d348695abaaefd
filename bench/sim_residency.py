"""Residency policies on bank64: what each earns in hit rate and FFN DRAM bytes, at the shipped SRAM and over
SRAM capacity.

Replays the default trace (recorded from the trained SmolLM2-135M: 2,176 tokens, 32 prompts decoded together)
on hwconfigs/bank64.yaml through the library path of `codesign simulate`, with `sram.residency` set to none,
lru, lfu and pinned_hot (profiled on the other half of the trace than the one replayed), side by side:
  (a) at the shipped SRAM (64 banks × 256 KB) at batch 1 and batch 16;
  (b) over SRAM capacity at batch 1: `sram.bank_size_bytes` from 16 KB to 4 MB per bank (total 1–256 MB;
      the FFN weights are 152 MiB, so the last point could hold them 1.7 times over).
Per point: hit rate and FFN DRAM bytes (report totals `hit_rate`, `dram_ffn_bytes` — the FFN weight traffic,
which attention / KV traffic added elsewhere in the simulator does not change), and as secondary figures
cycles and energy per token (these do include whatever else the simulator models).
Also (c): the shipped points again with `sram.placement=modulo`, where model bank j of every layer lives in
SRAM bank j mod 64, so SmolLM2's 24 model banks per layer fill 24 of the 64 banks (6.2 MB of 16 MiB); under
the default `stripe` residency partition (l·24 + j) mod 64 spreads them over all 64.
Every point simulates the whole trace, prefill included; `sram.macros_per_bank` stays 4, so a bigger bank
also has bigger (CACTI-costed) macros. Writes bench/results/sim_residency.json and .png.

    python bench/sim_residency.py [--hw hwconfigs/bank64.yaml] [--trace PATH] [--out bench/results/sim_residency.json]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result  # noqa: E402

POLICIES = ("none", "lru", "lfu", "pinned_hot")
KIB = 1024
BANK_SIZES_BYTES = (16 * KIB, 64 * KIB, 256 * KIB, 1024 * KIB, 2048 * KIB, 4096 * KIB)  # per SRAM bank
BATCHES = (1, 16)
CURVE_BATCH = 1
RESULTS = Path(__file__).resolve().parent / "results"


def git_state() -> dict:
    """The commit the numbers were measured on, and whether the simulator's files differed from it."""
    root = Path(__file__).resolve().parent.parent
    run = lambda *a: subprocess.run(["git", *a], cwd=root, capture_output=True, text=True).stdout.strip()  # noqa: E731
    return {
        "commit": run("rev-parse", "HEAD"),
        "uncommitted_sim_files": run("status", "--short", "codesign/sim", "codesign/trace").splitlines(),
    }


def measure(hw: str, trace, policy: str, batch: int, overrides: list[str]) -> dict:
    """One simulate run (sparse variant's totals) → the figures this benchmark compares."""
    from codesign.sim.config import load_hwconfig
    from codesign.sim.report import build_report
    from codesign.sim.simulation import simulate

    sets = [f"sram.residency={policy}", *overrides]
    cfg = load_hwconfig(hw, sets)
    t0 = time.perf_counter()
    report = build_report(simulate(cfg, trace, batch=batch))
    t = report["totals"]
    tokens = t["tokens"]
    return {
        "policy": policy,
        "batch": batch,
        "overrides": sets,
        "sram_total_bytes": cfg.sram.num_banks * cfg.sram.bank_size_bytes,
        "bank_size_bytes": cfg.sram.bank_size_bytes,
        "hit_rate": t["hit_rate"],
        "dram_ffn_bytes": t["dram_ffn_bytes"],
        "dram_ffn_bytes_per_token": t["dram_ffn_bytes"] / tokens,
        "miss_channels": t["miss_channels"],
        "union_channels": t["union_channels"],
        "cycles": t["cycles"],
        "cycles_per_token": t["cycles"] / tokens,
        "energy_per_token_pj": t["energy_per_token_pj"],
        "tokens": tokens,
        "steps": t["steps"],
        "scope": report.get("scope"),
        "wall_s": time.perf_counter() - t0,
    }


def plot(curve: list[dict], shipped_total_bytes: int, ffn_bytes: int, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mib = 1 << 20
    fig, (ax_hit, ax_bytes) = plt.subplots(1, 2, figsize=(11, 4.2))
    for policy, marker in zip(POLICIES, "osD^", strict=True):
        rows = sorted((r for r in curve if r["policy"] == policy), key=lambda r: r["sram_total_bytes"])
        x = [r["sram_total_bytes"] / mib for r in rows]
        ax_hit.plot(x, [100 * r["hit_rate"] for r in rows], marker=marker, label=policy)
        ax_bytes.plot(x, [r["dram_ffn_bytes_per_token"] / mib for r in rows], marker=marker, label=policy)
    sizes = sorted({r["sram_total_bytes"] for r in curve})
    labels = [f"{s / mib:g}\n{s / ffn_bytes:.0%}" for s in sizes]  # MiB, and the share of FFN weights
    for ax in (ax_hit, ax_bytes):
        ax.set_xscale("log", base=2)
        ax.set_xticks([s / mib for s in sizes], labels, fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("total SRAM = banks × bank size, MiB (share of FFN weight bytes)", fontsize=9)
        ax.axvline(shipped_total_bytes / mib, color="grey", ls="--", lw=1)
        ax.axvline(ffn_bytes / mib, color="grey", ls=":", lw=1)
        ax.grid(True, alpha=0.3)
    top = ax_hit.get_ylim()[1]
    ax_hit.text(shipped_total_bytes / mib, top * 0.97, " bank64 (shipped)", fontsize=8, va="top")
    ax_hit.text(ffn_bytes / mib, top * 0.88, " all FFN weights", fontsize=8, va="top")
    ax_hit.set_ylabel("hit rate (%)")
    ax_bytes.set_ylabel("FFN DRAM MiB per token")
    ax_bytes.set_yscale("log")
    ax_hit.legend(title="sram.residency")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)  # atomic: a killed run never leaves half a PNG


def main() -> None:
    from tqdm import tqdm

    from codesign.sim.config import load_hwconfig
    from codesign.trace import default_trace_path
    from codesign.trace.store import TraceReader

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", default="hwconfigs/bank64.yaml")
    ap.add_argument("--trace", default=None, help="trace store (default: the embedded default trace)")
    ap.add_argument("--out", default=str(RESULTS / "sim_residency.json"))
    args = ap.parse_args()
    trace = Path(args.trace) if args.trace else default_trace_path()
    reader = TraceReader(trace)
    meta = reader.meta
    cfg = load_hwconfig(args.hw)
    fit = cfg.check_model(meta.hidden, meta.intermediate, meta.layers)
    shipped = cfg.sram.bank_size_bytes
    model_banks = meta.intermediate // cfg.sparsity.bank_size
    modulo_banks = min(cfg.sram.num_banks, model_banks)  # banks with bundles under modulo (j mod N)
    kept = ("lru", "lfu", "pinned_hot")  # `none` keeps nothing: placement cannot change its bytes

    plan = [(p, b, shipped, []) for b in BATCHES for p in POLICIES]  # (a) shipped SRAM
    plan += [(p, CURVE_BATCH, s, [f"sram.bank_size_bytes={s}"]) for s in BANK_SIZES_BYTES for p in POLICIES]
    plan += [(p, b, shipped, ["sram.placement=modulo"]) for b in BATCHES for p in kept]  # (c)
    done: dict[tuple, dict] = {}
    t0 = time.perf_counter()
    with tqdm(total=len(plan), desc="sim_residency", unit="run", file=sys.stderr) as bar:
        for policy, batch, size, overrides in plan:
            bar.set_postfix_str(f"{policy} b{batch} {size // KIB} KB/bank {' '.join(overrides)}")
            key = (policy, batch, size, tuple(o for o in overrides if "placement" in o))
            if key not in done:  # the shipped batch-1 point is also a point of the curve
                done[key] = measure(args.hw, trace, policy, batch, overrides)
            bar.update()
    at = lambda p, b, s, nb=(): done[(p, b, s, nb)]  # noqa: E731
    shipped_rows = {f"b{b}": {p: at(p, b, shipped) for p in POLICIES} for b in BATCHES}
    for rows in shipped_rows.values():
        for r in rows.values():
            r["dram_ffn_bytes_vs_none"] = r["dram_ffn_bytes"] / rows["none"]["dram_ffn_bytes"]
    curve = [at(p, CURVE_BATCH, s) for s in BANK_SIZES_BYTES for p in POLICIES]
    for r in curve:
        r["ffn_fraction_fits"] = r["sram_total_bytes"] / fit.ffn_bytes_total
        r["bundles_per_sram_bank"] = r["bank_size_bytes"] // fit.bundle_bytes
    modulo_key = ("sram.placement=modulo",)
    placement_rows = {
        f"b{b}": {
            p: {
                "hit_rate_stripe": at(p, b, shipped)["hit_rate"],
                "hit_rate_modulo": at(p, b, shipped, modulo_key)["hit_rate"],
                "dram_ffn_bytes_per_token_stripe": at(p, b, shipped)["dram_ffn_bytes_per_token"],
                "dram_ffn_bytes_per_token_modulo": at(p, b, shipped, modulo_key)["dram_ffn_bytes_per_token"],
            }
            for p in kept
        }
        for b in BATCHES
    }
    chunk = reader.read(0, reader.num_tokens, with_logits=False)
    decode_tokens = int(chunk.is_decode.sum())
    result = {
        "what": "residency policies none / lru / lfu / pinned_hot on bank64: hit rate and FFN DRAM bytes at the "
        "shipped SRAM (batch 1, 16) and over SRAM capacity (batch 1)",
        "hwconfig": args.hw,
        "trace": {
            "path": trace.name,
            "source": meta.source,
            "synthetic": meta.synthetic,
            "tokens": reader.num_tokens,
            "prefill_tokens": reader.num_tokens - decode_tokens,
            "decode_tokens": decode_tokens,
            "limited": False,
            "note": "every point replays the whole trace (prefill included); per-token figures divide by all "
            "tokens. pinned_hot replays each half with the set profiled on the other half",
        },
        "model": {
            "name": meta.model_name,
            "ffn_bytes_total": fit.ffn_bytes_total,
            "bundle_bytes": fit.bundle_bytes,
            "model_banks_per_layer": model_banks,
            "layers": meta.layers,
        },
        "shipped": {
            "bank_size_bytes": shipped,
            "sram_total_bytes": cfg.sram_capacity_bytes,
            "ffn_fraction_fits": cfg.sram_capacity_bytes / fit.ffn_bytes_total,
            "rows": shipped_rows,
        },
        "curve": {"batch": CURVE_BATCH, "bank_sizes_bytes": list(BANK_SIZES_BYTES), "rows": curve},
        "placement_check": {
            "what": f"the shipped runs under sram.placement=modulo (residency partition j mod "
            f"{cfg.sram.num_banks}: {modulo_banks} of {cfg.sram.num_banks} banks hold bundles) beside the default "
            f"stripe (partition (l·{model_banks} + j) mod {cfg.sram.num_banks}: all banks)",
            "sram_banks_holding_bundles": {"stripe": cfg.sram.num_banks, "modulo": modulo_banks},
            "rows": placement_rows,
        },
        "secondary_figures_note": "cycles and energy per token include everything the simulator models at this "
        "commit (they move when attention / KV traffic is added); hit_rate and dram_ffn_bytes do not",
        "git": git_state(),
        "wall_s": time.perf_counter() - t0,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_result(args.out, result)
    png = Path(args.out).with_suffix(".png")
    title = (f"{meta.model_name} ({meta.source}, {reader.num_tokens} tokens) on {Path(args.hw).stem}, "
             f"batch {CURVE_BATCH}: residency vs SRAM capacity")  # fmt: skip
    plot(curve, cfg.sram_capacity_bytes, fit.ffn_bytes_total, title, png)
    print(f"{'':10} {'policy':>10} {'hit rate':>9} {'FFN DRAM MB/tok':>15} {'vs none':>8} {'Mcycles/tok':>11} "
          f"{'µJ/tok':>8}")  # fmt: skip
    for name, rows in shipped_rows.items():
        for p, r in rows.items():
            print(f"{'shipped ' + name:10} {p:>10} {r['hit_rate']:9.1%} {r['dram_ffn_bytes_per_token'] / 1e6:15.2f} "
                  f"{r['dram_ffn_bytes_vs_none']:8.3f} {r['cycles_per_token'] / 1e6:11.4f} "
                  f"{r['energy_per_token_pj'] / 1e6:8.1f}")  # fmt: skip
    for r in curve:
        print(f"{r['sram_total_bytes'] >> 20:5d} MiB  {r['policy']:>10} {r['hit_rate']:9.1%} "
              f"{r['dram_ffn_bytes_per_token'] / 1e6:15.2f}  (fits {r['ffn_fraction_fits']:.1%} of FFN)")  # fmt: skip
    for name, rows in placement_rows.items():
        for p, r in rows.items():
            print(f"placement {name:4} {p:>10}: hit rate stripe {r['hit_rate_stripe']:.1%} / modulo "
                  f"{r['hit_rate_modulo']:.1%}, FFN DRAM MB/tok {r['dram_ffn_bytes_per_token_stripe'] / 1e6:.2f} / "
                  f"{r['dram_ffn_bytes_per_token_modulo'] / 1e6:.2f}")  # fmt: skip
    print(f"wrote {args.out} and {png} in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
