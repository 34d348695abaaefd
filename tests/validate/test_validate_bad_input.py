"""`codesign validate` on bad input: one clear line, exit 2, no traceback, before any kernel runs."""

import json
import subprocess
import sys

import numpy as np
import pytest

from codesign.errors import TraceError
from codesign.validate.cases import SYNTHETIC, Case
from codesign.validate.memsys import check_balanced


class Run:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def validate(capsys):
    """Run `codesign validate ARGS` in this process through the console entry point."""
    from codesign.cli import main

    def run(*args):
        with pytest.raises(SystemExit) as exc:
            main(["validate", *args])
        out = capsys.readouterr()
        return Run(exc.value.code, out.out, out.err)

    return run


def one_line_error(proc, *words):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def short_trace(tmp_path):
    from codesign.trace.synth import SynthSpec, write_synthetic

    spec = SynthSpec("uniform", hidden=64, intermediate=256, layers=2, sequences=1, decode_tokens=3)
    write_synthetic(spec, tmp_path / "short.zarr", with_global=False)
    return tmp_path / "short.zarr"


def test_bad_inputs_are_one_line_each(validate, tmp_path, short_trace):
    # shapes the kernels cannot run
    one_line_error(validate("--source", "synthetic", "-B", "48"), "bank size 48", "power of two")
    one_line_error(validate("--source", "synthetic", "-B", "64", "-k", "80"), "k=80")
    one_line_error(validate("--source", "synthetic", "-B", "64", "--intermediate", "200"), "intermediate 200")
    one_line_error(validate("--source", "synthetic", "--tokens", "100", "-B", "64", "-k", "16"), "100 tokens")
    # a trace without what the case needs: no logits to re-select B = 32, too few tokens
    one_line_error(validate("--source", "recorded", "-B", "32", "--tokens", "1"), "no logits", "B=32")
    one_line_error(
        validate("--source", "recorded", "--trace", str(short_trace), "--tokens", "4"), "holds 3 tokens"
    )
    one_line_error(validate("--trace", str(tmp_path / "missing.zarr")), "does not exist")
    # the memory-system config: checked before the first kernel
    one_line_error(validate("--quick", "--set", "sram.nope=1"), "sram.nope")
    one_line_error(validate("--quick", "--hw", str(tmp_path / "no.yaml")), "not found")


def test_cuda_without_a_device_refuses_in_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "codesign", "validate", "--device", "cuda"], capture_output=True, text=True
    )
    one_line_error(proc, "--device cuda", "no CUDA device")


def test_existing_json_is_not_overwritten(validate, tmp_path):
    out = tmp_path / "v.json"
    out.write_text("{}")
    one_line_error(validate("--quick", "--json", str(out)), "already exists")
    assert out.read_text() == "{}"


def test_compare_refuses_a_file_that_is_not_a_cuda_result(validate, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"cases": []}))
    one_line_error(validate("--compare", str(bad)), "not a validate --device cuda results file")


def test_unbalanced_masks_are_refused():
    case = Case(SYNTHETIC, 1, 64, 16, 64, 128, layers=1, launches=1)
    masks = np.zeros((1, 1, 128), dtype=bool)
    masks[0, 0, :17] = True  # 17 kept in bank 0, none in bank 1
    with pytest.raises(TraceError, match="0..17 channels per bank"):
        check_balanced(case, masks)
