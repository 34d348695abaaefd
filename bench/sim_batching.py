"""Recorded vs synthetic routing under batching: what the simulator says decode batching costs on bank64.

Runs `codesign simulate`'s library path on (a) the embedded trace recorded from the trained SmolLM2-135M,
(b) a synthetic uniform 16/64 trace of the same shape and token layout (4 concurrent sequences) and (c) the
same with 32 concurrent sequences, at batch 1 … 32, side by side in one run. A batch is b decode tokens of
distinct sequences at the same decode step: batches larger than a trace's concurrent sequences are not
simulated (the simulator refuses them) and are listed under "not_measurable".
Writes bench/results/sim_batching.json.

    python bench/sim_batching.py [--hw hwconfigs/bank64.yaml] [--out bench/results/sim_batching.json]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from codesign.cli.render import write_json_output
from codesign.sim.config import load_hwconfig
from codesign.sim.engine import decode_concurrency
from codesign.sim.report import build_report
from codesign.sim.simulation import simulate
from codesign.trace import default_trace_path
from codesign.trace.store import TraceReader
from codesign.trace.synth import SynthSpec, write_synthetic

BATCHES = (1, 2, 4, 8, 16, 32)


def row(report: dict) -> dict:
    t, v = report["totals"], report["vs_dense"]
    return {
        "union_density": t["union_density"],
        "tokens_per_s": t["tokens_per_s"],
        "dram_read_bytes": t["dram_read_bytes"],
        "energy_per_token_pj": t["energy_per_token_pj"],
        "scope": report["scope"],
        "speedup_vs_dense": v["speedup"],
        "ffn_scope_speedup_vs_dense": v["ffn_scope_speedup"],
        "dram_bytes_ratio_vs_dense": v["dram_bytes_ratio"],
        "energy_ratio_vs_dense": v["energy_ratio"],
        "bound_by_fraction": {k: c / t["cycles"] for k, c in report["bound_by"].items()},
        "dense_bound_by_fraction": {
            k: c / report["dense_baseline"]["totals"]["cycles"]
            for k, c in report["dense_baseline"]["bound_by"].items()
        },
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
        "not_measurable": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        traces = {"recorded": recorded}
        for seqs in (4, 32):  # the recorded layout (4 sequences), and the ≥ 32 a re-recorded trace will have
            traces[f"synthetic_uniform_{seqs}seq"] = Path(tmp) / f"uniform{seqs}.zarr"
            write_synthetic(
                SynthSpec("uniform", meta.hidden, meta.intermediate, meta.layers, sequences=seqs,
                          prefill_tokens=64 * 4 // seqs, decode_tokens=48 * 4 // seqs, seed=0,
                          model_name=meta.model_name),  # a preset name: the decoder shape (whole-model scope)
                traces[f"synthetic_uniform_{seqs}seq"],
            )  # fmt: skip
        for name, path in traces.items():
            reader = TraceReader(path)
            chunk = reader.read(0, reader.num_tokens, with_logits=False)
            most = decode_concurrency(chunk.is_decode, chunk.seq_id)
            for b in BATCHES:
                if b > most:
                    results["not_measurable"][f"{name}_b{b}"] = (
                        f"the trace decodes at most {most} sequences together"
                    )
                    continue
                results["rows"][f"{name}_b{b}"] = row(build_report(simulate(cfg, path, batch=b)))
                print(name, b, results["rows"][f"{name}_b{b}"], flush=True)
    # the recorded trace at batch 1 with the predictors held in SRAM instead of streamed (README, simulate)
    resident = cfg.with_overrides(["predictor.resident=true"])
    results["rows"]["recorded_b1_predictor_resident"] = row(build_report(simulate(resident, recorded, batch=1)))
    print("recorded 1 predictor.resident", results["rows"]["recorded_b1_predictor_resident"], flush=True)
    write_json_output(args.out, results, force=True)  # atomic: temp file + rename


if __name__ == "__main__":
    main()
