import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_script_runs_every_section_on_cpu(tmp_path):
    """bench/gpu_kernels.py --dry-run: the GPU script's code paths on CPU (interpreter, tiny shapes)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench/gpu_kernels.py"), "--dry-run", "--out-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (path,) = tmp_path.glob("gpu-kernels-dryrun-*.json")
    result = json.loads(path.read_text())
    for section in ("env", "copy_bw", "correctness", "timings", "recorded", "ncu", "backward"):
        assert "error" not in result[section], result[section].get("traceback")
    assert result["correctness"]["tokens_1"]["rel_err_vs_fp32_masked_dense"] < 1e-2
    assert result["timings"]["tokens_1"]["channels_read_fraction"] == 0.25
    # recorded routing: each token keeps k of every bank, so a batch reads at least k/B of the weights
    for tokens in (4, 16, 64):
        for row in result["recorded"][f"tokens_{tokens}"]["samples"]:
            assert 0.25 <= row["channels_read_fraction"] <= 1.0
