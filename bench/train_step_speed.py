"""Issue 9: where a CPU training step of SmolLM2-135M (16/64, predictor+ffn, LM + KL + aux) spends its time,
and tokens/s before/after the top-k teacher cache + fused losses — side by side, interleaved, one run.

Variants (same model, same batch, same step code; only the distillation path differs):
  full_kl        today's default: teacher forward every step, full-vocabulary KL (two fp32 log-softmaxes
                 over 49,152 logits a token) + a separate cross-entropy
  topk_cold      kl_topk=64: teacher forward, its top-64 kept; CE and KL from ONE student log-softmax
  topk_cached    the same with the teacher's answers already on disk (every run after the first that shares
                 the teacher and data order: dense control, sparse runs, ablations, sweeps)
Plus a breakdown of one step: teacher forward, student forward+backward, losses, optimizer.

    python bench/train_step_speed.py [--seq-len 512] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from _results import torch_host, write_result  # bench/_results.py

from codesign.train.recipe import load_recipe, recipe_from_dict
from codesign.train.teacher import TeacherCache
from codesign.train.trainer import Trainer

ROOT = Path(__file__).parents[1]
OUT = ROOT / "bench" / "results" / "train_step_speed.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "smollm2-ffn-k16.yaml")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--topk", type=int, default=64)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    t0 = time.perf_counter()
    base = load_recipe(args.recipe).to_dict()
    base.pop("path")
    stage = dict(base["stages"][0], steps=1000, seq_len=args.seq_len, batch_size=1, warmup_steps=0)
    recipe = recipe_from_dict({**base, "stages": [stage]}, where=str(args.recipe))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(recipe, Path(tmp) / "run")
        trainer.setup()
        trainer._enter_stage(0, None)
        st = recipe.stages[0]
        x = torch.from_numpy(trainer.train_tokens[: args.seq_len].astype("int64"))[None]
        caches = {
            "topk_cold": lambda i: TeacherCache(Path(tmp) / f"cold{i}", "t", args.topk, 1.0, "bf16"),
            "topk_cached": lambda i: warm,
        }
        warm = TeacherCache(Path(tmp) / "warm", "t", args.topk, 1.0, "bf16")
        warm.get(x, trainer._teacher_logits)
        times: dict[str, list[float]] = {"full_kl": [], "topk_cold": [], "topk_cached": []}
        trainer._train_step(st, x)  # warm-up: allocator, first-call costs
        for rep in range(args.reps):
            for name in times:
                trainer.teacher_cache = caches[name](rep) if name in caches else None
                start = time.perf_counter()
                trainer._train_step(st, x)
                times[name].append(time.perf_counter() - start)
                print(f"rep {rep} {name:>12}: {times[name][-1]:.2f} s", flush=True)
        breakdown = _breakdown(trainer, st, x)
    best = {k: min(v) for k, v in times.items()}
    tokens = args.seq_len
    result = {
        "benchmark": "train_step_speed",
        "model": "SmolLM2-135M 16/64, predictor+ffn, bf16 autocast, LM + KL + aux",
        "tokens_per_step": tokens,
        "step_s": times,
        "best_step_s": best,
        "tokens_per_s_best": {k: tokens / v for k, v in best.items()},
        "speedup_vs_full_kl": {k: best["full_kl"] / v for k, v in best.items()},
        "breakdown_s": breakdown,
        "teacher_topk": args.topk,
        "load_avg": os.getloadavg(),
        "host": torch_host("2-core VM shared with training runs: variants interleaved, best of reps"),
        "wall_s": time.perf_counter() - t0,
    }
    write_result(args.out, result)
    print({k: round(v, 2) for k, v in result["speedup_vs_full_kl"].items()})
    print(f"wrote {args.out}")


def _breakdown(trainer, st, x) -> dict:
    """Seconds of each part of one step, each part timed alone (best of 2)."""
    from codesign.train.optim import kl_loss, lm_loss
    from codesign.train.teacher import fused_lm_and_kl, topk_targets

    def best(fn, n=2):
        out = []
        for _ in range(n):
            s = time.perf_counter()
            fn()
            out.append(time.perf_counter() - s)
        return min(out)

    model = trainer.model
    model.train()
    teacher_s = best(lambda: trainer._teacher_logits(x))
    with torch.no_grad():
        t_logits = trainer._teacher_logits(x)
        with trainer._autocast():
            s_logits = model(input_ids=x).logits
    target = topk_targets(t_logits, 64, 1.0)

    def fwd_bwd():
        trainer.opt.zero_grad(set_to_none=True)
        with trainer._autocast():
            logits = model(input_ids=x).logits
        lm_loss(logits, x).backward()

    student_s = best(fwd_bwd)
    full_loss_s = best(lambda: (lm_loss(s_logits, x), kl_loss(s_logits, t_logits, 1.0)))
    fused_loss_s = best(lambda: fused_lm_and_kl(s_logits, x, target, 1.0, want_lm=True))
    optim_s = best(trainer.opt.step)
    tail = 1 - target.values.sub(target.logsumexp[:, None]).exp().sum(-1)
    return {
        "teacher_forward": teacher_s,
        "student_forward_backward": student_s,
        "losses_full_kl": full_loss_s,
        "losses_fused_topk": fused_loss_s,
        "optimizer_step": optim_s,
        "teacher_tail_mass_outside_top64_mean": float(tail.mean()),
    }


if __name__ == "__main__":
    main()
