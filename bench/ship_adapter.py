"""The shipped FFN-adapted adapter: export a training run as predictors + a rank-R FFN delta (int8 or fp16),
load it over a fresh base checkpoint and measure its perplexity as shipped, on the validation windows every
issue-9 figure uses (bench/smollm2_ffn_adapt.py: KJV validation books, 16 windows of 512 tokens).

    python bench/ship_adapter.py --run /path/to/runs/ffn-k16 --rank 16 --int8

Writes the adapter to adapters/ and a row per (run, rank, storage) to bench/results/smollm2_shipped_adapter.json,
with `check_windows_ppl` (the first two windows, 256 tokens each) that tests/train/test_shipped_adapter.py
reproduces. Tracked weights stay under 8 MB, which is what the int8 storage is for.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _results import torch_host, write_result  # bench/_results.py

from codesign.data.corpus import load_corpus, windows_for_eval
from codesign.eval.ppl import perplexity
from codesign.train.adapter import export_adapter, load_adapted, read_adapter

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "bench" / "results" / "smollm2_shipped_adapter.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="run directory of an FFN-adapting sparse run")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--val-tokens", type=int, default=8192)
    ap.add_argument("--context-len", type=int, default=512)
    args = ap.parse_args()
    t0 = time.perf_counter()
    header_run = json.loads((args.run / "summary.json").read_text())
    k = header_run["recipe"].rsplit("-", 1)[-1]  # smollm2-ffn-k16 → k16
    storage = "int8" if args.int8 else "fp16"
    path = REPO / "adapters" / f"smollm2-bank64-{k}-ffn-r{args.rank}-{storage}.safetensors"
    export_adapter(args.run, path, force=True, delta_rank=args.rank, quantization="int8" if args.int8 else None)
    header, tensors = read_adapter(path)
    model, tok = load_adapted(path)
    val = windows_for_eval(load_corpus("kjv", tok).tokens("validation"), args.context_len, args.val_tokens)
    res = perplexity(model, val)
    row = {
        **res.to_dict(),
        "adapter": str(path.relative_to(REPO)),
        "adapter_bytes": path.stat().st_size,
        "ffn_delta_rank": header["ffn_delta_rank"],
        "storage": storage,
        "tensors": len(tensors),
        "run": header["provenance"],
        "run_final_val_ppl_8192_tokens": header_run["evals"]["sparse"]["val_ppl"],
        "check_windows_ppl": perplexity(model, val[:2, :256]).ppl,  # what the test reproduces
        "eval_windows_shape": list(val.shape),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    old = json.loads(RESULT.read_text()) if RESULT.exists() else {"benchmark": "ship_adapter", "rows": {}}
    old["rows"][f"{k}_r{args.rank}_{storage}"] = row
    old["host"] = torch_host()
    write_result(RESULT, old)
    print(f"{path.name}: {row['adapter_bytes'] / 1e6:.2f} MB, ppl {res.ppl:.3f} on {val.shape[0]} windows, "
          f"check windows {row['check_windows_ppl']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
