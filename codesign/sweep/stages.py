"""What one DAG node does, as a plain function of a JSON-able task (so a process pool or Ray runs it).

`run_task` never raises: a failure inside one point comes back as {"ok": False, "error": "..."} and the
sweep marks that point failed and goes on. The model stack (torch) is imported only by the stages that need
it, inside the worker.
"""

from __future__ import annotations

import os
import time
import traceback

# One loaded model source per worker process: the points of a sweep re-select the same predictor logits at
# other (B, k), so a worker loads SmolLM2 (~25 s) once, not once per point.
_MODEL: dict = {}


def run_task(task: dict) -> dict:
    t0 = time.perf_counter()
    try:
        threads = task.get("torch_threads")
        if threads and task["stage"] in ("eval", "finetune"):
            import torch

            torch.set_num_threads(int(threads))
        result = STAGES[task["stage"]](task)
        return {"ok": True, "result": result, "stage_s": time.perf_counter() - t0, "pid": os.getpid()}
    except Exception as exc:  # noqa: BLE001 - a point's failure is data for the table, not a crash
        msg = str(exc).splitlines()[0] if str(exc) else ""
        return {
            "ok": False,
            "error": f"{type(exc).__name__}: {msg}"[:500],
            "traceback": traceback.format_exc(limit=6)[-2000:],
            "stage_s": time.perf_counter() - t0,
        }


def _model(source: dict, seed: int):
    from codesign.jobs.models import load_source

    key = (source["kind"], source["path"], seed)
    if key not in _MODEL:
        _MODEL.clear()
        _MODEL[key] = load_source(source["kind"], source["path"], seed=seed)
    return _MODEL[key]


def _finetune(task: dict) -> dict:
    from codesign.jobs.finetune import finetune

    return finetune(task["recipe"], task["run_dir"], bank_size=task["bank_size"], k=task["k"],
                    steps=task["steps"], seed=task["seed"])  # fmt: skip


def _eval(task: dict) -> dict:
    from codesign.jobs.evaluate import evaluate_point, prepare_point

    if task.get("run_dir"):
        from codesign.jobs.models import load_source

        model, tok, name = load_source("run", task["run_dir"])
    else:
        model, tok, name = _model(task["source"], task["seed"])
    ev = task["eval"]
    info = prepare_point(model, tok, mode=task["mode"], bank_size=task["bank_size"], k=task["k"],
                         corpus=ev["corpus"], calib_tokens=ev["threshold_calib_tokens"],
                         context_len=ev["context_len"])  # fmt: skip
    out = evaluate_point(
        model, tok, task["trace"], model_name=name, corpus=ev["corpus"], split=ev["split"],
        eval_tokens=ev["tokens"], context_len=ev["context_len"], batch_size=ev["batch_size"],
        prompts=ev["prompts"], prompt_len=ev["prompt_len"], new_tokens=ev["new_tokens"], force=True,
    )  # fmt: skip
    from codesign.sweep.cache import trace_fingerprint

    return {
        **out,
        **info,
        "model_name": name,
        "trace": task["trace"],
        "trace_sha": trace_fingerprint(task["trace"]),
    }


def _sim(task: dict) -> dict:
    from codesign.jobs.simulate import metrics, simulate_view

    layers = tuple(task["layers"]) if task.get("layers") else None
    sparse, dense, peak = simulate_view(
        task["hw"], task["overrides"], task["bank_size"], task["k"], task["batch"], task["trace"],
        phase=task["phase"], layers=layers, work_dir=task.get("work_dir"),
    )  # fmt: skip
    if layers is not None:  # a layer-range part: the variants go back to the parent to be merged
        return {"parts": (sparse, dense, peak)}
    return metrics(sparse, dense, peak)


STAGES = {"finetune": _finetune, "eval": _eval, "sim": _sim}
