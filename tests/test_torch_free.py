"""The simulator half installs and runs without the model stack: no torch, triton or transformers imported."""

import subprocess
import sys
from pathlib import Path

HW = Path(__file__).resolve().parents[1] / "hwconfigs" / "bank64.yaml"

BLOCK_AND_RUN = """
import sys
for name in ("torch", "triton", "transformers"):
    sys.modules[name] = None  # any import of these now raises ImportError
from codesign.cli import main
main(sys.argv[1:])
"""


def test_simulate_and_trace_commands_never_import_torch(tmp_path):
    synth = [
        sys.executable,
        "-c",
        BLOCK_AND_RUN,
        "trace",
        "synth",
        str(tmp_path / "t.zarr"),
        "--preset",
        "smollm2-135m",
        "--decode-tokens",
        "4",
    ]
    assert subprocess.run(synth, capture_output=True, text=True).returncode == 0
    sim = [
        sys.executable,
        "-c",
        BLOCK_AND_RUN,
        "simulate",
        "--hw",
        str(HW),
        "--trace",
        str(tmp_path / "t.zarr"),
        "--set",
        "dram.model=ideal",
        "--json",
        str(tmp_path / "r.json"),
    ]
    out = subprocess.run(sim, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "r.json").stat().st_size > 0
