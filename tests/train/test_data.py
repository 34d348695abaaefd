"""Corpus loading, splitting, caching and packing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from codesign.data.corpus import (
    KJV_TEST_BOOKS,
    KJV_VALIDATION_BOOKS,
    load_corpus,
    packed_batches,
)
from codesign.errors import ConfigError


class ByteTokenizer:
    """A deterministic stand-in for an HF tokenizer: one id per UTF-8 byte, EOS = 256."""

    name_or_path = "bytes"
    eos_token_id = 256

    def __init__(self):
        self.calls = 0

    def get_vocab(self):
        return {str(i): i for i in range(257)}

    def __call__(self, texts, add_special_tokens=False):
        self.calls += 1
        return {"input_ids": [list(t.encode()) for t in texts]}


def _write_jsonl(path, n_docs):
    with open(path, "w") as f:
        for i in range(n_docs):
            f.write(json.dumps({"id": f"d{i}", "text": f"document {i} " * (5 + i % 3)}) + "\n")


def test_local_jsonl_splits_by_document_and_caches(tmp_path):
    src = tmp_path / "c.jsonl"
    _write_jsonl(src, 41)
    tok = ByteTokenizer()
    c = load_corpus(src, tok, cache_dir=tmp_path / "cache")
    assert c.split_books["validation"] == ["d18", "d38"]
    assert c.split_books["test"] == ["d19", "d39"]
    assert len(c.split_books["train"]) == 37
    # Every split is the concatenation of its documents, each followed by EOS.
    val = c.tokens("validation")
    assert val.dtype == np.int64 and (val == 256).sum() == 2
    assert bytes(val[: val.tolist().index(256)].astype(np.uint8)).decode().startswith("document 18 ")
    # Second load hits the cache: the tokenizer is not called again and the ids are identical.
    c2 = load_corpus(src, tok, cache_dir=tmp_path / "cache")
    assert tok.calls == 1
    for s in ("train", "validation", "test"):
        np.testing.assert_array_equal(c.tokens(s), c2.tokens(s))
    assert c2.describe()["tokens"]["train"] == c.tokens("train").size


def test_changed_corpus_is_retokenised(tmp_path):
    src = tmp_path / "c.txt"
    src.write_text("\n\n".join(f"para {i}" for i in range(5)))
    tok = ByteTokenizer()
    a = load_corpus(src, tok, cache_dir=tmp_path)
    src.write_text("\n\n".join(f"other {i}" for i in range(5)))
    b = load_corpus(src, tok, cache_dir=tmp_path)
    assert tok.calls == 2 and not np.array_equal(a.tokens("train"), b.tokens("train"))


def test_corrupt_cache_is_rebuilt(tmp_path):
    src = tmp_path / "c.txt"
    src.write_text("\n\n".join(f"para {i}" for i in range(5)))
    tok = ByteTokenizer()
    c = load_corpus(src, tok, cache_dir=tmp_path / "cache")
    with open(c.cache_path, "wb") as f:
        f.write(b"garbage")
    c2 = load_corpus(src, tok, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(c.tokens("train"), c2.tokens("train"))


def test_bad_corpus_inputs(tmp_path):
    tok = ByteTokenizer()
    with pytest.raises(ConfigError, match="corpus file not found"):
        load_corpus(tmp_path / "missing.jsonl", tok, cache_dir=tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(ConfigError, match="bad.jsonl:2"):
        load_corpus(bad, tok, cache_dir=tmp_path)
    one = tmp_path / "one.txt"
    one.write_text("a single document")
    with pytest.raises(ConfigError, match="at least 3"):
        load_corpus(one, tok, cache_dir=tmp_path)


def test_kjv_split_by_book(tmp_path):
    c = load_corpus("kjv", ByteTokenizer(), cache_dir=tmp_path)
    assert c.split_books["validation"] == list(KJV_VALIDATION_BOOKS)
    assert c.split_books["test"] == list(KJV_TEST_BOOKS)
    assert len(c.split_books["train"]) == 66 - 12
    sizes = c.describe()["tokens"]
    assert sizes["validation"] > 100_000 and sizes["train"] > 10 * sizes["validation"]


def test_packed_batches_deterministic_resumable_and_rank_disjoint():
    tokens = np.arange(1000, dtype=np.int64)
    gen = packed_batches(tokens, seq_len=10, batch_size=4, seed=3)
    straight = [next(gen) for _ in range(60)]  # 240 samples = 2.4 epochs of 100 windows
    assert [s for s, _ in straight] == list(range(60))
    assert all(b.shape == (4, 10) and b.dtype == np.int64 for _, b in straight)
    # Each epoch visits every window exactly once.
    first_epoch = np.concatenate([b[:, 0] for _, b in straight[:25]])
    assert sorted(first_epoch.tolist()) == list(range(0, 1000, 10))
    # Resuming at step 37 yields the same batches as the uninterrupted stream.
    resumed = packed_batches(tokens, seq_len=10, batch_size=4, seed=3, start_step=37)
    for s, b in straight[37:45]:
        s2, b2 = next(resumed)
        assert s2 == s and np.array_equal(b, b2)
    # Two ranks of a world of 2 split one global batch of 8 between them.
    r0 = next(packed_batches(tokens, 10, 4, seed=3, rank=0, world_size=2))[1]
    r1 = next(packed_batches(tokens, 10, 4, seed=3, rank=1, world_size=2))[1]
    assert np.array_equal(np.concatenate([r0, r1]), np.concatenate([straight[0][1], straight[1][1]]))
    # Another seed gives another order.
    other = next(packed_batches(tokens, 10, 4, seed=4))[1]
    assert not np.array_equal(other, straight[0][1])
