"""The trace store: round trip, append-only commits, crash safety, and one clear error per bad store."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from codesign.errors import OutputExistsError, TraceError
from codesign.trace.store import TraceMeta, TraceReader, TraceWriter, pack_masks


def small_meta(**kw):
    base = dict(model_name="tiny", hidden=32, intermediate=128, layers=3, bank_size=64, k=16)
    return TraceMeta(**{**base, **kw})


def random_tokens(rng, T, L=3, I=128, with_logits=False):
    masks = rng.random((T, L, I)) < 0.25
    out = dict(
        masks=masks,
        seq_id=rng.integers(0, 4, T),
        position=np.arange(T),
        token_id=rng.integers(0, 1000, T),
        is_decode=rng.random(T) < 0.5,
    )
    if with_logits:
        out["logits"] = rng.standard_normal((T, L, I)).astype(np.float16)
    return out


@pytest.mark.parametrize("chunk_tokens", [1, 7, 64])
def test_round_trip_across_chunk_boundaries(tmp_path, chunk_tokens):
    rng = np.random.default_rng()
    blocks = [random_tokens(rng, T, with_logits=True) for T in (5, 13, 1, 40)]
    with TraceWriter.create(
        tmp_path / "t.zarr", small_meta(), with_logits=True, chunk_tokens=chunk_tokens
    ) as w:
        for b in blocks:
            w.append(**b)
    r = TraceReader(tmp_path / "t.zarr")
    assert r.num_tokens == 59 and r.has_logits
    got = list(r.iter_chunks(tokens=11))
    assert [c.start for c in got] == [0, 11, 22, 33, 44, 55]
    cat = {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}
    np.testing.assert_array_equal(np.concatenate([c.masks() for c in got]), cat["masks"])
    np.testing.assert_array_equal(np.concatenate([c.logits for c in got]), cat["logits"])
    for name in ("seq_id", "position", "token_id", "is_decode"):
        np.testing.assert_array_equal(np.concatenate([getattr(c, name) for c in got]), cat[name])


def test_metadata_round_trip_and_provenance(tmp_path):
    meta = small_meta(k_per_layer={2: 8}, predictor_rank=64, source="eval:kjv-validation", extra={"step": 3})
    with TraceWriter.create(tmp_path / "t.zarr", meta) as w:
        w.append(**random_tokens(np.random.default_rng(), 4))
    got = TraceReader(tmp_path / "t.zarr").meta
    assert got.k_per_layer == {2: 8} and got.k_of_layer(2) == 8 and got.k_of_layer(0) == 16
    assert got.source == "eval:kjv-validation" and got.extra == {"step": 3}
    assert got.schema_version == 1 and got.created_at and got.codesign_version


def test_bank_words_are_a_view_of_the_packed_bits():
    rng = np.random.default_rng()
    masks = rng.random((6, 2, 192)) < 0.3
    from codesign.trace.store import TraceChunk

    chunk = TraceChunk(0, pack_masks(masks), *(np.zeros(6, np.int32),) * 3, np.zeros(6, bool))
    words = chunk.bank_words(64)
    assert words.shape == (6, 2, 3) and words.dtype == np.uint64
    b = rng.integers(0, 3)
    j = rng.integers(0, 64)
    assert bool((int(words[0, 1, b]) >> int(j)) & 1) == masks[0, 1, b * 64 + j]
    np.testing.assert_array_equal(
        np.array([bin(int(x)).count("1") for x in words.ravel()]).reshape(6, 2, 3),
        masks.reshape(6, 2, 3, 64).sum(-1),
    )


def test_packed_input_equals_bool_input(tmp_path):
    rng = np.random.default_rng()
    tok = random_tokens(rng, 9)
    with TraceWriter.create(tmp_path / "a", small_meta()) as w:
        w.append(**tok)
    with TraceWriter.create(tmp_path / "b", small_meta()) as w:
        w.append(**{**tok, "masks": pack_masks(tok["masks"])})
    np.testing.assert_array_equal(
        TraceReader(tmp_path / "a").read(0, 9).mask_bits, TraceReader(tmp_path / "b").read(0, 9).mask_bits
    )


def test_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "t.zarr"
    with TraceWriter.create(path, small_meta()) as w:
        w.append(**random_tokens(np.random.default_rng(), 3))
    with pytest.raises(OutputExistsError, match="--force"):
        TraceWriter.create(path, small_meta())
    assert TraceReader(path).num_tokens == 3  # untouched
    TraceWriter.create(path, small_meta(), force=True).close()
    assert TraceReader(path).num_tokens == 0


def test_force_never_deletes_something_that_is_not_a_store(tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("...")
    with pytest.raises(TraceError, match="not a trace store"):
        TraceWriter.create(tmp_path / "precious", small_meta(), force=True)
    assert (tmp_path / "precious" / "thesis.tex").exists()


def test_readers_see_only_committed_chunks_while_writing(tmp_path):
    rng = np.random.default_rng()
    w = TraceWriter.create(tmp_path / "t.zarr", small_meta(), chunk_tokens=8)
    w.append(**random_tokens(rng, 20))  # two whole chunks committed, 4 tokens buffered
    assert TraceReader(tmp_path / "t.zarr").num_tokens == 16
    w.flush()
    assert TraceReader(tmp_path / "t.zarr").num_tokens == 20
    w.append(**random_tokens(rng, 5))  # completes the partial tail chunk on the next commit
    w.close()
    assert TraceReader(tmp_path / "t.zarr").num_tokens == 25


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from codesign.trace.store import TraceMeta, TraceWriter
    meta = TraceMeta(model_name="tiny", hidden=32, intermediate=128, layers=3, bank_size=64, k=16)
    w = TraceWriter.create(sys.argv[1], meta, chunk_tokens=16)
    rng = np.random.default_rng(1234)
    while True:  # killed from outside
        w.append(rng.random((5, 3, 128)) < 0.25, seq_id=0, position=0, token_id=0, is_decode=True)
    """
)


def test_writer_killed_mid_chunk_leaves_every_committed_chunk_readable(tmp_path):
    path = tmp_path / "t.zarr"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            commit = path / "commit.json"
            if commit.exists() and json.loads(commit.read_text())["num_tokens"] >= 160:
                break
            time.sleep(0.05)
        else:
            pytest.fail("writer made no progress")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    r = TraceReader(path)
    assert r.num_tokens >= 160 and r.num_tokens % 16 == 0
    expected = np.random.default_rng(1234).random((r.num_tokens // 5 + 1, 5, 3, 128)) < 0.25
    got = np.concatenate([c.masks() for c in r.iter_chunks()])
    np.testing.assert_array_equal(got, expected.reshape(-1, 3, 128)[: r.num_tokens])


def write_small(path, T=20):
    with TraceWriter.create(path, small_meta(), chunk_tokens=8) as w:
        w.append(**random_tokens(np.random.default_rng(), T))
    return path


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: None, None),
        (lambda p: (p / "commit.json").write_text("{not json"), "commit.json is corrupt"),
        (lambda p: (p / "commit.json").unlink(), "not a codesign trace store"),
        (lambda p: (p / "zarr.json").write_text("garbage"), "unreadable store metadata"),
        (lambda p: _truncate_first_chunk(p), "truncated or corrupt chunk"),
        (lambda p: _edit_meta(p, layers=4), "masks have shape"),
        (lambda p: _edit_meta(p, schema_version=99), "schema version 99"),
    ],
)
def test_damaged_stores_give_one_clear_error(tmp_path, damage, message):
    path = write_small(tmp_path / "t.zarr")
    damage(path)
    if message is None:
        assert TraceReader(path).read(0, 20).num_tokens == 20
        return
    with pytest.raises(TraceError, match=message):
        r = TraceReader(path)
        for _ in r.iter_chunks():
            pass


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(TraceError, match="does not exist"):
        TraceReader(tmp_path / "nope.zarr")


def _truncate_first_chunk(path: Path):
    chunk = next(p for p in (path / "masks").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[:10])


def _edit_meta(path: Path, **changes):
    meta_file = path / "zarr.json"
    doc = json.loads(meta_file.read_text())
    doc["attributes"]["codesign_trace"].update(changes)
    meta_file.write_text(json.dumps(doc))


def test_bad_meta_is_rejected():
    with pytest.raises(TraceError, match="does not divide"):
        small_meta(bank_size=48)
    with pytest.raises(TraceError, match="exceeds bank_size"):
        small_meta(k=65)


# ---- the store never hands out data it does not have ----------------------------------------------------
def _commit(path: Path, **changes):
    doc = json.loads((path / "commit.json").read_text())
    doc.update(changes)
    (path / "commit.json").write_text(json.dumps(doc))


def _read_all(path):
    r = TraceReader(path)
    return sum(c.num_tokens for c in r.iter_chunks())


def _swap_chunks(path: Path):
    """Chunk 1's masks file in place of chunk 0's: a valid zarr chunk, but not the data committed there."""
    (path / "masks/c/0/0/0").write_bytes((path / "masks/c/1/0/0").read_bytes())


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "masks/c/1/0/0").unlink(), "chunk 1 of masks (tokens 8..15) is missing"),
        (lambda p: (p / "seq_id/c/2").unlink(), "chunk 2 of seq_id (tokens 16..19) is missing"),
        (lambda p: (p / "token_id/c/0").write_bytes(b""), "chunk 0 of token_id (tokens 0..7) is missing"),
        (_swap_chunks, "chunk 0 of masks (tokens 0..7) does not match its checksum"),
        (lambda p: _commit(p, num_tokens=30), "30 committed tokens make 4 chunks of 8"),
        (lambda p: _commit(p, num_tokens=22), "chunk 2 of masks (tokens 16..21) does not match"),
        (lambda p: _commit(p, num_tokens=-5), "num_tokens -5 is not an integer ≥ 0"),
        (lambda p: _commit(p, chunk_tokens=0), "chunk_tokens 0 is not an integer ≥ 1"),
        (lambda p: _commit(p, num_tokens=True), "num_tokens True is not an integer"),
        (lambda p: _commit(p, crc32={"masks": [1, 2, 3]}), "do not cover the arrays"),
        (lambda p: (p / "masks/zarr.json").write_text("{garbage"), "unreadable metadata of array masks"),
        (lambda p: (p / "commit.json").write_bytes(b"\xff\xfe"), "commit.json is corrupt"),
    ],
)
def test_missing_changed_or_phantom_chunks_are_refused(tmp_path, damage, message):
    path = write_small(tmp_path / "t.zarr")
    assert _read_all(path) == 20
    damage(path)
    with pytest.raises(TraceError) as exc:
        _read_all(path)
    text = str(exc.value)
    assert message in text and str(path) in text and "\n" not in text, text


def test_partial_tail_checksums_extend_as_the_chunk_fills(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "t.zarr"
    w = TraceWriter.create(path, small_meta(), chunk_tokens=8, with_logits=True)
    toks = [random_tokens(rng, n, with_logits=True) for n in (3, 4, 6)]
    for tok in toks:  # every commit leaves a partial tail chunk that the next one grows
        w.append(**tok)
        w.flush()
        r = TraceReader(path)
        assert r.verified and _read_all(path) == r.num_tokens
    w.close()
    got = TraceReader(path).read(0, 13)
    np.testing.assert_array_equal(got.masks(), np.concatenate([t["masks"] for t in toks]))
    np.testing.assert_array_equal(got.logits, np.concatenate([t["logits"] for t in toks]))


def test_all_zero_chunks_are_written_and_checked(tmp_path):
    """zarr skips all-zero chunks by default; a store must write them so a missing file means lost data."""
    path = tmp_path / "t.zarr"
    with TraceWriter.create(path, small_meta(), chunk_tokens=4) as w:
        w.append(np.ones((8, 3, 128), bool), seq_id=0, position=0, token_id=0, is_decode=False)
    assert (path / "is_decode/c/1").is_file()
    (path / "is_decode/c/1").unlink()
    with pytest.raises(TraceError, match="chunk 1 of is_decode"):
        TraceReader(path)


def test_store_without_checksums_keeps_the_checks_it_can(tmp_path):
    """A store written before checksums reads as before; phantom tokens (all-zero masks) are refused."""
    path = write_small(tmp_path / "t.zarr")
    doc = json.loads((path / "commit.json").read_text())
    del doc["crc32"]
    (path / "commit.json").write_text(json.dumps(doc))
    r = TraceReader(path)
    assert not r.verified and _read_all(path) == 20
    _commit(path, num_tokens=23)
    with pytest.raises(TraceError, match="token 20 layer 0 keeps no channel"):
        _read_all(path)
    _commit(path, num_tokens=40)
    with pytest.raises(TraceError, match="chunk 3 of masks .* is missing"):
        TraceReader(path)
