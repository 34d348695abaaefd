"""Case study: RULER-CWE on SmolLM2-135M, dense vs bank-sparse, layer diagnosis, planted fault, repair.

One model load (the sparse adapter; "dense" is the same model with every layer dense, bit-identical to the
dense base), then the stages asked for, each writing bench/results/cwe_smollm2_<stage>.json (+ PNG):
  eval       generated score + proxy vs length for model / dense / oracle (and the proxy's rank agreement)
  diagnose   per-layer ablation, recall by position, divergence (teacher-forced proxy)
  planted    the same diagnosis after negating one layer's predictor (must rank that layer first)
  repair     codesign.eval.repair on the diagnosed layer (see docs/CWE.md)

    nice -n 5 python bench/cwe_smollm2.py --stages eval,diagnose --lengths 512,1024,2048 --samples 3
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import torch_host, write_result  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ticker(label: str):
    t0 = time.time()
    return lambda done, total: log(f"{label} {done}/{total} ({time.time() - t0:.0f} s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="adapters/smollm2-bank64-k16.safetensors")
    ap.add_argument("--stages", default="diagnose,planted,eval")
    ap.add_argument("--setting", default="scaled")
    ap.add_argument("--lengths", default="512,1024,2048")
    ap.add_argument("--diag-lengths", default="512,1024")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--diag-samples", type=int, default=2)
    ap.add_argument("--variants", default="model,dense,oracle")
    ap.add_argument("--plant-layer", type=int, default=12)
    ap.add_argument("--screen", type=int, default=None, help="ablate only the M worst layers by local error")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is faster on an oversubscribed box)"
    )
    ap.add_argument("--repair-layer", type=int, default=None, help="default: the diagnosis' first layer")
    ap.add_argument("--val-windows", type=int, default=8, help="KJV validation windows of 512 for ppl")
    ap.add_argument("--train-samples", type=int, default=2, help="CWE prompts per length to retrain on")
    ap.add_argument("--steps", type=int, default=300, help="predictor retraining steps")
    ap.add_argument("--tag", default="", help="suffix for result file names (e.g. a model name)")
    args = ap.parse_args()

    import torch

    from codesign.cli.cwe import load_cwe_model
    from codesign.eval.cwe import make_samples, resolve_setting
    from codesign.eval.cwe_plots import plot_diagnosis, plot_scores
    from codesign.eval.cwe_score import evaluate_cwe
    from codesign.eval.diagnose import diagnose, plant_fault

    stages = args.stages.split(",")
    setting = resolve_setting(args.setting)
    lengths = [int(x) for x in args.lengths.split(",")]
    diag_lengths = [int(x) for x in args.diag_lengths.split(",")]
    torch.set_num_threads(args.threads)
    t0 = time.time()
    model, tok, name = load_cwe_model(args.model)
    log(f"loaded {name} in {time.time() - t0:.0f} s; torch threads {torch.get_num_threads()}")
    host = torch_host("2 shared cores under 3 training runs: times are not comparable across runs")
    tag = f"_{args.tag}" if args.tag else ""

    state: dict = {"diag": None}

    def stage_eval() -> None:
        t0 = time.time()
        res = evaluate_cwe(model, tok, model_name=name, setting=setting, lengths=lengths, samples=args.samples,
                           variants=args.variants.split(","), progress=ticker("eval"))  # fmt: skip
        res.update(host=host, wall_s=time.time() - t0)
        write_result(RESULTS / f"cwe_smollm2{tag}_eval.json", res)
        plot_scores(res, RESULTS / f"cwe_smollm2{tag}_eval.png", force=True)
        log(
            f"eval done: {json.dumps({v: {L: r.get('mean') for L, r in rows.items()} for v, rows in res['scores'].items()})}"
        )

    def stage_diagnose() -> None:
        t0 = time.time()
        sets = [s for L in diag_lengths for s in make_samples(tok, setting, L, args.diag_samples, 42)]
        d = diagnose(model, tok, sets, screen=args.screen, progress=ticker("diagnose"))
        state["diag"] = diag = {"model": name, "setting": setting.to_dict(), "seed": 42, "planted_fault": None, "diagnosis": d,
                "host": host, "wall_s": time.time() - t0}  # fmt: skip
        write_result(RESULTS / f"cwe_smollm2{tag}_diagnose.json", diag)
        plot_diagnosis(diag, RESULTS / f"cwe_smollm2{tag}_diagnose.png", force=True)
        log(f"diagnose: first {d['culprit']}; top5 {[r['layer'] for r in d['ranking'][:5]]}")

    def stage_planted() -> None:
        t0 = time.time()
        faulty = copy.deepcopy(model)
        plant_fault(faulty, args.plant_layer)
        sets = [s for L in diag_lengths[:1] for s in make_samples(tok, setting, L, args.diag_samples, 42)]
        d = diagnose(faulty, tok, sets, screen=args.screen, progress=ticker("planted"))
        out = {"model": name, "setting": setting.to_dict(), "seed": 42, "planted_fault": args.plant_layer,
               "found": d["culprit"] == args.plant_layer, "diagnosis": d, "host": host,
               "wall_s": time.time() - t0}  # fmt: skip
        write_result(RESULTS / f"cwe_smollm2{tag}_planted.json", out)
        plot_diagnosis(out, RESULTS / f"cwe_smollm2{tag}_planted.png", force=True)
        log(f"planted fault at {args.plant_layer}: ranked first {d['culprit']}")
        del faulty

    def stage_repair() -> None:
        from codesign.eval.repair import repair_layer

        layer = args.repair_layer
        if layer is None:
            src = state["diag"] or json.loads((RESULTS / f"cwe_smollm2{tag}_diagnose.json").read_text())
            layer = src["diagnosis"]["culprit"]
        from codesign.data.corpus import load_corpus, windows_for_eval

        corpus = load_corpus("kjv", tok)
        val = windows_for_eval(corpus.tokens("validation"), 512, args.val_windows * 512)
        train = windows_for_eval(corpus.tokens("train"), 512, 4 * 512)
        t0 = time.time()
        res = repair_layer(model, tok, layer=layer, setting=setting, lengths=diag_lengths,
                           samples=args.diag_samples, val_windows=val, train_windows=train,
                           train_samples=args.train_samples, steps=args.steps,
                           progress=ticker("repair"))  # fmt: skip
        res.update(model=name, host=host, wall_s=time.time() - t0)
        write_result(RESULTS / f"cwe_smollm2{tag}_repair.json", res)
        log(f"repair of layer {layer}: {json.dumps(res['summary'])}")

    stage_fns = {
        "eval": stage_eval,
        "diagnose": stage_diagnose,
        "planted": stage_planted,
        "repair": stage_repair,
    }
    for stage in stages:  # in the order given
        if stage not in stage_fns:
            raise SystemExit(f"unknown stage {stage!r}; stages: {', '.join(stage_fns)}")
        stage_fns[stage]()


if __name__ == "__main__":
    main()
