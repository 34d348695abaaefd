"""`codesign validate --device cuda`: DRAM bytes (ncu `dram__bytes_read.sum`) and time (CUDA events) of the
sparse FFN kernels on a GPU, against the simulator configured from hwconfigs/h200.yaml.

Cases: Qwen2.5-7B FFN layers (d 3584, I 18944, bf16, B 64, k 16), 1 / 4 / 16 tokens per launch, 4 layers x 2
launches each (every launch reads at least 100 MB, more than the 60 MB L2, and the next launch reads another
layer: no reuse across launches, as the simulator's `residency: none`). Masks: synthetic (correlated, the
case's seed), identical on every machine.

  time   all launches of a case captured in one CUDA graph (no Python launch overhead), replayed, timed with
         CUDA events (median of REPLAYS) against the simulator's cycles / clock          -> within 25 %
  bytes  one pass of the launches under ncu (caches flushed before each kernel, its default), the sum of
         dram__bytes_read.sum over every kernel, against the simulator's weight bytes plus the activation
         and index bytes of codesign.validate.memsys                                     -> within 10 %

The GPU machine may lack the simulator's config stack (pydantic): the measurement needs only torch, triton
and numpy. Without the simulator the run writes its measurements with the comparison "not run here", and
`codesign validate --device cuda --compare FILE` completes it on any machine that has the simulator.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone

import numpy as np

from codesign.errors import CodesignError, ConfigError
from codesign.validate.cases import SYNTHETIC, Case, case_masks

QWEN_HIDDEN, QWEN_INTERMEDIATE = 3584, 18944
BYTES_TOLERANCE, TIME_TOLERANCE = 0.10, 0.25
REPLAYS = 20
ROUTING_TENSORS = ("idx", "bits", "union_cols", "union_counts")
NCU_METRIC = "dram__bytes_read.sum"
TOLERANCES = {
    "dram bytes": f"|error| <= {BYTES_TOLERANCE:.0%} of ncu {NCU_METRIC} (weights + activations + index)",
    "time": f"|error| <= {TIME_TOLERANCE:.0%} of the CUDA-event time of the graphed launches",
}


class NoDeviceError(CodesignError):
    """The GPU check cannot run here (no CUDA device, no ncu, or the interpreter is on)."""


def cuda_cases(quick: bool = False, tokens: tuple[int, ...] = ()) -> list[Case]:
    picked = tokens or ((1,) if quick else (1, 4, 16))
    return [
        Case(SYNTHETIC, t, 64, 16, QWEN_HIDDEN, QWEN_INTERMEDIATE, layers=4, launches=2, seed=100 + t)
        for t in picked
    ]


def run_cuda_progress_total(quick: bool, tokens: tuple[int, ...]) -> int:
    return len(cuda_cases(quick, tokens))


def preflight() -> str:
    """The ncu path; NoDeviceError (one line) unless a CUDA device, compiled Triton and ncu are all here."""
    import torch

    if not torch.cuda.is_available():
        raise NoDeviceError(
            "validate --device cuda: no CUDA device here (torch.cuda.is_available() is False); "
            "use --device cpu, or run bench/gpu_check.sh on a GPU machine"
        )
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise NoDeviceError("validate --device cuda: TRITON_INTERPRET=1 is set; unset it to run on the GPU")
    ncu = shutil.which("ncu")
    if ncu is None:
        raise NoDeviceError(f"validate --device cuda: ncu is not on PATH (needed for {NCU_METRIC})")
    return ncu


# ---- on the GPU ---------------------------------------------------------------------------------------------
def _launch_fn(case: Case):
    """A function running every launch of the case once (layers x launches), and its bundled weights."""
    import torch

    from codesign.kernels.pack import bundle_views
    from codesign.kernels.sparse_swiglu import sparse_swiglu
    from codesign.validate.cpu import launch_routing

    gen = torch.Generator(device="cuda").manual_seed(case.seed)
    d, i = case.hidden, case.intermediate
    bundles = (torch.randn(case.layers, i, 3, d, generator=gen, device="cuda") / d**0.5).to(torch.bfloat16)
    masks = case_masks(case)
    work = []
    for launch in range(case.launches):
        x = torch.randn(case.tokens, d, generator=gen, device="cuda").to(torch.bfloat16)
        for layer in range(case.layers):
            step = masks[launch * case.tokens : (launch + 1) * case.tokens, layer]
            routing = launch_routing(step, case)
            routing = dataclasses.replace(routing, **{n: getattr(routing, n).cuda() for n in ROUTING_TENSORS})
            work.append((x, bundle_views(bundles[layer]), routing))

    def run():
        for x, views, routing in work:
            sparse_swiglu(x, *views, routing, backend="triton")

    return run


def time_case(case: Case) -> dict:
    """Median CUDA-event time of one graph replay of all the case's launches."""
    import torch

    run = _launch_fn(case)
    for _ in range(3):  # compile and autotune outside the graph
        run()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run()
    times_ms = []
    for _ in range(REPLAYS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times_ms.append(start.elapsed_time(end))
    return {"median_s": float(np.median(times_ms)) / 1e3, "replays": REPLAYS, "min_s": min(times_ms) / 1e3}


def ncu_case(case: Case, ncu: str) -> dict:
    """ncu's dram__bytes_read.sum of every kernel of one pass over the case's launches (in an NVTX range)."""
    cmd = [ncu, "--metrics", NCU_METRIC, "--csv", "--nvtx", "--nvtx-include", "validate/",
           sys.executable, "-m", "codesign.validate.cuda", "--ncu-target", json.dumps(case.as_dict())]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return {"error": "ncu timed out after 300 s"}
    kernels = parse_ncu_csv(proc.stdout)
    out = {
        "kernels": len(kernels),
        "dram_bytes_read": sum(b for _, b in kernels),
        "returncode": proc.returncode,
    }
    if not kernels:
        out["error"] = (proc.stderr or proc.stdout)[-1500:]
    return out


def parse_ncu_csv(stdout: str) -> list[tuple[str, float]]:
    """(kernel name, bytes) of every dram__bytes_read.sum row of `ncu --csv` output."""
    import csv
    import io

    scale = {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KB": 1e3, "MB": 1e6, "GB": 1e9}
    lines = [line for line in stdout.splitlines() if line.startswith('"')]
    out = []
    for row in csv.DictReader(io.StringIO("\n".join(lines))):
        if row.get("Metric Name") == NCU_METRIC:
            value = float(row["Metric Value"].replace(",", "")) * scale.get(row.get("Metric Unit", "byte"), 1)
            out.append((row.get("Kernel Name", "?")[:80], value))
    return out


def _ncu_target(case_json: str) -> None:
    import torch

    case = Case(**{k: v for k, v in json.loads(case_json).items() if k != "name"})
    run = _launch_fn(case)
    run()  # compile and autotune outside the profiled range
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_push("validate")
    run()
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_pop()


def measure_cuda(cases: list[Case], ncu: str, progress=None) -> dict:
    """Measurements of every case (torch, triton and numpy only)."""
    import torch

    measured = []
    for n, case in enumerate(cases):
        if progress is not None:
            progress(n, len(cases), case.name)
        measured.append({"case": case.as_dict(), "time": time_case(case), "ncu": ncu_case(case, ncu)})
    return {
        "device": torch.cuda.get_device_name(),
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "torch": torch.__version__,
        "measured": measured,
    }


# ---- against the simulator (any machine with the simulator's config stack) ---------------------------------
def _check(case: str, quantity: str, unit: str, measured, simulated, tolerance: float) -> dict:
    if measured is None or simulated is None:
        return {"case": case, "quantity": quantity, "unit": unit, "measured": measured, "simulated": simulated,
                "error": None, "relative_error": None, "tolerance": tolerance, "ok": None}  # fmt: skip
    rel = (simulated - measured) / measured if measured else float(simulated != measured)
    return {"case": case, "quantity": quantity, "unit": unit, "measured": measured, "simulated": simulated,
            "error": simulated - measured, "relative_error": rel, "tolerance": tolerance,
            "ok": abs(rel) <= tolerance}  # fmt: skip


def compare_cuda(measurements: dict, hw=None, overrides=()) -> dict:
    """The report of `--device cuda`: each measured case against the simulator (codesign.validate.memsys)."""
    from codesign.validate.memsys import hwconfig_path, simulate_case

    cases = []
    for m in measurements["measured"]:
        case = Case(**{k: v for k, v in m["case"].items() if k != "name"})
        sim = simulate_case(case, case_masks(case), 32, hw, overrides)
        sim_bytes = sim.weight_bytes + sim.activation_bytes + sim.index_bytes
        ncu_bytes = m["ncu"].get("dram_bytes_read") if m["ncu"].get("kernels") else None
        checks = [
            _check(case.name, "dram bytes", "B", ncu_bytes, sim_bytes, BYTES_TOLERANCE),
            _check(case.name, "time", "s", m["time"]["median_s"], sim.time_s, TIME_TOLERANCE),
        ]
        cases.append({"case": case.as_dict(), "ok": all(c["ok"] for c in checks), "checks": checks,
                      "measured": m, "simulated": {"sector": sim.as_dict()}})  # fmt: skip
    return _report(measurements, cases, str(hwconfig_path(hw)), list(overrides))


def _report(measurements: dict, cases: list[dict], hwconfig: str | None, overrides: list) -> dict:
    compared = hwconfig is not None
    return {
        "benchmark": "validate",
        "device": f"cuda ({measurements['device']})",
        "date_utc": measurements["date_utc"],
        "hwconfig": hwconfig or "not run here",
        "overrides": overrides,
        "ok": all(c["ok"] for c in cases) if compared else None,
        "cases_total": len(cases),
        "cases_failed": sum(c["ok"] is False for c in cases),
        "tolerances": TOLERANCES,
        "measurements": measurements,
        "cases": cases,
    }


def run_cuda_cli(quick=False, tokens=(), hw=None, overrides=(), compare=None, progress=None) -> dict:
    """The whole `--device cuda` job: measure here (or read a measurement file) and compare if the simulator
    can be imported here; otherwise the report carries the measurements and `ok: null`."""
    if compare is not None:
        try:
            with open(compare) as f:
                measurements = json.load(f)["measurements"]
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"{compare}: not a validate --device cuda results file ({exc})") from None
        return compare_cuda(measurements, hw, overrides)
    ncu = preflight()
    measurements = measure_cuda(cuda_cases(quick, tokens), ncu, progress)
    try:
        import pydantic  # noqa: F401  (the simulator's config stack)
    except ImportError:
        cases = [{"case": m["case"], "ok": None, "checks": [
            _check(m["case"]["name"], "dram bytes", "B", m["ncu"].get("dram_bytes_read"), None, BYTES_TOLERANCE),
            _check(m["case"]["name"], "time", "s", m["time"]["median_s"], None, TIME_TOLERANCE)]}
            for m in measurements["measured"]]  # fmt: skip
        return _report(measurements, cases, None, list(overrides))
    return compare_cuda(measurements, hw, overrides)


if __name__ == "__main__":  # the ncu target: python -m codesign.validate.cuda --ncu-target CASE_JSON
    if len(sys.argv) == 3 and sys.argv[1] == "--ncu-target":
        _ncu_target(sys.argv[2])
    else:
        sys.exit("usage: python -m codesign.validate.cuda --ncu-target CASE_JSON")
