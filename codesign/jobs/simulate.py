"""The simulation job of one sweep point: a recorded trace on one hardware point → the metrics of a table row.

Torch-free (sim + trace only). Two things are added on top of `codesign.sim.simulation.simulate`:

* a *view* of the recorded trace: `phase="decode"` keeps only decode-step tokens (what a serving accelerator
  sees at the given batch); `"all"` keeps the eval windows and prompt prefills too;
* a *layer-range split*: worker i simulates layers [a_i, b_i) of the trace and the parts are merged into the
  totals one worker would get. Worker i replays every layer with the masks outside [a_i, b_i) cleared, so
  every layer keeps its own DRAM addresses and the LM head stays on the last layer, and keeps only rows
  [a_i, b_i). That is exact when no state crosses layers: residency `none` (an SRAM bank's LRU/LFU/pinned set
  is shared by the layers mapped to it), a DRAM model whose state the layers do not share in order (`ideal`,
  `bank_stream`: the engine runs their layers in parallel bit for bit) and no double buffering (its prefetch
  overlap carries from one layer-step to the next). `split_exactness` says why a hardware point does not
  qualify.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np

from codesign.errors import ConfigError, TraceError

PHASES = ("decode", "all")


def hw_config(hw_path: str | os.PathLike, overrides: list[str], bank_size: int, k: int):
    """The hwconfig at `hw_path` with the sweep's knob overrides and the model point's (B, k)."""
    from codesign.sim.config import load_hwconfig

    return load_hwconfig(hw_path, list(overrides)).with_sparsity(bank_size=bank_size, k=k)


def split_exactness(cfg) -> str | None:
    """None when a layer-range split of `cfg` merges exactly; else the reason it would not."""
    from codesign.sim.layer_step import PARALLEL_DRAM_KERNELS, dram_kernel_id

    if cfg.sram.residency != "none":
        return f"sram.residency={cfg.sram.residency} shares SRAM state across layers (needs none)"
    if dram_kernel_id(cfg.dram.device().model) not in PARALLEL_DRAM_KERNELS:
        return f"dram.model={cfg.dram.device().model} carries DRAM state from layer to layer (needs ideal or bank_stream)"
    if cfg.sram.double_buffer:
        return "sram.double_buffer=true carries the prefetch overlap from layer to layer (needs false)"
    return None


def layer_ranges(layers: int, parts: int) -> list[tuple[int, int]]:
    """`parts` contiguous, near-equal layer ranges covering 0..layers."""
    if not 1 <= parts <= layers:
        raise ConfigError(f"split_layers={parts} must be between 1 and the model's {layers} layers")
    edges = np.linspace(0, layers, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def trace_view(src: str | os.PathLike, out: str | os.PathLike, *, phase: str = "decode",
               layers: tuple[int, int] | None = None) -> int:  # fmt: skip
    """Write the `phase` tokens of the store at `src` to a new store at `out` (replaced if present);
    with `layers=(a, b)` the masks of layers outside [a, b) are cleared. Returns tokens."""
    from codesign.trace.store import TraceReader, TraceWriter

    if phase not in PHASES:
        raise ConfigError(f"simulate phase {phase!r} is not one of {', '.join(PHASES)}")
    reader = TraceReader(src)
    meta = reader.meta
    a, b = layers if layers is not None else (0, meta.layers)
    # Not "synthetic": the simulator would regenerate a synthetic trace from its spec (all layers, every
    # phase) instead of reading the view's masks.
    extra = {k: v for k, v in meta.extra.items() if k != "synth"}
    view = dataclasses.replace(
        meta, created_at="", synthetic=False,
        extra={**extra, "view": {"from": str(src), "phase": phase, "layers": [a, b], "synthetic": meta.synthetic}},
    )  # fmt: skip
    with TraceWriter.create(out, view, with_logits=False, chunk_tokens=reader.chunk_tokens, force=True) as w:
        for c in reader.iter_chunks(with_logits=False):
            keep = np.asarray(c.is_decode, dtype=bool) if phase == "decode" else np.ones(c.num_tokens, bool)
            if not keep.any():
                continue
            bits = c.mask_bits[keep].copy()  # (T', L, I/8)
            bits[:, :a] = 0
            bits[:, b:] = 0
            w.append(bits, seq_id=c.seq_id[keep], position=c.position[keep], token_id=c.token_id[keep],
                     is_decode=c.is_decode[keep])  # fmt: skip
        tokens = w.num_tokens
    if tokens == 0:
        raise TraceError(f"{src}: the trace holds no {phase} tokens to simulate")
    return tokens


def simulate_view(hw_path, overrides, bank_size: int, k: int, batch: int, trace, *, phase: str = "decode",
                  layers: tuple[int, int] | None = None, work_dir: str | os.PathLike | None = None):  # fmt: skip
    """Simulate the `phase` view of `trace` (layers outside [a, b) cleared, if given) on one hardware point.

    Returns (sparse VariantResult, dense VariantResult, peak DRAM bandwidth) with the rows of layers
    [a, b) only when `layers` is given.
    """
    from codesign.sim.simulation import simulate

    cfg = hw_config(hw_path, overrides, bank_size, k)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="view-") as tmp:
        view = Path(tmp) / "view.zarr"
        trace_view(trace, view, phase=phase, layers=layers)
        result = simulate(cfg, view, batch=batch)
    sparse, dense = result.sparse, result.dense
    if layers is not None:
        a, b = layers
        sparse, dense = (_rows(v, a, b) for v in (sparse, dense))
    return sparse, dense, result.peak_dram_bandwidth_bytes_per_s


def _rows(v, a: int, b: int):
    """Layers [a, b) of a variant (per-SRAM-bank counts are not split by layer: zeroed, unused by totals)."""
    return dataclasses.replace(v, per_layer=v.per_layer[a:b].copy(), dram_time_ns=v.dram_time_ns[a:b].copy(),
                               bank_load=v.bank_load[a:b].copy(), per_sram_bank=np.zeros_like(v.per_sram_bank))  # fmt: skip


def merge_layer_parts(parts: list):
    """[(sparse, dense, peak) per layer range, in layer order] → one (sparse, dense, peak) over all layers."""

    def cat(vs):
        return dataclasses.replace(
            vs[-1],  # every part replayed every layer: its params describe the whole model
            per_layer=np.concatenate([v.per_layer for v in vs]),
            dram_time_ns=np.concatenate([v.dram_time_ns for v in vs]),
            bank_load=np.concatenate([v.bank_load for v in vs]),
            per_sram_bank=np.zeros_like(vs[-1].per_sram_bank),
        )

    return cat([p[0] for p in parts]), cat([p[1] for p in parts]), parts[-1][2]


def metrics(sparse, dense, peak_bytes_per_s: float) -> dict:
    """The table columns of one simulated point (units in the names) from its sparse and dense variants."""
    from codesign.sim.report import ratios, variant_summary

    s, d = variant_summary(sparse, peak_bytes_per_s), variant_summary(dense, peak_bytes_per_s)
    t, r, p = s["totals"], ratios(s, d), sparse.params
    tokens = t["tokens"]
    return {
        "sim_scope": p.scope,  # model: the whole decoder step; ffn: the FFN part only (ffn_* columns beside)
        "sim_tokens": tokens,
        "sim_steps": t["steps"],
        "cycles": t["cycles"],
        "time_s": t["time_s"],
        "tokens_per_s": t["tokens_per_s"],
        "dram_read_bytes": t["dram_read_bytes"],
        "dram_read_bytes_per_token": t["dram_read_bytes"] / tokens if tokens else None,
        "sram_read_bytes_per_token": t["sram_read_bytes"] / tokens if tokens else None,
        "energy_pj": t["energy_pj"],
        "energy_per_token_pj": t["energy_per_token_pj"],
        "sram_hit_rate": t["hit_rate"],
        "union_density": t["union_density"],
        "bank_imbalance": t["bank_imbalance"],
        "sram_area_mm2": p.area_mm2_per_bank * p.num_sram_banks,
        "sram_capacity_bytes": p.bank_size_bytes * p.num_sram_banks,
        "dense_tokens_per_s": d["totals"]["tokens_per_s"],
        "dense_energy_per_token_pj": d["totals"]["energy_per_token_pj"],
        "speedup_vs_dense": r["speedup"],
        "ffn_tokens_per_s": s["ffn_scope"]["tokens_per_s"],
        "ffn_speedup_vs_dense": r["ffn_scope_speedup"],
        "energy_per_token_ratio_vs_dense": r["energy_per_token_ratio"],
        "dram_bytes_ratio_vs_dense": r["dram_bytes_ratio"],
    }


def simulate_masks(masks: np.ndarray, hwconfig: str, hidden: int, predictor_rank: int, name: str) -> dict:
    """Simulator totals for `masks` (T, L, I) replayed as T decode steps at batch 1 (a token's FFN routing is
    the same whether it was prefilled or decoded, so this is the decode cost of generating those tokens)."""
    from codesign.sim.config import load_hwconfig
    from codesign.sim.dram import build_dram
    from codesign.sim.engine import Block, simulate_variant, words_from_masks
    from codesign.sim.pipeline import COL
    from codesign.sim.simulation import params_from_config

    cfg = load_hwconfig(hwconfig)
    T, L, I = masks.shape
    p = params_from_config(cfg, hidden, I, L, predictor_rank)
    block = Block(words_from_masks(masks, p.bank_size), np.ones(T, dtype=bool), np.zeros(T, dtype=np.int64))
    v = simulate_variant(name, p, lambda: iter([block]), build_dram(cfg.dram), batch=1)
    return {
        "tokens": T,
        "cycles": v.total("cycles"),
        "dram_read_bytes": v.total("dram_read_bytes"),
        "dram_ffn_bytes": v.total("dram_ffn_bytes"),
        "ffn_macs": v.total("ffn_macs"),
        "per_layer_dram_read_bytes": v.per_layer[:, COL["dram_read_bytes"]].tolist(),
        "per_layer_cycles": v.per_layer[:, COL["cycles"]].tolist(),
    }


def _col(name: str) -> int:
    from codesign.sim.pipeline import COL

    return COL[name]
