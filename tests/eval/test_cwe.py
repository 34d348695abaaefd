"""RULER-CWE generator, scorer, variants and proxy on a byte tokenizer and a tiny random Llama."""

from __future__ import annotations

import random
import re

import pytest
import torch

from codesign.errors import ConfigError, ModelError
from codesign.eval.cwe import (
    ANSWER_PREFIX,
    SETTINGS,
    CweSetting,
    Regime,
    build_prompt,
    check_request,
    count_tokens,
    fit_num_words,
    make_samples,
    numbered,
    score_prediction,
    word_pool,
)
from codesign.eval.cwe_score import (
    answer_loglik,
    bootstrap_ci,
    check_variant,
    evaluate_cwe,
    spearman,
    variant,
)
from codesign.train.models import ByteTokenizer

# Small enough for byte-level prompts of ~1-2 KB: 2 common words at 4 / 1 repeats, 8 generated tokens.
TINY = CweSetting("tiny", 2, short=Regime(6, 3, 1, 4, 1), long=Regime(6, 3, 1, 6, 2), long_from=1536,
                  tokens_to_generate=8)  # fmt: skip


def tiny_sparse(layers: int = 3):
    from transformers import AutoModelForCausalLM, LlamaConfig

    from codesign.sparse import SparsityConfig, upcycle

    config = LlamaConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=layers, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=257, max_position_embeddings=2048)  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    # rank = hidden: the SVD init reproduces the gate pre-activation exactly, so healthy layers route well
    upcycle(model, SparsityConfig(bank_size=64, k=16, rank=64, init="svd"))
    return model.eval()


def test_word_pool_is_rulers():
    pool = word_pool(42)
    assert 8000 < len(pool) < 8400 and len(set(pool)) == len(
        pool
    )  # nouns + adjectives + verbs, de-duplicated
    assert pool == word_pool(42) and pool != word_pool(7) and sorted(pool) == sorted(word_pool(7))


def test_prompt_structure_and_repeats():
    st = SETTINGS["standard"]
    prompt, answer = build_prompt(st, 8192, 50, 42, random.Random(0))
    example, query = prompt.split("\n", 1)[0], prompt
    assert example.startswith("Below is a numbered list of words.") and len(answer) == 10
    assert prompt.endswith(ANSWER_PREFIX.format(num_cw=10))
    assert "most common words in the above list?" + ANSWER_PREFIX.format(num_cw=10) + " 1. " in prompt
    body = query.split("\n")[-2]  # the query's numbered list (long regime: 30 / 3 repeats)
    words = re.findall(r"\d+\. (\S+)", body)
    assert len(words) == 10 * 30 + 40 * 3
    for w in answer:
        assert words.count(w) == 30
    # below 4096 tokens RULER uses 6 / 1 repeats
    body = build_prompt(st, 2048, 50, 42, random.Random(0))[0].split("\n")[-2]
    assert len(re.findall(r"\d+\. (\S+)", body)) == 10 * 6 + 40


def test_samples_fit_and_are_deterministic():
    tok = ByteTokenizer()
    a = make_samples(tok, TINY, 1024, 3, seed=5)
    b = make_samples(tok, TINY, 1024, 3, seed=5)
    c = make_samples(tok, TINY, 1024, 3, seed=6)
    assert [s.prompt for s in a] == [s.prompt for s in b] and [s.prompt for s in a] != [s.prompt for s in c]
    assert len({s.prompt for s in a}) == 3
    for s in a:
        assert s.prompt_tokens + TINY.tokens_to_generate <= 1024
        assert s.num_words % 10 == 0 and s.prompt_tokens == count_tokens(tok, s.prompt)
    # n is maximal: 10 more words overflow the probe draw, the chosen n fits it
    n = fit_num_words(tok, TINY, 1024, 5)
    probe = random.Random("5:1024:probe")
    prompt, ans = build_prompt(TINY, 1024, n + 10, 5, probe)
    assert count_tokens(tok, prompt + " " + numbered(ans)) + TINY.tokens_to_generate > 1024
    assert n >= max(s.num_words for s in a)


def test_too_short_a_context_is_one_line():
    with pytest.raises(ConfigError, match="cannot hold the few-shot example"):
        make_samples(ByteTokenizer(), TINY, 200, 1)


def test_score_is_case_insensitive_substring():
    assert score_prediction("1. Apple 2. pear", ["apple", "PEAR", "plum"]) == pytest.approx(2 / 3)
    assert score_prediction("pineapples", ["apple"]) == 1.0  # substring, as RULER
    assert score_prediction("", ["apple"]) == 0.0


@pytest.mark.parametrize(
    ("lengths", "samples", "max_len", "msg"),
    [([9000], 2, 8192, "exceeds the model's maximum of 8192"), ([512], 0, 8192, "positive number of samples"),
     ([], 1, None, "at least one context length")],
)  # fmt: skip
def test_bad_requests(lengths, samples, max_len, msg):
    with pytest.raises(ConfigError, match=msg):
        check_request(lengths, samples, max_len)


def test_variants_reroute_and_restore():
    model = tiny_sparse()
    from codesign.sparse.upcycle import sparse_modules

    mods = sparse_modules(model)
    with variant(model, "dense@1"):
        assert [m.mode for m in mods] == ["bank_topk", "dense", "bank_topk"]
    with variant(model, "k@2=32"):
        assert mods[2].k == 32
    assert [m.mode for m in mods] == ["bank_topk"] * 3 and [m.k for m in mods] == [16] * 3
    for bad, msg in (("densest", "unknown variant"), ("dense@7", "layers 0..2"), ("k@0=65", "k must be")):
        with pytest.raises(ConfigError, match=msg):
            check_variant(model, bad)


def test_proxy_is_teacher_forced_answer_loglik():
    model, tok = tiny_sparse(), ByteTokenizer()
    s = make_samples(tok, TINY, 1024, 1)[0]
    ll, ids = answer_loglik(model, tok, s)
    n_answer = len(s.answer_text().encode())
    labels = ids.clone()
    labels[0, :-n_answer] = -100  # HF's loss over the answer tokens only
    with torch.no_grad():
        loss = float(model(input_ids=ids, labels=labels).loss)
    assert ll == pytest.approx(-loss, rel=1e-5)


def test_evaluate_cwe_end_to_end(tmp_path):
    from codesign.trace.store import TraceReader

    model, tok = tiny_sparse(), ByteTokenizer()
    res = evaluate_cwe(model, tok, model_name="tiny", setting=TINY, lengths=[1024, 1280], samples=2,
                       variants=["model", "dense"], trace_out=tmp_path / "t.zarr")  # fmt: skip
    assert set(res["scores"]) == {"model", "dense"} and set(res["scores"]["model"]) == {"1024", "1280"}
    row = res["scores"]["model"]["1024"]
    assert len(row["scores"]) == 2 and all(0 <= v <= 100 for v in row["scores"])
    assert row["ci95"][0] <= row["mean"] <= row["ci95"][1]
    assert res["setting"]["num_cw"] == 2 and res["proxy_agreement"]["variants"] == ["model", "dense"]
    reader = TraceReader(tmp_path / "t.zarr")
    prompts = sum(p for ps in res["prompt_tokens"].values() for p in ps)
    assert reader.num_tokens > prompts  # every prompt's prefill plus at least one decode step each
    with pytest.raises(ConfigError, match="exceeds the model's maximum of 2048"):
        evaluate_cwe(model, tok, model_name="tiny", setting=TINY, lengths=[4096], samples=1)
    with pytest.raises(ModelError, match="no tokenizer"):
        evaluate_cwe(model, None, model_name="tiny", setting=TINY, lengths=[1024], samples=1)


def test_bootstrap_and_spearman():
    lo, hi = bootstrap_ci([0.0, 100.0, 50.0, 50.0])
    assert 0 <= lo < 50 < hi <= 100 and bootstrap_ci([3.0]) == [3.0, 3.0]
    assert bootstrap_ci([1.0, 2.0, 3.0]) == bootstrap_ci([1.0, 2.0, 3.0])
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0) and spearman([1, 1], [1, 2]) is None


def test_cli_bad_input_is_one_line(capsys):
    from codesign.cli import main

    for args, msg in (
        (["eval", "cwe", "--samples", "0"], "positive number of samples"),
        (["eval", "cwe", "--variants", "sparse-ish"], "unknown variant"),
        (["diagnose", "--lengths", "0"], "context length must be positive"),
        (["eval", "cwe", "--lengths", "512,9000"], "exceeds the model's maximum of 8192"),  # before loading
        (["repair", "--layer", "3", "--model", "smollm2-135m", "--lengths", "16384"], "maximum of 8192"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and msg in err and "\n" not in err


def test_masked_dense_compute_equals_the_gather_path():
    from codesign.eval.cwe_score import masked_dense_compute
    from codesign.sparse.upcycle import sparse_modules

    model = tiny_sparse()
    ids = torch.randint(0, 257, (1, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        masks = [m.last_mask.clone() for m in sparse_modules(model)]
    with masked_dense_compute(model):
        fast = model(input_ids=ids).logits
        assert all(torch.equal(m.last_mask, k) for m, k in zip(sparse_modules(model), masks, strict=True))
    assert torch.allclose(fast, ref, atol=1e-5, rtol=1e-4)
    assert not any(m.training for m in sparse_modules(model))  # flags restored
