"""Whole-decoder-step simulation through `simulate` and the CLI: a small smollm2-135m preset trace (closed
forms end to end, k = B through the masks equals the dense baseline), achieved DRAM bandwidth on the default
trace, resident predictors that do not fit, and traces without (or with a bad) decoder shape. Engine-level
properties: tests/sim/test_model_scope.py."""

import json

import numpy as np
import pytest
from test_cli_simulate import run_cli  # same directory (pytest's rootdir-less prepend import)

from codesign.errors import TraceError
from codesign.sim.config import load_hwconfig
from codesign.sim.dram import build_dram
from codesign.sim.engine import simulate_variant
from codesign.sim.report import build_report
from codesign.sim.simulation import params_from_config, simulate, trace_blocks
from codesign.trace import default_trace_path
from codesign.trace.store import TraceMeta, TraceReader
from codesign.trace.synth import SynthSpec, write_synthetic

HW = "hwconfigs/bank64.yaml"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "outside the CACTI"),  # 4 macros of 1 KB: the SRAM cost check refuses first
        (["--set", "sram.macros_per_bank=1"], "predictor.resident: the predictors need 8,110,080 bytes"),
    ],
)
def test_cli_refuses_resident_predictors_that_do_not_fit(capsys, extra, message):
    code, _, err = run_cli(capsys, "simulate", "--hw", HW, "--set", "predictor.resident=true",
                           "--set", "sram.bank_size_bytes=4096", *extra)  # fmt: skip
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# ---- 6. achieved DRAM bandwidth ---------------------------------------------------------------------------
@pytest.mark.parametrize(("batch", "model"), [(1, "bank_stream"), (8, "bank_stream"), (32, "bank_stream"),
                                              (32, "ideal")])  # fmt: skip
def test_achieved_bandwidth_never_above_peak_at_model_scope(batch, model):
    cfg = load_hwconfig(HW, [f"dram.model={model}"])
    report = build_report(simulate(cfg, default_trace_path(), batch=batch))
    assert report["scope"] == "model"
    sustained = cfg.resolved()["derived"]["sustained_dram_bandwidth_bytes_per_s"]
    assert sustained < cfg.peak_dram_bandwidth_bytes_per_s  # refresh takes its share
    for summary in (report, report["dense_baseline"]):
        t = summary["totals"]
        assert t["dram_kv_write_bytes"] == t["dram_write_bytes"] > 0 and t["dram_attention_bytes"] > 0
        assert 0 < t["achieved_dram_bandwidth_bytes_per_s"] <= sustained
        assert t["achieved_dram_bandwidth_bytes_per_s"] == pytest.approx(
            (t["dram_read_bytes"] + t["dram_write_bytes"]) / t["time_s"], rel=1e-12
        )


# ---- 7. traces without (or with a bad) decoder shape ----------------------------------------------------
def test_trace_without_decoder_shape_runs_at_ffn_scope_and_says_why(tmp_path):
    path = tmp_path / "t.zarr"
    write_synthetic(SynthSpec("uniform", 64, 512, 2, sequences=2, decode_tokens=3), path, with_global=False)
    assert TraceReader(path).meta.decoder is None  # not a preset shape
    report = build_report(simulate(load_hwconfig(HW, ["dram.model=ideal"]), path, batch=2))
    assert report["scope"] == "ffn" and report["model"]["decoder"] is None
    assert "records no decoder shape" in report["scope_note"] and "--preset" in report["scope_note"]
    t = report["totals"]
    assert (
        t["dram_attention_bytes"] == t["dram_head_bytes"] == t["attention_macs"] == t["dram_write_bytes"] == 0
    )
    assert report["ffn_scope"]["cycles"] == t["cycles"]
    # metadata written before the decoder shape was stored: no key at all
    old = TraceReader(path).meta.to_dict()
    del old["decoder"]
    assert TraceMeta.from_dict(old).decoder is None


GOOD = {"heads": 9, "kv_heads": 3, "head_dim": 64, "vocab": 49152, "tied_embeddings": True}


@pytest.mark.parametrize(
    ("decoder", "message"),
    [
        ({**GOOD, "kv_heads": 4}, "kv_heads 4 does not divide heads 9"),
        ({k: v for k, v in GOOD.items() if k != "vocab"}, "missing ['vocab']"),
        ({**GOOD, "head_dim": 0}, "decoder.head_dim must be a positive integer"),
        ({**GOOD, "heads": True}, "decoder.heads must be a positive integer"),
        ({**GOOD, "heads": 9.0}, "decoder.heads must be a positive integer"),
        ({**GOOD, "rope": 1}, "unknown ['rope']"),
        ([9, 3, 64], "decoder must be a mapping"),
    ],
)
def test_bad_decoder_shape_is_a_trace_error(decoder, message):
    with pytest.raises(TraceError, match="trace metadata") as exc:
        TraceMeta("m", 576, 1536, 30, 64, 16, decoder=decoder)
    assert message in str(exc.value)
    good = TraceMeta("m", 576, 1536, 30, 64, 16, decoder=GOOD).to_dict()
    with pytest.raises(TraceError):
        TraceMeta.from_dict({**good, "decoder": decoder})


# ---- end to end: a small smollm2-135m preset trace through the CLI ----------------------------------------
@pytest.fixture(scope="module")
def preset_traces(tmp_path_factory):
    root = tmp_path_factory.mktemp("preset")
    paths = {}
    for k in (16, 64):
        spec = SynthSpec("uniform", 576, 1536, 30, k=k, sequences=2, prefill_tokens=8, decode_tokens=4,
                         seed=3, model_name="smollm2-135m")  # fmt: skip
        write_synthetic(spec, root / f"k{k}.zarr", with_global=False)
        paths[k] = root / f"k{k}.zarr"
    return paths


def test_cli_on_a_preset_trace_reports_model_scope_closed_forms(preset_traces, tmp_path, capsys):
    out_json = tmp_path / "r.json"
    code, out, err = run_cli(capsys, "simulate", "--hw", HW, "--trace", str(preset_traces[16]), "--batch", "2",
                             "--set", "dram.model=ideal", "--json", str(out_json))  # fmt: skip
    assert code == 0, err
    assert "scope model: the whole decoder step" in out and "FFN only" in out
    report = json.loads(out_json.read_text())
    decoder = report["model"]["decoder"]
    q, kv, h, L = 9 * 64, 3 * 64, 576, 30
    assert decoder["attention_bytes_per_layer"] == (2 * h * q + 2 * h * kv) * 2 == 1769472
    assert (decoder["kv_row_bytes_per_layer"], decoder["lm_head_bytes"]) == (768, 49152 * 576 * 2)
    T, steps = 24, 2 + 4  # one prefill chunk per sequence (8 < 256 tokens), 4 decode steps of both sequences
    ctx = 2 * sum(range(1, 9)) + 2 * (9 + 10 + 11 + 12)
    for summary in (report, report["dense_baseline"]):
        t = summary["totals"]
        assert (t["tokens"], t["steps"]) == (T, steps)
        assert t["dram_attention_bytes"] == steps * L * 1769472
        assert t["dram_kv_write_bytes"] == T * L * 768
        assert t["dram_kv_read_bytes"] == L * 768 * 2 * (8 + 9 + 10 + 11)  # prefill chunks start at 0
        assert t["dram_head_bytes"] == steps * 49152 * h * 2 + T * h * 2
        assert t["attention_macs"] == L * (T * (2 * h * q + 2 * h * kv) + ctx * 2 * q)
        assert t["head_macs"] == T * 49152 * h
        assert summary["ffn_scope"]["cycles"] < t["cycles"]
    ratios = report["vs_dense"]
    assert 1 < ratios["speedup"] < ratios["ffn_scope_speedup"]  # the fixed attention/head costs dilute it


def test_k_equal_b_masks_path_equals_the_dense_baseline_on_a_preset(preset_traces):
    cfg = load_hwconfig(HW, ["dram.model=ideal"])
    dense = simulate(cfg, preset_traces[16], batch=2).dense  # the k = 16 run's dense baseline
    reader = TraceReader(preset_traces[64])
    meta = reader.meta
    p = params_from_config(load_hwconfig(HW, ["dram.model=ideal", "sparsity.k=64"]), meta.hidden,
                           meta.intermediate, meta.layers, meta.predictor_rank, meta.decoder)  # fmt: skip
    assert p.model_scope and not p.sparse
    v = simulate_variant("masks", p, lambda: trace_blocks(reader, p, "masks"), build_dram(cfg.dram), 2)
    np.testing.assert_array_equal(v.per_layer, dense.per_layer)
    np.testing.assert_array_equal(v.per_sram_bank, dense.per_sram_bank)
    np.testing.assert_array_equal(v.dram_time_ns, dense.dram_time_ns)


def test_ffn_scope_config_on_a_preset_trace(preset_traces):
    report = build_report(
        simulate(load_hwconfig(HW, ["dram.model=ideal", "scope=ffn"]), preset_traces[16], batch=2)
    )
    assert report["scope"] == "ffn" and "scope ffn (hwconfig)" in report["scope_note"]
    assert (
        report["totals"]["dram_attention_bytes"] == 0
        and report["ffn_scope"]["cycles"] == report["totals"]["cycles"]
    )
