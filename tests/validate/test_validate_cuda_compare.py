"""The `--device cuda` comparison on a CPU machine: measurements (as a GPU run would write them, numbers
chosen here around the simulator's own) against the simulator, tolerances 10 % bytes / 25 % time, --compare."""

import json

import pytest

from codesign.validate.cases import SYNTHETIC, Case, case_masks
from codesign.validate.cuda import BYTES_TOLERANCE, TIME_TOLERANCE, compare_cuda, parse_ncu_csv
from codesign.validate.memsys import simulate_case

CASE = Case(SYNTHETIC, 4, 64, 16, 200, 320, layers=2, launches=2, seed=3)


def measurements(bytes_factor: float, time_factor: float) -> dict:
    sim = simulate_case(CASE, case_masks(CASE), 32)
    total = sim.weight_bytes + sim.activation_bytes + sim.index_bytes
    return {
        "device": "NVIDIA H200",
        "date_utc": "2026-12-03T00:00:00Z",
        "torch": "test",
        "measured": [
            {
                "case": CASE.as_dict(),
                "time": {"median_s": sim.time_s * time_factor, "replays": 20, "min_s": sim.time_s},
                "ncu": {"kernels": 3, "dram_bytes_read": total * bytes_factor, "returncode": 0},
            }
        ],
    }


@pytest.mark.parametrize(
    "bytes_factor, time_factor, ok",
    [(1.05, 1.2, (True, True)), (1.2, 1.0, (False, True)), (1.0, 1.4, (True, False))],
)
def test_tolerances(bytes_factor, time_factor, ok):
    report = compare_cuda(measurements(bytes_factor, time_factor))
    checks = {c["quantity"]: c for c in report["cases"][0]["checks"]}
    assert (checks["dram bytes"]["ok"], checks["time"]["ok"]) == ok
    assert report["ok"] is all(ok) and report["device"] == "cuda (NVIDIA H200)"
    # relative error is (simulated - measured) / measured
    assert checks["dram bytes"]["relative_error"] == pytest.approx(1 / bytes_factor - 1)
    assert checks["time"]["relative_error"] == pytest.approx(1 / time_factor - 1)
    assert (BYTES_TOLERANCE, TIME_TOLERANCE) == (0.10, 0.25)


def test_compare_a_results_file_through_the_cli(tmp_path, capsys):
    from codesign.cli import main

    results = tmp_path / "gpu.json"
    results.write_text(json.dumps({"measurements": measurements(1.0, 2.0)}))
    out = tmp_path / "compared.json"
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--compare", str(results), "--json", str(out)])
    assert exc.value.code == 1  # time off by 2x
    report = json.loads(out.read_text())
    assert report["ok"] is False and report["measurements"]["device"] == "NVIDIA H200"
    assert "cuda (NVIDIA H200)" in capsys.readouterr().out


def test_parse_ncu_csv():
    stdout = "\n".join(
        [
            "==PROF== Connected to process 1",
            '"ID","Kernel Name","Metric Name","Metric Unit","Metric Value"',
            '"0","_decode_gate_up_kernel","dram__bytes_read.sum","Mbyte","67.94"',
            '"1","_decode_down_kernel","dram__bytes_read.sum","Kbyte","1,024.5"',
            '"2","_reduce_splits_kernel","sm__cycles.sum","cycle","12"',
        ]
    )
    assert parse_ncu_csv(stdout) == [("_decode_gate_up_kernel", 67.94e6), ("_decode_down_kernel", 1024.5e3)]
