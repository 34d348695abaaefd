"""The sweep's tidy table (a row per model point × hardware point), its fronts and the recommendation."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from codesign.atomic import write_text_atomic
from codesign.sweep.pareto import front

REFERENCE = ("bank_topk", 64, 16)  # the method's 16/64, highlighted everywhere
EVAL_COLUMNS = ("ppl", "nll_mean", "recall_mean", "recall_min", "kept_density_mean", "eval_tokens",
                "trace_tokens", "decode_tokens", "threshold_calibration_tokens")  # fmt: skip
SIM_COLUMNS = ("sim_scope", "sim_tokens", "sim_steps", "cycles", "time_s", "tokens_per_s", "dram_read_bytes",
               "dram_read_bytes_per_token", "sram_read_bytes_per_token", "energy_pj", "energy_per_token_pj",
               "sram_hit_rate", "union_density", "bank_imbalance", "sram_area_mm2", "sram_capacity_bytes",
               "dense_tokens_per_s", "dense_energy_per_token_pj", "speedup_vs_dense", "ffn_tokens_per_s",
               "ffn_speedup_vs_dense", "energy_per_token_ratio_vs_dense", "dram_bytes_ratio_vs_dense")  # fmt: skip


def build_rows(spec, grid, g, results) -> list[dict]:
    knob_names = list(spec.hardware.set)
    rows = []
    for mp in grid.model_points:
        ev = results.get(("eval", mp.id), {"ok": False, "error": "not run"})
        ft = results.get(("finetune", mp.id))
        for hp in grid.hw_points:
            sim = results.get(("sim", mp.id, hp.id), {"ok": False, "error": "not run"})
            row = {
                "point": mp.id, "mode": mp.mode, "bank_size": mp.bank_size, "k": mp.k,
                "density": mp.k / mp.bank_size, "finetune_steps": mp.finetune_steps,
                "hw_point": hp.id, "hw_name": hp.name, "hw_config": hp.config, "batch": hp.batch,
                **{f"knob.{n}": hp.knobs.get(n) for n in knob_names},
            }  # fmt: skip
            bad = next((r for r in (ft, ev, sim) if r is not None and not r["ok"]), None)
            row["status"] = "ok" if bad is None else "failed"
            row["error"] = "" if bad is None else bad["error"]
            evr = ev.get("result") or {} if ev["ok"] else {}
            simr = sim.get("result") or {} if sim["ok"] else {}
            row.update({c: evr.get(c) for c in EVAL_COLUMNS})
            row.update({c: simr.get(c) for c in SIM_COLUMNS})
            row["eval_s"] = (evr.get("ppl_s") or 0.0) + (evr.get("generate_s") or 0.0) if evr else None
            row["finetune_s"] = (ft or {}).get("result", {}).get("finetune_s") if ft and ft["ok"] else None
            row["sim_s"] = sim.get("stage_s") if sim["ok"] else None
            row["eval_cached"] = bool(ev.get("cached"))
            row["sim_cached"] = bool(sim.get("cached"))
            rows.append(row)
    return rows


def mark_fronts(rows: list[dict]) -> None:
    """Per hardware point: `pareto_tokens_per_s` (ppl vs tokens/s) and `pareto_energy` (ppl vs energy/token)."""
    for r in rows:
        r["pareto_tokens_per_s"] = r["pareto_energy"] = False
    for hw in dict.fromkeys(r["hw_point"] for r in rows):
        ok = [r for r in rows if r["hw_point"] == hw and r["status"] == "ok"]
        for col, flag, maximize in (("tokens_per_s", "pareto_tokens_per_s", True),
                                    ("energy_per_token_pj", "pareto_energy", False)):  # fmt: skip
            for i in front([(r[col], r["ppl"]) for r in ok], maximize_x=maximize):
                ok[i][flag] = True


def _is_reference(r) -> bool:
    return (r["mode"], r["bank_size"], r["k"]) == REFERENCE


def _short(r) -> str:
    if r["mode"] == "dense":
        return "dense"
    name = f"{r['k']}/{r['bank_size']}"
    return name if r["mode"] == "bank_topk" else f"{r['mode']} {name}"


def recommend(rows: list[dict], ppl_tolerance: float) -> list[str]:
    """One line per hardware point: the front, where 16/64 sits, and the fastest point within tolerance."""
    lines = []
    for hw in dict.fromkeys(r["hw_point"] for r in rows):
        ok = [r for r in rows if r["hw_point"] == hw and r["status"] == "ok"]
        if not ok:
            lines.append(f"{hw}: every point failed")
            continue
        fr = sorted((r for r in ok if r["pareto_tokens_per_s"]), key=lambda r: -r["tokens_per_s"])
        desc = ", ".join(f"{_short(r)} (ppl {r['ppl']:.2f}, {r['tokens_per_s']:.0f} tok/s)" for r in fr)
        line = f"{hw}: front (ppl vs tokens/s): {desc}."
        ref = next((r for r in ok if _is_reference(r)), None)
        if ref is not None:
            where = "on" if ref["pareto_tokens_per_s"] else "off"
            line += f" 16/64 is {where} the front (ppl {ref['ppl']:.2f}, {ref['tokens_per_s']:.0f} tok/s)."
        dense = next((r for r in ok if r["mode"] == "dense"), None)
        base = dense["ppl"] if dense is not None else min(r["ppl"] for r in ok)
        good = [r for r in ok if r["mode"] != "dense" and r["ppl"] <= base * (1 + ppl_tolerance)]
        if good:
            best = max(good, key=lambda r: r["tokens_per_s"])
            vs = f", {best['tokens_per_s'] / ref['tokens_per_s']:.2f}× the tokens/s of 16/64" if ref else ""
            line += (
                f" Within {ppl_tolerance:.0%} of {'dense' if dense else 'the best'} ppl ({base:.2f}): "
                f"{_short(best)} is fastest (ppl {best['ppl']:.2f}, {best['tokens_per_s']:.0f} tok/s{vs})."
            )
        else:
            line += f" No sparse point is within {ppl_tolerance:.0%} of ppl {base:.2f}."
        lines.append(line)
    return lines


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def write_outputs(out: Path, rows: list[dict], summary: dict, *, force: bool) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    fronts = {}
    for hw in dict.fromkeys(r["hw_point"] for r in rows):
        fronts[hw] = {
            "ppl_vs_tokens_per_s": [
                r["point"] for r in rows if r["hw_point"] == hw and r["pareto_tokens_per_s"]
            ],
            "ppl_vs_energy_per_token_pj": [
                r["point"] for r in rows if r["hw_point"] == hw and r["pareto_energy"]
            ],
        }
    files = [
        write_text_atomic(out / "sweep.csv", csv_text(rows), force=force),
        write_text_atomic(out / "sweep.json", json.dumps({"columns": list(rows[0]) if rows else [], "rows": rows}, indent=1), force=force),
        write_text_atomic(out / "pareto.json", json.dumps(fronts, indent=1), force=force),
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=1, default=str), force=force),
    ]  # fmt: skip
    return files
