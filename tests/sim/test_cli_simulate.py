"""`codesign simulate`: runs on the embedded default, writes its outputs, refuses to overwrite, one-line errors."""

import json

import pytest

from codesign.cli import main
from codesign.trace import default_trace_path
from codesign.trace.store import TraceReader
from codesign.trace.synth import SynthSpec, write_synthetic

HW = "hwconfigs/bank64.yaml"
FAST = ["--set", "dram.model=ideal"]  # keeps the test short; the bank_timing model is covered elsewhere


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_default_trace_with_all_outputs(tmp_path, capsys):
    json_path, csv_dir, plot_dir = tmp_path / "r.json", tmp_path / "csv", tmp_path / "plots"
    args = [
        "simulate",
        "--hw",
        HW,
        *FAST,
        "--json",
        str(json_path),
        "--csv",
        str(csv_dir),
        "--plot",
        str(plot_dir),
    ]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "speedup" in out and "scope model: the whole decoder step" in out and "FFN only:" in out
    report = json.loads(json_path.read_text())
    # The embedded default is recorded from the trained SmolLM2 when shipped, else synthetic — and says which.
    synthetic = TraceReader(default_trace_path()).meta.synthetic
    assert ("(synthetic)" in out) == synthetic  # the header line labels a synthetic trace
    for key in ("cycles", "time_s", "tokens", "tokens_per_s", "dram_read_bytes", "sram_read_bytes", "energy_pj",
                "energy_per_token_pj", "bank_imbalance"):  # fmt: skip
        assert key in report["totals"]
    assert (report["label"] == "synthetic") == synthetic and report["trace"]["synthetic"] == synthetic
    assert report["hwconfig"]["dram"]["model"] == "ideal" and report["scope"] == "model"
    assert report["model"]["decoder"]["kv_heads"] == 3 and report["vs_dense"]["ffn_scope_speedup"] > 1
    assert "scope" in (csv_dir / "totals.csv").read_text().splitlines()[0]
    assert sorted(p.name for p in csv_dir.iterdir()) == ["per_bank.csv", "per_layer.csv", "totals.csv"]
    assert sorted(p.name for p in plot_dir.iterdir()) == [
        "bank_load.png",
        "bottleneck.png",
        "dram_per_layer.png",
    ]
    assert all(p.stat().st_size > 1000 for p in plot_dir.iterdir())
    before = json_path.read_text()
    code, _, err = run_cli(capsys, *args)  # existing outputs: refused before simulating
    assert code == 2 and "already exists" in err and "Traceback" not in err
    assert json_path.read_text() == before


def test_force_overwrites_and_batch(tmp_path, capsys):
    trace = tmp_path / "t.zarr"
    write_synthetic(SynthSpec("uniform", 64, 512, 2, sequences=4, decode_tokens=4), trace)
    out_json = tmp_path / "r.json"
    out_json.write_text("{}")
    code, _, err = run_cli(capsys, "simulate", "--hw", HW, "--trace", str(trace), "--batch", "4", "--json",
                           str(out_json), "--force")  # fmt: skip
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert report["batch"] == 4 and report["totals"]["steps"] == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trace", "/nonexistent/trace.zarr"], "does not exist"),
        (["--set", "sram.no_such_key=1"], "sram.no_such_key"),
        (["--set", "sparsity.k=100"], "sparsity.k"),
        (["--batch", "0"], "--batch"),
        (["--batch", "64"], "decodes at most 32 together"),  # the default trace decodes 32 prompts together
    ],
)
def test_user_mistakes_are_one_line(capsys, args, message):
    code, _, err = run_cli(capsys, "simulate", "--hw", HW, *args)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_hwconfig(capsys):
    code, _, err = run_cli(capsys, "simulate", "--hw", "hwconfigs/nope.yaml")
    assert code == 2 and "nope.yaml" in err and "Traceback" not in err
