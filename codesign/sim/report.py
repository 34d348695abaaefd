"""The simulator report: totals, bottlenecks (cycles bound by each resource, busy and utilisation), per-layer and per-bank tables, baselines and ratios.

Every key carries its unit. Energy is derived here from the engine's integer event counts (SRAM line reads
and fill writes, DRAM bytes, MACs) and the leakage over the simulated time; the SRAM costs come from the
resolved hwconfig (CACTI-derived or stated assumptions — its `cost_sources` says which). `write_json` and
`write_csv` refuse existing outputs unless `force`, and write atomically (tmp + os.replace).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from codesign.atomic import write_text_atomic
from codesign.errors import OutputExistsError
from codesign.sim.engine import VariantResult
from codesign.sim.pipeline import COL, LAYER_COLUMNS, RESOURCES, SRAM_COLUMNS

SYNTHETIC_LABEL = "synthetic"
# What the figures cover. The simulator models the FFN part of each decoder layer only: throughput, time and
# energy exclude attention, the KV cache, QKV/O projections, embeddings and the LM head (issue 10, item 1).
SCOPE = "ffn"
SCOPE_NOTE = (
    "FFN only: predictor, top-k and the SwiGLU FFN of every layer; attention, KV cache, QKV/O projections, "
    "embeddings, LM head and norms are not simulated, so tokens_per_s and speedups are FFN figures, not "
    "whole-model ones"
)


def _energy(p, rows: np.ndarray, cycles) -> dict:
    """Energy components (pJ) of event counts `rows` ((C,) totals or (L, C) per layer) over `cycles`."""
    read = rows[..., COL["sram_read_lines"]] * p.sram_read_energy_pj
    write = rows[..., COL["sram_write_lines"]] * p.sram_write_energy_pj
    dram = rows[..., COL["dram_read_bytes"]] * 8 * p.dram_energy_pj_per_bit
    activations = (
        rows[..., COL["dram_row_misses"]] * p.dram_activation_energy_pj
    )  # a burst that needed an ACT
    macs = (rows[..., COL["ffn_macs"]] + rows[..., COL["predictor_macs"]]) * p.mac_energy_pj
    # top-k: topk_cycles_per_bank compare-exchanges per (token, model bank) of a sparse layer
    compares = (
        rows[..., COL["tokens"]] * p.num_model_banks * p.topk_cycles_per_bank
        if p.sparse
        else np.zeros_like(read)
    )
    topk = compares * p.topk_energy_pj_per_compare
    vector = rows[..., COL["ffn_macs"]] // (3 * p.hidden) * p.vector_energy_pj_per_op  # kept channel × token
    # mW × s = mJ = 1e9 pJ
    leak = p.leakage_mw_per_bank * p.num_sram_banks * (np.asarray(cycles) / p.frequency_hz) * 1e9
    return {
        "sram_read_energy_pj": read,
        "sram_write_energy_pj": write,
        "dram_energy_pj": dram,
        "dram_activation_energy_pj": activations,
        "mac_energy_pj": macs,
        "topk_energy_pj": topk,
        "vector_energy_pj": vector,
        "leakage_energy_pj": leak,
        "energy_pj": read + write + dram + activations + macs + topk + vector + leak,
    }


def variant_summary(v: VariantResult, peak_dram_bandwidth_bytes_per_s: float) -> dict:
    """totals, bottlenecks (bound_by, busy, utilisation) and energy of one variant."""
    p = v.params
    t = {name: int(v.per_layer[:, i].sum()) for i, name in enumerate(LAYER_COLUMNS)}
    cycles = t["cycles"]
    time_s = cycles / p.frequency_hz
    tokens = int(v.per_layer[0, COL["tokens"]])
    energy = {k: float(x) for k, x in _energy(p, v.per_layer.sum(axis=0), cycles).items()}
    mean_total = t["bank_total_cycles"] / p.sram_banks_used  # over the banks that hold weights
    totals = {
        "cycles": cycles,
        "time_s": time_s,
        "tokens": tokens,
        "steps": int(v.per_layer[0, COL["steps"]]),
        "tokens_per_s": tokens / time_s if time_s > 0 else 0.0,
        "dram_read_bytes": t["dram_read_bytes"],
        "dram_ffn_bytes": t["dram_ffn_bytes"],
        "dram_predictor_bytes": t["dram_predictor_bytes"],
        "dram_requests": t["dram_requests"],
        "dram_row_hits": t["dram_row_hits"],
        "dram_row_misses": t["dram_row_misses"],
        "dram_activations": t["dram_row_misses"],
        "dram_service_time_s": float(v.dram_time_ns.sum()) * 1e-9,
        "achieved_dram_bandwidth_bytes_per_s": t["dram_read_bytes"] / time_s if time_s > 0 else 0.0,
        "peak_dram_bandwidth_bytes_per_s": peak_dram_bandwidth_bytes_per_s,
        "sram_read_bytes": t["sram_read_lines"] * p.line_bytes,
        "sram_write_bytes": t["sram_write_lines"] * p.line_bytes,
        "macs": t["ffn_macs"] + t["predictor_macs"],
        "ffn_macs": t["ffn_macs"],
        "predictor_macs": t["predictor_macs"],
        "union_channels": t["union_channels"],
        "token_channels": t["token_channels"],
        "miss_channels": t["miss_channels"],
        "hit_rate": 1.0 - t["miss_channels"] / t["union_channels"] if t["union_channels"] else 0.0,
        "union_density": t["union_channels"] / (t["steps"] * p.intermediate) if t["steps"] else 0.0,
        **energy,
        "energy_per_token_pj": energy["energy_pj"] / tokens if tokens else 0.0,
        # slowest SRAM bank / mean SRAM bank − 1, over all layer-steps (0 = perfectly balanced banks)
        "bank_imbalance": t["bank_max_cycles"] / mean_total - 1.0 if mean_total else 0.0,
        "sram_imbalance_cycles": t["bank_max_cycles"] - mean_total,
    }
    bound = {f"{r}_cycles": t[f"{r}_bound_cycles"] for r in RESOURCES}
    busy = {f"{r}_cycles": t[f"{r}_busy_cycles"] for r in RESOURCES}
    utilisation = {r: (t[f"{r}_busy_cycles"] / cycles if cycles else 0.0) for r in RESOURCES}
    # the busiest SRAM bank's port utilisation above; the mean over the banks that hold weights here
    utilisation["sram_port_mean"] = mean_total / cycles if cycles else 0.0
    return {
        "totals": totals,
        # each layer-step's cycles, all to the resource owning its critical path (pipeline docstring)
        "bound_by": bound,
        "busy": busy,
        "utilisation": utilisation,
        "compute_split": {
            "predictor_cycles": t["predictor_compute_cycles"],
            "ffn_cycles": t["ffn_compute_cycles"],
        },
    }


def per_layer_rows(v: VariantResult) -> list[dict]:
    energy = _energy(v.params, v.per_layer, v.per_layer[:, COL["cycles"]])
    rows = []
    for l in range(v.params.layers):
        row = {"layer": l, **{name: int(v.per_layer[l, i]) for i, name in enumerate(LAYER_COLUMNS)}}
        row["dram_service_time_s"] = float(v.dram_time_ns[l]) * 1e-9
        row["energy_pj"] = float(energy["energy_pj"][l])
        rows.append(row)
    return rows


def per_bank_rows(v: VariantResult) -> list[dict]:
    """Per SRAM bank: lines read / written, port cycles, and (modulo placement) which model banks map to it."""
    p = v.params
    rows = []
    for s in range(p.num_sram_banks):
        row = {"sram_bank": s, **{name: int(v.per_sram_bank[s, i]) for i, name in enumerate(SRAM_COLUMNS)}}
        if p.placement == "modulo":
            mapped = v.bank_load[:, s :: p.num_sram_banks, :]
            row["model_banks_per_layer"] = mapped.shape[1]
            row["channels_read"] = int(mapped[..., 0].sum())
            row["channels_missed"] = int(mapped[..., 1].sum())
        row["read_bytes"] = row["read_lines"] * p.line_bytes
        rows.append(row)
    return rows


def bank_mapping(p) -> str:
    if p.placement == "stripe":
        return f"every bundle striped over all {p.num_sram_banks} SRAM banks (lines dealt round-robin)"
    return (
        f"model bank j of every layer → SRAM bank j mod {p.num_sram_banks} ({p.sram_banks_used} hold weights)"
    )


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def ratios(sparse: dict, base: dict) -> dict:
    """How the sparse run compares with a baseline run (both summaries)."""
    s, b = sparse["totals"], base["totals"]
    return {
        "speedup": _ratio(b["cycles"], s["cycles"]),
        "dram_bytes_ratio": _ratio(s["dram_read_bytes"], b["dram_read_bytes"]),
        "sram_read_bytes_ratio": _ratio(s["sram_read_bytes"], b["sram_read_bytes"]),
        "energy_ratio": _ratio(s["energy_pj"], b["energy_pj"]),
        "energy_per_token_ratio": _ratio(s["energy_per_token_pj"], b["energy_per_token_pj"]),
    }


def build_report(result) -> dict:
    """The full report of an engine SimulationResult (plain JSON-able dict)."""
    peak = result.peak_dram_bandwidth_bytes_per_s
    sparse = variant_summary(result.sparse, peak)
    dense = variant_summary(result.dense, peak)
    p = result.sparse.params
    report = {
        "scope": SCOPE,
        "scope_note": SCOPE_NOTE,
        "label": SYNTHETIC_LABEL if result.synthetic else "",
        "synthetic": result.synthetic,
        "trace": result.trace_info,
        "batch": result.batch,
        "model": {
            "bundle_bytes": p.bundle_bytes,
            "lines_per_bundle": p.lines_per_bundle,
            "capacity_bundles_per_sram_bank": p.capacity_bundles,
            "model_banks_per_layer": p.num_model_banks,
            "placement": p.placement,
            "bank_mapping": bank_mapping(p),
            "sram_banks_used": p.sram_banks_used,
            "model_fit": result.model_fit,
        },
        "area": {
            "sram_area_mm2": p.area_mm2_per_bank * p.num_sram_banks,
            "sram_leakage_mw": p.leakage_mw_per_bank * p.num_sram_banks,
            "cost_sources": result.hwconfig.get("sram", {}).get("cost_sources", {}),
        },
        "pipeline": {
            "double_buffer": p.double_buffer,
            "nodes": list(result.sparse.pipeline_nodes),
            "edges": [list(e) for e in result.sparse.pipeline_edges],
        },  # fmt: skip
        **sparse,
        "per_layer": per_layer_rows(result.sparse),
        "per_bank": per_bank_rows(result.sparse),
        "bank_load_channels": result.sparse.bank_load[..., 0].tolist(),  # (L, nb) channels read
        "dense_baseline": dense,
        "vs_dense": ratios(sparse, dense),
        "global_topk": None,
        "vs_global_topk": None,
        "global_topk_note": result.global_topk_note,
        "union_density_vs_batch": {str(b): d for b, d in result.union_density.items()},
        "union_density_uniform_model": {
            str(b): 1.0 - (1.0 - p.k / p.bank_size) ** b for b in result.union_density
        },
        "dense_baseline_per_layer": per_layer_rows(result.dense),
        "hwconfig": result.hwconfig,
        "notes": result.notes,
    }
    if result.global_topk is not None:
        g = variant_summary(result.global_topk, peak)
        report["global_topk"] = g
        report["vs_global_topk"] = ratios(sparse, g)
    return report


# ---- writers ----------------------------------------------------------------------------------------------
def write_json(report: dict, path, force: bool = False) -> Path:
    write_text_atomic(Path(path), json.dumps(report, indent=2, default=_json_default) + "\n", force=force)
    return Path(path)


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


CSV_FILES = ("totals.csv", "per_layer.csv", "per_bank.csv")


def write_csv(report: dict, directory, force: bool = False) -> list[Path]:
    """totals.csv (one row per variant), per_layer.csv, per_bank.csv under `directory`."""
    d = Path(directory)
    existing = [d / name for name in CSV_FILES if (d / name).exists()]
    if existing and not force:
        raise OutputExistsError(existing[0])
    totals = []
    for variant, summary in (("sparse", report), ("dense_baseline", report["dense_baseline"]),
                             ("global_topk", report["global_topk"])):  # fmt: skip
        if summary is not None:
            bound = {f"bound_{k}": x for k, x in summary["bound_by"].items()}
            row = {
                "variant": variant,
                "label": report["label"],
                "scope": report["scope"],
                **summary["totals"],
                **bound,
            }
            totals.append(row)
    label = {"label": report["label"], "scope": report["scope"]}  # travel with every row
    texts = {
        "totals.csv": _csv_text(totals),
        "per_layer.csv": _csv_text([{**label, **row} for row in report["per_layer"]]),
        "per_bank.csv": _csv_text([{**label, **row} for row in report["per_bank"]]),
    }
    for name, text in texts.items():
        write_text_atomic(d / name, text, force=True)
    return [d / name for name in CSV_FILES]
