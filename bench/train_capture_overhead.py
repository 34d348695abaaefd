"""Training step time with routing capture on vs off, measured side by side in one run.

A sparse random Qwen2 (hidden 256, intermediate 1024, 4 layers, B = 64, k = 16; the size ENVIRONMENT.md
gives for a tiny model) trains predictor + FFN on a local KJV slice with the real Trainer step (bf16
autocast, KL to a frozen dense teacher, aux routing loss). Blocks of `--block` steps alternate between
capture off and capture on (armed every `trace_every` steps, like `codesign train --trace-out`); every on-block
ends by *waiting for the writer thread to drain*, so packing and disk writes are charged to capture even when
they overlap later steps. Ratio = median on-block time / median off-block time, per trace_every.
Writes bench/results/train_capture_overhead.json.

    .venv/bin/python bench/train_capture_overhead.py [--pairs 5] [--block 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _results import torch_host, write_result  # bench/_results.py

from codesign.sparse.capture import RoutingCapture
from codesign.train.recipe import recipe_from_dict
from codesign.train.trainer import Trainer

OUT = Path(__file__).parent / "results" / "train_capture_overhead.json"


def _corpus(tmp: Path) -> Path:
    from codesign.data.corpus import _resolve_source

    _, kjv = _resolve_source("kjv")
    lines = kjv.read_text().splitlines()[:6000]
    path = tmp / "kjv_slice.jsonl"
    with open(path, "w") as f:
        for i in range(0, len(lines), 30):  # 30 verses per document
            text = " ".join(json.loads(x)["text"] for x in lines[i : i + 30])
            f.write(json.dumps({"text": text}) + "\n")
    return path


def _recipe(corpus: Path, args) -> dict:
    stage = {
        "name": "sparse",
        "sparse": True,
        "steps": 10**6,
        "seq_len": args.seq_len,
        "batch_size": args.batch,
        "trainable": "predictor+ffn",
        "lr": 1e-4,
        "schedule": "constant",
        "kl_weight": 1.0,
        "aux_weight": 0.1,
    }
    return {
        "name": "capture-bench",
        "model": {
            "source": "tiny",
            "tiny": {
                "hidden": 256,
                "intermediate": 1024,
                "layers": 4,
                "heads": 4,
                "kv_heads": 2,
                "max_position": 1024,
            },
        },
        "data": {"corpus": str(corpus)},
        "sparsity": {"bank_size": 64, "k": 16, "rank": 32},
        "train": {"dtype": "bf16", "trace_every": 1, "checkpoint_every": 10**6},
        "stages": [stage],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5, help="off/on block pairs per trace_every")
    ap.add_argument("--block", type=int, default=10, help="steps per block")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--trace-every", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("CODESIGN_CACHE", str(tmp / "cache"))
        recipe = recipe_from_dict(_recipe(_corpus(tmp), args))
        trainer = Trainer(recipe, tmp / "run")
        trainer.setup()
        trainer._enter_stage(0, None)
        stage = recipe.stages[0]
        rows = trainer.train_tokens[: (len(trainer.train_tokens) // args.seq_len) * args.seq_len]
        rows = rows.reshape(-1, args.seq_len)
        rng = np.random.default_rng(0)

        def batch() -> torch.Tensor:
            return torch.from_numpy(rows[rng.integers(0, len(rows), args.batch)])

        for _ in range(3):  # warm-up: allocator, autocast caches, first-call overheads
            trainer._train_step(stage, batch())
        results = {}
        for every in args.trace_every:
            trainer.recipe = recipe.model_copy(
                update={"train": recipe.train.model_copy(update={"trace_every": every})}
            )
            cap = RoutingCapture(tmp / f"trace-{every}.zarr", model_name="tiny-qwen2-256", source="bench")
            cap.attach(trainer.model)
            cap.detach()
            # Blocks are a whole number of sampling periods, so the recorded fraction is exactly 1/every.
            block = -(-args.block // every) * every
            off, on = [], []

            def timed_block(capture_on: bool, cap=cap, block=block) -> float:
                trainer.capture = cap if capture_on else None
                if capture_on:
                    cap.attach(trainer.model)
                t0 = time.perf_counter()
                for i in range(block):
                    trainer.step = i  # the Trainer arms the capture when step % trace_every == 0
                    trainer._train_step(stage, batch())
                if capture_on:
                    cap.drain()
                    cap.detach()
                return time.perf_counter() - t0

            for pair in range(args.pairs):
                # ABBA order: off-on, then on-off, so a load trend on the shared box cancels within two pairs.
                if pair % 2 == 0:
                    off.append(timed_block(False))
                    on.append(timed_block(True))
                else:
                    on.append(timed_block(True))
                    off.append(timed_block(False))
            recorded_tokens = cap.num_tokens
            recorded_steps = args.pairs * (block // every)
            cap.close()
            off_step = statistics.median(off) / block
            # Noise-free view of the same cost: what capture adds to the training thread (arm/disarm, hooks
            # are a dict store), and the writer thread's CPU per recorded step, against the median off step.
            accounting = {
                "critical_path_ms_per_recorded_step": 1e3 * cap.critical_s / recorded_steps,
                "writer_cpu_ms_per_recorded_step": 1e3 * cap.writer_cpu_s / recorded_steps,
                "critical_path_pct_of_step_amortised": 100
                * cap.critical_s
                / recorded_steps
                / every
                / off_step,
                "writer_cpu_pct_of_step_amortised": 100
                * cap.writer_cpu_s
                / recorded_steps
                / every
                / off_step,
            }
            ratio = statistics.median(on) / statistics.median(off)
            pair_ratios = [a / b for a, b in zip(on, off, strict=True)]
            results[f"trace_every_{every}"] = {
                "trace_every": every,
                "off_block_s": off,
                "on_block_s": on,
                "block_steps": block,
                "recorded_steps_per_block": block // every,
                "median_off_step_s": statistics.median(off) / block,
                "median_on_step_s": statistics.median(on) / block,
                "ratio_on_over_off": ratio,
                "overhead_pct": 100 * (ratio - 1),
                "pair_ratios": pair_ratios,
                "median_pair_overhead_pct": 100 * (statistics.median(pair_ratios) - 1),
                "recorded_tokens": recorded_tokens,
                "accounting": accounting,
            }
    result = {
        "benchmark": "train_capture_overhead",
        "what": "training step time with routing capture on vs off, blocks interleaved, writer drained per on-block",
        "model": "random Qwen2 hidden 256, intermediate 1024, 4 layers; B=64 k=16 rank 32; predictor+ffn, KL+aux",
        "batch_tokens": args.batch * args.seq_len,
        "pairs": args.pairs,
        "target_overhead_pct": 3.0,
        "results": results,
        "host": torch_host("shared 2-core VM: absolute times are noisy; compare the ratio"),
    }
    write_result(args.out, result)
    for name, r in results.items():
        print(
            f"{name}: off {r['median_off_step_s'] * 1e3:.1f} ms/step, on {r['median_on_step_s'] * 1e3:.1f} ms/step, "
            f"overhead {r['overhead_pct']:+.2f} %"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
