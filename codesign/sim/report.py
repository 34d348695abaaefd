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


def _energy(p, rows: np.ndarray, cycles) -> dict:
    """Energy components (pJ) of event counts `rows` ((C,) totals or (L, C) per layer) over `cycles`."""
    col = lambda name: rows[..., COL[name]]  # noqa: E731
    read = col("sram_read_lines") * p.sram_read_energy_pj
    write = col("sram_write_lines") * p.sram_write_energy_pj
    # DRAM writes (KV cache appends) assumed to cost what reads cost per bit
    dram = (col("dram_read_bytes") + col("dram_write_bytes")) * 8 * p.dram_energy_pj_per_bit
    activations = col("dram_row_misses") * p.dram_activation_energy_pj  # a burst that needed an ACT
    macs = (
        col("ffn_macs") + col("predictor_macs") + col("attention_macs") + col("head_macs")
    ) * p.mac_energy_pj
    # top-k: topk_cycles_per_bank compare-exchanges per (token, model bank) of a sparse layer
    compares = col("tokens") * p.num_model_banks * p.topk_cycles_per_bank if p.sparse else np.zeros_like(read)
    topk = compares * p.topk_energy_pj_per_compare
    # SiLU·mul per kept channel × token, plus the attention side's norms, softmax, RoPE
    vector = (col("ffn_macs") // (3 * p.hidden) + col("vector_ops")) * p.vector_energy_pj_per_op
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


def _predictor_energy(p, t: dict) -> float:
    """The predictor's share: its DRAM bytes, SRAM reads (resident) and MACs (activations not split out)."""
    return (t["dram_predictor_bytes"] * 8 * p.dram_energy_pj_per_bit
            + t["sram_predictor_lines"] * p.sram_read_energy_pj + t["predictor_macs"] * p.mac_energy_pj)  # fmt: skip


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
        "dram_write_bytes": t["dram_write_bytes"],
        "dram_ffn_bytes": t["dram_ffn_bytes"],
        "dram_predictor_bytes": t["dram_predictor_bytes"],
        "dram_attention_bytes": t["dram_attention_bytes"],
        "dram_kv_read_bytes": t["dram_kv_read_bytes"],
        "dram_kv_write_bytes": t["dram_kv_write_bytes"],
        "dram_head_bytes": t["dram_head_bytes"],
        "dram_requests": t["dram_requests"],
        "dram_row_hits": t["dram_row_hits"],
        "dram_row_misses": t["dram_row_misses"],
        "dram_activations": t["dram_row_misses"],
        "dram_service_time_s": float(v.dram_time_ns.sum()) * 1e-9,
        "achieved_dram_bandwidth_bytes_per_s": (
            (t["dram_read_bytes"] + t["dram_write_bytes"]) / time_s if time_s > 0 else 0.0
        ),
        "peak_dram_bandwidth_bytes_per_s": peak_dram_bandwidth_bytes_per_s,
        "sram_read_bytes": t["sram_read_lines"] * p.line_bytes,
        "sram_write_bytes": t["sram_write_lines"] * p.line_bytes,
        "macs": t["ffn_macs"] + t["predictor_macs"] + t["attention_macs"] + t["head_macs"],
        "ffn_macs": t["ffn_macs"],
        "predictor_macs": t["predictor_macs"],
        "attention_macs": t["attention_macs"],
        "head_macs": t["head_macs"],
        "vector_ops": t["vector_ops"],
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
            "attention_cycles": t["attention_compute_cycles"],
            "predictor_cycles": t["predictor_compute_cycles"],
            "ffn_cycles": t["ffn_compute_cycles"],
            "head_cycles": t["head_compute_cycles"],
        },
        "vector_split": {"topk_cycles": t["topk_cycles"], "vector_work_cycles": t["vector_work_cycles"]},
        "dram_split": {
            # prefetch: known before routing (predictor, attention weights, KV cache, LM head, embeddings)
            "prefetch_cycles": t["prefetch_dram_cycles"],
            "prefetch_hidden_cycles": t["prefetch_hidden_cycles"],  # overlapped with the previous layer-step
            "ffn_fetch_cycles": t["ffn_fetch_cycles"],
        },
        "predictor": {
            "dram_bytes": t["dram_predictor_bytes"],
            "dram_cycles": t["predictor_dram_cycles"],
            "sram_read_bytes": t["sram_predictor_lines"] * p.line_bytes,
            "sram_cycles": t["predictor_sram_cycles"],
            "compute_cycles": t["predictor_compute_cycles"],
            "macs": t["predictor_macs"],
            "energy_pj": _predictor_energy(p, t),
            "resident": p.predictor_resident,
        },
        # the same schedule with only the FFN part of each layer-step (predictor, top-k, FFN)
        "ffn_scope": {
            "cycles": t["ffn_scope_cycles"],
            "time_s": t["ffn_scope_cycles"] / p.frequency_hz,
            "tokens_per_s": tokens / (t["ffn_scope_cycles"] / p.frequency_hz)
            if t["ffn_scope_cycles"]
            else 0.0,
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
        "ffn_scope_speedup": _ratio(base["ffn_scope"]["cycles"], sparse["ffn_scope"]["cycles"]),
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
        "scope": result.scope,
        "scope_note": result.notes[-1],
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
            "decoder": None
            if p.scope != "model"
            else {
                "heads": p.heads,
                "kv_heads": p.kv_heads,
                "head_dim": p.head_dim,
                "vocab": p.vocab,
                "attention_bytes_per_layer": p.attention_bytes_per_layer,
                "kv_row_bytes_per_layer": p.kv_row_bytes,
                "lm_head_bytes": p.head_bytes,
            },
            "predictor_bytes_per_layer": p.predictor_bytes_per_layer,
            "predictor_reserved_bytes_per_sram_bank": p.predictor_reserved_bytes_per_bank,
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
                "ffn_scope_cycles": summary["ffn_scope"]["cycles"],
                "ffn_scope_tokens_per_s": summary["ffn_scope"]["tokens_per_s"],
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
