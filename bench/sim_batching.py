"""Recorded vs synthetic routing under batching: what the simulator says decode batching costs on bank64.

Runs `codesign simulate`'s library path on (a) the embedded trace recorded from the trained SmolLM2-135M and
(b) a synthetic uniform 16/64 trace of the same shape and token layout (4 concurrent sequences), at batch
1, 4 and 16, side by side in one run. Writes bench/results/sim_batching.json.

    python bench/sim_batching.py [--hw hwconfigs/bank64.yaml] [--out bench/results/sim_batching.json]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from codesign.cli.render import write_json_output
from codesign.sim.config import load_hwconfig
from codesign.sim.report import build_report
from codesign.sim.simulation import simulate
from codesign.trace import default_trace_path
from codesign.trace.store import TraceReader
from codesign.trace.synth import SynthSpec, write_synthetic

BATCHES = (1, 4, 16)


def row(report: dict) -> dict:
    t, v = report["totals"], report["vs_dense"]
    return {
        "union_density": t["union_density"],
        "tokens_per_s": t["tokens_per_s"],
        "dram_read_bytes": t["dram_read_bytes"],
        "energy_per_token_pj": t["energy_per_token_pj"],
        "speedup_vs_dense": v["speedup"],
        "dram_bytes_ratio_vs_dense": v["dram_bytes_ratio"],
        "energy_ratio_vs_dense": v["energy_ratio"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", default="hwconfigs/bank64.yaml")
    ap.add_argument("--out", default="bench/results/sim_batching.json")
    args = ap.parse_args()
    cfg = load_hwconfig(args.hw)
    recorded = default_trace_path()
    meta = TraceReader(recorded).meta
    results = {
        "hwconfig": args.hw,
        "recorded_trace": {"path": recorded.name, "source": meta.source, "synthetic": meta.synthetic},
        "rows": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = Path(tmp) / "uniform.zarr"
        # Same layout as the recorded trace's decode part: 4 sequences interleaved, 48 steps each.
        write_synthetic(
            SynthSpec(
                "uniform",
                meta.hidden,
                meta.intermediate,
                meta.layers,
                sequences=4,
                prefill_tokens=64,
                decode_tokens=48,
                seed=0,
            ),
            synthetic,
        )
        for name, path in (("recorded", recorded), ("synthetic_uniform", synthetic)):
            for b in BATCHES:
                results["rows"][f"{name}_b{b}"] = row(build_report(simulate(cfg, path, batch=b)))
                print(name, b, results["rows"][f"{name}_b{b}"], flush=True)
    write_json_output(args.out, results, force=True)  # atomic: temp file + rename


if __name__ == "__main__":
    main()
