"""Simulator throughput in bank-steps/s (token × layer × bank): numba engine vs the numpy reference.

Shape: Qwen2.5-7B FFNs (hidden 3584, I 18944 = 296 banks of 64, 28 layers) on hwconfigs/bank64.yaml
(LRU residency, double buffering), batch 1. Routing: uniform 16-of-64 per bank, generated in memory chunk by
chunk (a 32K-token store would be ≈ 2 GB on disk): each bank word is drawn from a pool of 65,536 random
16-of-64 subsets — exact k per bank, cheap to generate; generation time is measured separately and
subtracted (timed inside the generator); short numba runs are best of 5. Each measurement runs in its own process (peak RSS per measurement; numba compile excluded by a
2-token warm-up that also loads the on-disk cache). Three DRAM models are measured: `bank_timing` (the
configured model, O(row visits) per layer-step), `bank_stream` (its O(requests + channels) approximation; its
cycles are compared with bank_timing's on the same tokens) and `ideal` (bytes ÷ bandwidth), which isolates
the engine's own cost.

    .venv/bin/python bench/sim_throughput.py                 # default sizes, a few minutes on 2 cores
    .venv/bin/python bench/sim_throughput.py --full-ideal    # also the full 32K tokens with the ideal DRAM
    .venv/bin/python bench/sim_throughput.py --full-stream   # ... and with bank_stream (≈ 2 min each, loaded)
    .venv/bin/python bench/sim_throughput.py --full-ideal --full-stream --baseline-src /tmp/before
        # ... and the same full-size runs with the codesign package of another checkout (e.g. a git worktree
        # of the previous commit), in the same run: before / after ratios

The command users run (`--cli`): `codesign simulate --hw hwconfigs/bank64.yaml --trace T` on synthetic
Qwen2.5-7B traces (uniform, one sequence, written by `codesign trace synth`), every variant the report shows
(sparse, dense, global top-k), default DRAM model and `--set dram.model=ideal`, each in its own process with
a warm numba cache (a user's second run); wall and CPU seconds (user + sys: less sensitive to the training
runs sharing the CPU), load average beside each. With --baseline-src the other checkout runs the same
command on the same trace (at --cli-baseline-tokens: the old code is slow). 32K tokens are extrapolated
from the per-token slope between the two sizes measured and labelled so.

    .venv/bin/python bench/sim_throughput.py --cli --cli-tokens 256 1024 --baseline-src /tmp/sim-before

Writes bench/results/sim_throughput.json (--cli alone updates only its "cli" entry). Numbers at sizes below 32K tokens are extrapolated linearly
(cost per bank-step is flat: every step is an independent draw of the same statistics) and labelled so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result  # noqa: E402

HIDDEN, INTER, LAYERS, B, K = 3584, 18944, 28, 64, 16
FULL_TOKENS = 32768
POOL = 65536
RESULTS = Path(__file__).resolve().parent / "results" / "sim_throughput.json"


def pool_words(rng) -> np.ndarray:
    """POOL random 16-of-64 subsets as uint64 words."""
    picks = np.argpartition(rng.random((POOL, B)), K, axis=1)[:, :K]  # (POOL, K) distinct channels
    return np.bitwise_or.reduce(np.left_shift(np.uint64(1), picks.astype(np.uint64)), axis=1)


def blocks_factory(tokens: int, chunk: int, seed: int = 0, positions: bool = False):
    """A callable returning a fresh iterator of engine Blocks (same masks every time for a seed).

    The time spent generating masks is added to `blocks.generation_s` (subtracted from the engine's time).
    """
    from codesign.sim.engine import Block

    def blocks():
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed)
        pool = pool_words(rng)
        for start in range(0, tokens, chunk):
            n = min(chunk, tokens - start)
            words = pool[rng.integers(0, POOL, size=(n, LAYERS, INTER // B))][..., None]  # (n, L, nb, 1)
            keys = (np.ones(n, dtype=bool), np.zeros(n, dtype=np.int32))
            # one sequence decoding: positions 0, 1, 2, ... (whole-model scope reads its KV cache)
            pos = (np.arange(start, start + n, dtype=np.int32),) if positions else ()
            block = Block(words, *keys, *pos)
            blocks.generation_s += time.perf_counter() - t0
            yield block
            t0 = time.perf_counter()

    blocks.generation_s = 0.0
    return blocks


def measure(
    impl: str, dram_model: str, tokens: int, chunk: int, repeats: int = 1, scope: str = "ffn"
) -> dict:
    """One measurement in this process: seconds for `tokens` tokens, minus mask generation (best of `repeats`).
    scope "model": the whole decoder step of Qwen2.5-7B (attention, KV cache, LM head) on top of the FFN."""
    import codesign
    from codesign.sim.config import load_hwconfig
    from codesign.sim.dram import build_dram
    from codesign.sim.engine import simulate_variant
    from codesign.sim.reference_numpy import simulate_variant_ref
    from codesign.sim.simulation import params_from_config

    # the hwconfig of the checkout being measured (an older one may not know newer keys)
    repo = Path(codesign.__file__).resolve().parents[1]
    cfg = load_hwconfig(repo / "hwconfigs/bank64.yaml", [f"dram.model={dram_model}"])
    if scope == "model":  # (older checkouts have no decoder argument: only passed when asked for)
        from codesign.trace.synth import DECODERS

        p = params_from_config(cfg, HIDDEN, INTER, LAYERS, 128, DECODERS["qwen2.5-7b"])
    else:
        p = params_from_config(cfg.with_overrides(["scope=ffn"]) if hasattr(cfg, "scope") else cfg,
                               HIDDEN, INTER, LAYERS, 128)  # fmt: skip
    run = simulate_variant if impl == "numba" else simulate_variant_ref
    model = scope == "model"
    run(
        "warmup", p, blocks_factory(2, 2, seed=1, positions=model), build_dram(cfg.dram), 1
    )  # compile / cache
    times = []
    for _ in range(repeats):
        blocks = blocks_factory(tokens, chunk, positions=model)
        t0 = time.perf_counter()
        result = run(impl, p, blocks, build_dram(cfg.dram), 1)
        times.append((time.perf_counter() - t0 - blocks.generation_s, blocks.generation_s))
        assert int(result.per_layer[0, 1]) == tokens
    engine_s, generation_s = min(times)
    bank_steps = tokens * LAYERS * (INTER // B)
    return {
        "impl": impl,
        "scope": scope,
        "dram_model": dram_model,
        "tokens": tokens,
        "chunk_tokens": chunk,
        "repeats": repeats,
        "bank_steps": bank_steps,
        "seconds": engine_s,
        "mask_generation_s": generation_s,
        "bank_steps_per_s": bank_steps / engine_s,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "cycles": int(result.per_layer[:, 2].sum()),
    }


def profile_stages(tokens: int, repeats: int = 3) -> dict:
    """Microseconds per layer-step of each engine stage on one block of `tokens` (best of `repeats`):
    grouping tokens into steps, LRU residency, and the timing kernel (request building + DRAM model +
    stage DAG) with each DRAM model — where the time goes."""
    from codesign.sim.config import load_hwconfig
    from codesign.sim.dram import DRAM_MODELS, build_dram
    from codesign.sim.engine import attention_steps, group_steps_numba, step_starts
    from codesign.sim.layer_step import (
        PARALLEL_DRAM_KERNELS,
        dram_kernel_id,
        time_layer_steps,
        time_layer_steps_par,
    )
    from codesign.sim.pipeline import COL, STAGE_BUF_WIDTH, build_pipeline, compile_pipeline
    from codesign.sim.residency import Residency
    from codesign.sim.simulation import params_from_config

    cfg = load_hwconfig(Path(__file__).resolve().parents[1] / "hwconfigs/bank64.yaml", [])
    p = params_from_config(cfg, HIDDEN, INTER, LAYERS, 128)
    block = next(blocks_factory(tokens, tokens)())
    L, nb, W, ns = p.layers, p.num_model_banks, p.words_per_bank, p.num_sram_banks
    starts = step_starts(block.is_decode, block.seq_id, 1, 256)
    layer_steps = len(starts) * L

    def best_us(fn):
        fn()  # compile / load the cache
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best / layer_steps * 1e6

    out = {"tokens": tokens, "layer_steps": layer_steps, "unit": "us per layer-step"}
    out["group_steps"] = best_us(lambda: group_steps_numba(block.words, starts))
    need, tok_ch, step_tokens = group_steps_numba(block.words, starts)
    miss = np.empty_like(need)

    state = Residency(
        p.residency, ns, p.capacity_bundles, p.bank_size, L * nb * W * 64
    )  # built once, as in runs
    out["residency_lru"] = best_us(lambda: state.update(need, miss))
    pipe = compile_pipeline(build_pipeline(p.double_buffer, p.sparse, p.model_scope))
    attn = attention_steps(block.is_decode, block.seq_id, block.position, starts)
    sched = lambda: (np.zeros((len(starts), L, STAGE_BUF_WIDTH), np.int64), np.zeros(2, np.int64))  # noqa: E731
    for model in DRAM_MODELS:
        dram = build_dram(load_hwconfig(Path(__file__).resolve().parents[1] / "hwconfigs/bank64.yaml",
                                        [f"dram.model={model}"]).dram)  # fmt: skip

        def timing(dram=dram):
            buf = np.zeros(p.intermediate // 2 + 2, dtype=np.int64)
            time_layer_steps(need, miss, tok_ch, step_tokens, p.kernel_params(), p.frequency_hz / 1e9,
                             dram_kernel_id(dram.name), dram.params, dram.new_state(), pipe.kinds, pipe.preds,
                             *attn, buf, buf.copy(), *sched(), np.zeros((L, len(COL)), np.int64), np.zeros(L),
                             np.zeros((ns, 3), np.int64), np.zeros((L, nb, 2), np.int64))  # fmt: skip

        out[f"timing_{model}"] = best_us(timing)
        if dram_kernel_id(model) in PARALLEL_DRAM_KERNELS:

            def timing_par(dram=dram):
                buf = np.zeros((L, p.intermediate // 2 + 2), dtype=np.int64)
                state = dram.new_state()
                slots = int(dram.params[0]) * int(dram.params[1])  # channels × banks
                state[slots : slots + int(dram.params[0])] = 1  # every channel used: no in-order prefix
                time_layer_steps_par(need, miss, tok_ch, step_tokens, p.kernel_params(), p.frequency_hz / 1e9,
                                     dram_kernel_id(dram.name), dram.params, state, pipe.kinds, pipe.preds,
                                     *attn, buf, buf.copy(), *sched(), np.zeros((L, ns, 3), np.int64),
                                     np.zeros((L, len(COL)), np.int64), np.zeros(L), np.zeros((ns, 3), np.int64),
                                     np.zeros((L, nb, 2), np.int64))  # fmt: skip

            out[f"timing_{model}_layers_parallel"] = best_us(timing_par)
    return out


def in_subprocess(
    impl: str, dram_model: str, tokens: int, chunk: int, repeats: int = 1, src: Path | None = None,
    scope: str = "ffn",
) -> dict:  # fmt: skip
    """One measurement in a fresh process; `src`: import codesign from that checkout instead."""
    cmd = [
        sys.executable,
        __file__,
        "--measure",
        impl,
        dram_model,
        str(tokens),
        str(chunk),
        str(repeats),
        scope,
    ]
    env = None
    if src is not None:
        env = {**os.environ, "PYTHONPATH": str(src.resolve())}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if src is not None:
        result["codesign_src"] = str(src)
    return result


def default_command_runs(src: Path | None) -> dict:
    """`codesign simulate --hw hwconfigs/bank64.yaml` (the README's command 1) as a user runs it, from the
    checkout `src` (None: this one): first with its numba cache emptied (a fresh install's first run: compile),
    then again (every later run: the cache loads)."""
    root = (src or Path(__file__).resolve().parents[1]).resolve()
    for cached in root.glob("codesign/**/__pycache__/*.nb[ic]"):
        cached.unlink()
    command = ["simulate", "--hw", str(root / "hwconfigs/bank64.yaml")]
    return {"first_run": run_cli(command, root), "second_run": run_cli(command, root)}


def compare_versions(args) -> None:
    """Engine seconds of this checkout vs another (`--compare-src`, e.g. a worktree of the commit before a
    change), same tokens, same process layout, each best of 3: FFN scope (the old model's scope) and, for this
    checkout, the whole decoder step. Simulated cycles differ when the model changed; the ratio is speed."""
    rows = {}
    for dram in ("ideal", "bank_stream"):
        base = in_subprocess("numba", dram, args.compare_tokens, args.chunk, 3, src=args.compare_src)
        ffn = in_subprocess("numba", dram, args.compare_tokens, args.chunk, 3)
        model = in_subprocess("numba", dram, args.compare_tokens, args.chunk, 3, scope="model")
        rows[dram] = {
            "tokens": args.compare_tokens,
            "baseline_seconds": base["seconds"],
            "ffn_scope_seconds": ffn["seconds"],
            "model_scope_seconds": model["seconds"],
            "ffn_scope_slowdown": ffn["seconds"] / base["seconds"],
            "model_scope_slowdown": model["seconds"] / base["seconds"],
            "baseline_cycles": base["cycles"],
            "ffn_scope_cycles": ffn["cycles"],
            "model_scope_cycles": model["cycles"],
        }
        print(dram, json.dumps(rows[dram]), flush=True)
    default_command = {"before": default_command_runs(args.compare_src), "after": default_command_runs(None)}
    print("codesign simulate --hw hwconfigs/bank64.yaml", json.dumps(default_command), flush=True)
    old = json.loads(args.out.read_text()) if args.out.exists() else {"benchmark": "sim_throughput"}
    old["version_compare"] = {
        "baseline_src": str(args.compare_src),
        "rows": rows,
        "default_command": default_command,
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "note": "engine only (simulate_variant), Qwen2.5-7B FFN shapes, batch 1, uniform 16/64; best of 3 each",
    }
    write_result(args.out, old)


def extrapolate(m: dict, tokens: int = FULL_TOKENS) -> dict:
    return {
        "tokens": tokens,
        "bank_steps": tokens * LAYERS * (INTER // B),
        "seconds_extrapolated": m["seconds"] * tokens / m["tokens"],
        "from_tokens": m["tokens"],
    }


def run_cli(args_list: list[str], src: Path | None = None) -> dict:
    """One `codesign ...` command in a fresh process: wall and CPU seconds, load average before and after."""
    env = {**os.environ, "PYTHONPATH": str(src.resolve())} if src is not None else None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    # `python -m` puts the working directory first on sys.path: run from the checkout whose package is meant
    subprocess.run([sys.executable, "-m", "codesign", *args_list], check=True, capture_output=True, env=env,
                   cwd=src.resolve() if src is not None else None)  # fmt: skip
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "load_average_1min": [load, os.getloadavg()[0]]}


def cli_bench(sizes: list[int], baseline_tokens: int, src: Path | None, workdir: Path) -> dict:
    """`codesign simulate` on synthetic Qwen2.5-7B traces of `sizes` decode tokens (see the docstring)."""
    root = Path(__file__).resolve().parents[1]
    sims = {"bank_stream (default)": [], "ideal": ["--set", "dram.model=ideal"]}
    codes = {"after": (root, root)}  # this checkout's package, even if another one is installed
    if src is not None:
        codes["before"] = (src.resolve(), src)
    out: dict = {"sizes": {}, "baseline_src": str(src) if src else None}
    tiny = workdir / "warmup.zarr"
    run_cli(["trace", "synth", str(tiny), "--preset", "smollm2-135m", "--decode-tokens", "4", "--force"])
    for checkout, pypath in codes.values():  # compile / load each checkout's numba cache: a second run
        run_cli(["simulate", "--hw", str(checkout / "hwconfigs/bank64.yaml"), "--trace", str(tiny)], pypath)
    for tokens in sorted(set(sizes) | ({baseline_tokens} if src else set())):
        trace = workdir / f"qwen7b-{tokens}.zarr"
        synth = run_cli(["trace", "synth", str(trace), "--preset", "qwen2.5-7b", "--decode-tokens", str(tokens),
                         "--sequences", "1", "--force"])  # fmt: skip
        row = {"synth": synth}
        for code, (checkout, pypath) in codes.items():
            if code == "before" and tokens != baseline_tokens:
                continue
            for name, extra in sims.items():
                cmd = ["simulate", "--hw", str(checkout / "hwconfigs/bank64.yaml"), "--trace", str(trace),
                       "--json", str(workdir / "r.json"), "--force", *extra]  # fmt: skip
                m = run_cli(cmd, pypath)
                report = json.loads((workdir / "r.json").read_text())
                m["cycles"] = {
                    "sparse": report["totals"]["cycles"],
                    "dense": report["dense_baseline"]["totals"]["cycles"],
                    "global_topk": (report["global_topk"] or {}).get("totals", {}).get("cycles"),
                }
                row[f"{code} {name}"] = m
        out["sizes"][str(tokens)] = row
        shutil.rmtree(trace)
    lo, hi = (str(min(sizes)), str(max(sizes)))
    summary = {}
    for name in sims:
        if lo == hi:
            break
        for unit in ("wall_s", "cpu_s"):
            a, b = out["sizes"][lo][f"after {name}"][unit], out["sizes"][hi][f"after {name}"][unit]
            slope = (b - a) / (int(hi) - int(lo))
            summary[f"{name} {unit} at {FULL_TOKENS} tokens (extrapolated from {lo} and {hi})"] = (
                b + slope * (FULL_TOKENS - int(hi))
            )
    if src is not None:
        row = out["sizes"][str(baseline_tokens)]
        for name in sims:
            for unit in ("wall_s", "cpu_s"):
                summary[f"{name} before/after {unit} at {baseline_tokens} tokens"] = (
                    row[f"before {name}"][unit] / row[f"after {name}"][unit]
                )
    out["summary"] = summary
    out["target"] = {"tokens": FULL_TOKENS, "default_s": 60.0, "ideal_s": 20.0, "cores": os.cpu_count()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--measure",
        nargs=6,
        metavar=("IMPL", "DRAM", "TOKENS", "CHUNK", "REPEATS", "SCOPE"),
        help=argparse.SUPPRESS,
    )
    ap.add_argument("--timing-tokens", type=int, default=64, help="tokens for numba + bank_timing DRAM")
    ap.add_argument("--stream-tokens", type=int, default=1024, help="tokens for numba + bank_stream DRAM")
    ap.add_argument("--ideal-tokens", type=int, default=1024, help="tokens for numba + ideal DRAM")
    ap.add_argument(
        "--ref-tokens", type=int, default=16, help="tokens for the side-by-side numpy/numba ratio"
    )
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--profile-tokens", type=int, default=32, help="tokens for the per-stage profile")
    ap.add_argument("--profile-only", action="store_true", help="print the per-stage profile and exit")
    ap.add_argument("--full-ideal", action="store_true", help="also run numba + ideal DRAM on all 32K tokens")
    ap.add_argument(
        "--full-stream", action="store_true", help="also run numba + bank_stream DRAM on all 32K tokens"
    )
    ap.add_argument(
        "--baseline-src",
        type=Path,
        help="checkout whose codesign package to measure too, full size (with --full-ideal / --full-stream)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--compare-src", type=Path, help="only compare engine speed with this checkout's codesign"
    )
    ap.add_argument("--compare-tokens", type=int, default=512)
    ap.add_argument("--cli", action="store_true", help="measure only the command users run (updates 'cli')")
    ap.add_argument("--cli-tokens", type=int, nargs="+", default=[256, 1024], help="trace sizes for --cli")
    ap.add_argument("--cli-baseline-tokens", type=int, default=128, help="trace size for --baseline-src")
    args = ap.parse_args()
    if args.cli:
        with tempfile.TemporaryDirectory() as tmp:
            cli = cli_bench(args.cli_tokens, args.cli_baseline_tokens, args.baseline_src, Path(tmp))
        old = json.loads(args.out.read_text()) if args.out.exists() else {"benchmark": "sim_throughput"}
        old["cli"] = cli
        old["cli_machine"] = {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average": os.getloadavg(),
        }
        write_result(args.out, old)
        print(json.dumps(cli["summary"], indent=2))
        return
    if args.profile_only:
        print(json.dumps(profile_stages(args.profile_tokens), indent=2))
        return
    if args.measure:
        impl, dram, tokens, chunk, repeats, scope = args.measure
        print(json.dumps(measure(impl, dram, int(tokens), int(chunk), int(repeats), scope)))
        return
    if args.compare_src is not None:
        compare_versions(args)
        return

    cmd = [sys.executable, __file__, "--profile-only", "--profile-tokens", str(args.profile_tokens)]
    profile = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    runs = {}
    for dram in ("bank_timing", "ideal"):  # same tokens, same process layout: the numpy/numba ratio
        runs[f"numpy_{dram}_{args.ref_tokens}"] = in_subprocess("numpy", dram, args.ref_tokens, args.chunk)
        runs[f"numba_{dram}_{args.ref_tokens}"] = in_subprocess("numba", dram, args.ref_tokens, args.chunk, 5)
    runs[f"numba_bank_timing_{args.timing_tokens}"] = in_subprocess(
        "numba", "bank_timing", args.timing_tokens, args.chunk
    )
    runs[f"numba_bank_stream_{args.timing_tokens}"] = in_subprocess(
        "numba", "bank_stream", args.timing_tokens, args.chunk
    )  # same tokens as bank_timing: the deviation in simulated cycles
    runs[f"numba_bank_stream_{args.stream_tokens}"] = in_subprocess(
        "numba", "bank_stream", args.stream_tokens, args.chunk
    )
    if args.full_stream:
        runs[f"numba_bank_stream_{FULL_TOKENS}"] = in_subprocess(
            "numba", "bank_stream", FULL_TOKENS, args.chunk
        )
    half = max(args.ideal_tokens // 2, 1)
    runs[f"numba_ideal_{half}"] = in_subprocess(
        "numba", "ideal", half, args.chunk
    )  # RSS must not grow with tokens
    runs[f"numba_ideal_{args.ideal_tokens}"] = in_subprocess("numba", "ideal", args.ideal_tokens, args.chunk)
    if args.full_ideal:
        runs[f"numba_ideal_{FULL_TOKENS}"] = in_subprocess("numba", "ideal", FULL_TOKENS, args.chunk)

    baseline = {}
    if args.baseline_src is not None:
        for dram, on in (("ideal", args.full_ideal), ("bank_stream", args.full_stream)):
            if on:
                base = in_subprocess("numba", dram, FULL_TOKENS, args.chunk, src=args.baseline_src)
                runs[f"baseline_numba_{dram}_{FULL_TOKENS}"] = base
                now = runs[f"numba_{dram}_{FULL_TOKENS}"]
                if base["cycles"] != now["cycles"]:
                    raise SystemExit(f"{dram}: baseline cycles {base['cycles']} != {now['cycles']}")
                baseline[dram] = {
                    "tokens": FULL_TOKENS,
                    "baseline_seconds": base["seconds"],
                    "seconds": now["seconds"],
                    "speedup": base["seconds"] / now["seconds"],
                    "same_cycles": True,
                    "baseline_src": str(args.baseline_src),
                }

    def ratio(dram):
        a, b = runs[f"numpy_{dram}_{args.ref_tokens}"], runs[f"numba_{dram}_{args.ref_tokens}"]
        return a["seconds"] / b["seconds"]

    timing = runs[f"numba_bank_timing_{args.timing_tokens}"]
    ideal = (
        runs[f"numba_ideal_{FULL_TOKENS}"] if args.full_ideal else runs[f"numba_ideal_{args.ideal_tokens}"]
    )
    target = {"tokens": FULL_TOKENS, "bank_steps": FULL_TOKENS * LAYERS * (INTER // B), "seconds": 10.0}
    summary = {
        "target": target,
        "numba_speedup_over_numpy": {
            "bank_timing": ratio("bank_timing"),
            "ideal": ratio("ideal"),
            "measured_on_tokens": args.ref_tokens,
        },  # fmt: skip
        "full_size_numba_bank_timing": {**extrapolate(timing), "label": "extrapolated"},
        "full_size_numba_bank_stream": (
            {
                "tokens": FULL_TOKENS,
                "seconds": runs[f"numba_bank_stream_{FULL_TOKENS}"]["seconds"],
                "label": "measured",
            }
            if args.full_stream
            else {**extrapolate(runs[f"numba_bank_stream_{args.stream_tokens}"]), "label": "extrapolated"}
        ),  # fmt: skip
        "bank_stream_vs_bank_timing": {
            "tokens": args.timing_tokens,
            "speedup": timing["seconds"] / runs[f"numba_bank_stream_{args.timing_tokens}"]["seconds"],
            "cycles_ratio": runs[f"numba_bank_stream_{args.timing_tokens}"]["cycles"] / timing["cycles"],
        },  # fmt: skip
        "full_size_numba_ideal": (
            {"tokens": FULL_TOKENS, "seconds": ideal["seconds"], "label": "measured"}
            if args.full_ideal
            else {**extrapolate(ideal), "label": "extrapolated"}
        ),  # fmt: skip
        "full_size_numpy_bank_timing": {
            **extrapolate(runs[f"numpy_bank_timing_{args.ref_tokens}"]),
            "label": "extrapolated",
        },  # fmt: skip
        "full_size_vs_baseline": baseline,
        "peak_rss_bytes_vs_tokens": {
            str(r["tokens"]): r["peak_rss_bytes"]
            for k, r in runs.items()
            if k.startswith("numba_ideal") and r["tokens"] != args.ref_tokens
        },  # fmt: skip
    }
    out = {
        "benchmark": "sim_throughput",
        "shape": {"model": "qwen2.5-7b", "hidden": HIDDEN, "intermediate": INTER, "layers": LAYERS,
                  "bank_size": B, "k": K, "batch": 1, "hwconfig": "hwconfigs/bank64.yaml", "residency": "lru"},
        "masks": f"uniform {K}-of-{B} per bank, drawn from a pool of {POOL} random subsets, generated in memory "
                 "chunk by chunk (not read from a store); generation time subtracted",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
        "summary": summary,
        "profile_stages": profile,
        "runs": runs,
    }  # fmt: skip
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    for key in ("cli", "cli_machine"):  # kept from the last --cli run
        if key in old:
            out[key] = old[key]
    write_result(args.out, out)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
