"""DRAM model cost per layer-step: njit `bank_timing` (row visits) vs its per-burst Python twin, side by side.

Request lists are what the engine sends at batch 1, k = 16 of 64: the missed channel bundles of one layer,
contiguous runs merged into one range. Reports CPU time per call (process time: the machines are shared),
row activations, ns per activation, and the twin/njit ratio; checks that both give identical results.

    .venv/bin/python bench/dram_model.py            # writes bench/results/dram_model.json
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from codesign.sim.config import load_hwconfig
from codesign.sim.dram import build_dram

ROOT = Path(__file__).parents[1]
MODELS = {"smollm2-135m": (576, 1536), "qwen2.5-7b": (3584, 18944)}


def layer_step_requests(rng, hidden, intermediate, bank_size=64, k=16, dtype_bytes=2):
    """Missed bundles of one layer at batch 1 (every bank keeps k random channels), runs merged."""
    bundle = 3 * hidden * dtype_bytes
    keep = np.zeros(intermediate, dtype=bool)
    for b in range(intermediate // bank_size):
        keep[b * bank_size + rng.choice(bank_size, k, replace=False)] = True
    edges = np.diff(np.concatenate([[0], keep.astype(np.int8), [0]]))
    run_start, run_end = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return (run_start * bundle).astype(np.int64), ((run_end - run_start) * bundle).astype(np.int64)


def cpu_seconds_per_call(dram, starts, lengths, repeats):
    """Best of three: CPU seconds per kernel call on a state that persists across calls (as in the engine)."""
    state, n, best = dram.new_state(), starts.size, float("inf")
    for _ in range(3):
        t0 = time.process_time()
        for _ in range(repeats):
            dram.kernel(starts, lengths, n, dram.params, state)
        best = min(best, (time.process_time() - t0) / repeats)
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for hw in ("bank64", "h200"):
        # bank_timing explicitly: the configs default to bank_stream, this bench measures the reference model
        dram = build_dram(load_hwconfig(ROOT / "hwconfigs" / f"{hw}.yaml", ["dram.model=bank_timing"]).dram)
        for model, (hidden, intermediate) in MODELS.items():
            starts, lengths = layer_step_requests(rng, hidden, intermediate)
            n = starts.size
            state_jit, state_py = dram.new_state(), dram.new_state()
            first = dram.kernel(starts, lengths, n, dram.params, state_jit)  # compile + warm rows
            t0 = time.process_time()
            twin = dram.kernel_py(starts, lengths, n, dram.params, state_py)
            py_s = time.process_time() - t0
            assert tuple(first) == tuple(twin), (hw, model, first, twin)
            jit_s = cpu_seconds_per_call(dram, starts, lengths, repeats=200 if intermediate < 4096 else 10)
            t_ns, moved, hits, misses = first
            acts = misses  # row activations = row visits that found their row closed (fresh state)
            rows.append(
                {
                    "hwconfig": hw,
                    "model": model,
                    "requests": int(n),
                    "bytes_moved": int(moved),
                    "bursts": int(hits + misses),
                    "activations": int(acts),
                    "dram_time_ns": float(t_ns),
                    "achieved_bandwidth_fraction_of_peak": moved
                    / (t_ns * 1e-9)
                    / dram.device.peak_bandwidth_bytes_per_s,
                    "njit_cpu_s_per_call": jit_s,
                    "python_twin_cpu_s_per_call": py_s,
                    "twin_over_njit": py_s / jit_s,
                    "njit_ns_per_activation": jit_s * 1e9 / acts,
                    "njit_ns_per_burst": jit_s * 1e9 / (hits + misses),
                }
            )
            r = rows[-1]
            print(
                f"{hw:7s} {model:13s} {n:5d} req {acts:7d} ACTs {r['njit_cpu_s_per_call'] * 1e6:9.1f} µs/call "
                f"({r['njit_ns_per_activation']:.1f} ns/ACT)  twin ×{r['twin_over_njit']:.0f}  "
                f"BW {r['achieved_bandwidth_fraction_of_peak']:.1%} of peak"
            )
    out = ROOT / "bench" / "results" / "dram_model.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "dram_model",
        "what": "one layer-step of DRAM requests (batch 1, k=16/64) through bank_timing: njit vs per-burst twin",
        "timer": "time.process_time (CPU time; shared 2-core machine)",
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
    }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
