"""`codesign trace synth|info|rebank` end to end, including its refusals."""

import json
import subprocess
import sys

from codesign.trace import default_trace_path
from codesign.trace.store import TraceReader


def run(*args):
    return subprocess.run([sys.executable, "-m", "codesign", "trace", *args], capture_output=True, text=True)


def one_line_error(out, needle):
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert needle in out.stderr, out.stderr


def test_synth_info_rebank(tmp_path):
    t = tmp_path / "t.zarr"
    out = run(
        "synth",
        str(t),
        "--hidden",
        "64",
        "--intermediate",
        "256",
        "--layers",
        "2",
        "--kind",
        "zipf",
        "--decode-tokens",
        "8",
        "--with-logits",
    )
    assert out.returncode == 0, out.stderr
    out = run("info", str(t), "--json", str(tmp_path / "i.json"))
    assert out.returncode == 0 and "SYNTHETIC" in out.stdout and "union density" in out.stdout
    info = json.loads((tmp_path / "i.json").read_text())
    assert info["stats"]["density"] == 0.25 and info["meta"]["synthetic"] is True
    out = run("rebank", str(t), str(tmp_path / "r.zarr"), "-B", "32", "-k", "8")
    assert out.returncode == 0, out.stderr
    assert TraceReader(tmp_path / "r.zarr").meta.k == 8


def test_refusals_are_one_line(tmp_path):
    t = tmp_path / "t.zarr"
    assert run("synth", str(t), "--preset", "smollm2-135m", "--decode-tokens", "1").returncode == 0
    one_line_error(run("synth", str(t), "--preset", "smollm2-135m"), "already exists")
    one_line_error(run("synth", str(tmp_path / "u"), "--hidden", "8"), "--preset or --intermediate, --layers")
    one_line_error(
        run("synth", str(tmp_path / "u"), "--preset", "smollm2-135m", "-B", "100"), "does not divide"
    )
    one_line_error(run("info", str(tmp_path / "missing.zarr")), "does not exist")
    one_line_error(run("info", str(tmp_path)), "not a codesign trace store")
    one_line_error(run("rebank", str(t), str(tmp_path / "r"), "-B", "32", "-k", "8"), "no logits")


def test_embedded_default_trace_is_readable_and_labelled():
    r = TraceReader(default_trace_path())
    assert r.num_tokens > 0 and r.meta.model_name.startswith("smollm2")
    assert (r.meta.hidden, r.meta.intermediate, r.meta.layers) == (576, 1536, 30)
    assert r.meta.synthetic == ("synthetic" in r.meta.source)


def test_a_synth_that_fails_midway_leaves_no_store(tmp_path, monkeypatch, capsys):
    """Nothing half-made: a failure after the store was created removes it (and a rerun is not refused)."""
    import pytest

    import codesign.trace.synth as synth
    from codesign.cli import main
    from codesign.errors import TraceError

    real = synth.iter_synthetic

    def failing(*args, **kwargs):
        blocks = real(*args, **kwargs)
        yield next(blocks)
        raise TraceError("disk full (simulated)")

    monkeypatch.setattr(synth, "iter_synthetic", failing)
    out = tmp_path / "t.zarr"
    argv = ["trace", "synth", str(out), "--hidden", "64", "--intermediate", "256", "--layers", "2",
            "--sequences", "4", "--decode-tokens", "128"]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and "disk full (simulated)" in capsys.readouterr().err
    assert not out.exists()
    monkeypatch.setattr(synth, "iter_synthetic", real)
    main(argv)
    assert TraceReader(out).num_tokens == 512
