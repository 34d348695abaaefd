"""Synthetic traces hold the statistics they promise; `trace_stats` measures them back."""

import zlib

import numpy as np
import pytest

from codesign.errors import TraceError
from codesign.trace.rebank import rebank_trace, reselect
from codesign.trace.stats import trace_stats
from codesign.trace.store import TraceReader
from codesign.trace.synth import (
    GLOBAL_TOPK_STORE,
    SynthSpec,
    bank_topk_mask,
    global_topk_mask,
    iter_synthetic,
    topk_mask,
    write_synthetic,
)

SHAPE = dict(hidden=64, intermediate=256, layers=2)


def spec(kind, **kw):
    # a fixed seed per call site (crc of its arguments): failures reproduce, cases still differ
    seed = zlib.crc32(repr((kind, sorted(kw.items()))).encode())
    return SynthSpec(kind=kind, **{**SHAPE, "seed": seed, **kw})


def all_masks(s):
    return np.concatenate([b["masks"] for b in iter_synthetic(s)])


@pytest.mark.parametrize("kind", ["uniform", "zipf", "correlated"])
@pytest.mark.parametrize("B, k", [(64, 16), (32, 1), (64, 64), (128, 5)])
def test_bank_wise_kinds_keep_exactly_k_per_bank(kind, B, k):
    m = all_masks(spec(kind, bank_size=B, k=k, decode_tokens=6))
    np.testing.assert_array_equal(m.reshape(*m.shape[:2], -1, B).sum(-1), k)


def test_global_topk_has_the_same_density_but_unbalanced_banks():
    m = all_masks(spec("global_topk", decode_tokens=20))
    assert (m.sum(-1) == 64).all()  # 256 channels · 16/64
    loads = m.reshape(*m.shape[:2], 4, 64).sum(-1)
    assert loads.std() > 0


def test_correlated_reuses_exactly_the_requested_fraction():
    s = spec("correlated", reuse=0.75, sequences=3, decode_tokens=10)
    blocks = list(iter_synthetic(s))
    m, seq = np.concatenate([b["masks"] for b in blocks]), np.concatenate([b["seq_id"] for b in blocks])
    for q in range(3):
        mine = m[seq == q]
        shared = (mine[1:] & mine[:-1]).reshape(9, 2, 4, 64).sum(-1)
        np.testing.assert_array_equal(shared, 12)  # round(0.75 · 16) per bank


def test_zipf_makes_popular_channels_popular():
    m = all_masks(spec("zipf", zipf_s=1.2, decode_tokens=100, sequences=1))
    freq = m[:, 0].mean(0)  # per-channel keep rate, layer 0
    assert freq.max() > 0.9 and freq.min() < 0.05  # uniform would be 0.25 everywhere
    assert freq.mean() == pytest.approx(0.25)


def test_same_seed_same_trace_different_seed_different_trace():
    a, b = all_masks(spec("zipf", seed=3)), all_masks(spec("zipf", seed=3))
    np.testing.assert_array_equal(a, b)
    assert (a != all_masks(spec("zipf", seed=4))).any()


def test_stats_union_density_matches_closed_form(tmp_path):
    s = spec("uniform", sequences=16, decode_tokens=40)
    write_synthetic(s, tmp_path / "t.zarr")
    st = trace_stats(TraceReader(tmp_path / "t.zarr"), batches=(1, 4, 8))
    assert st.density == 0.25 and st.bank_load_histogram[16] == st.tokens * 2 * 4
    for b in (1, 4, 8):
        expected = 1 - 0.75**b
        # Each group's union over 512 channel slots; 640/b groups: std of the mean ≲ 0.005.
        assert abs(st.union_density[b] - expected) < 0.02, (b, st.union_density[b], expected)
    assert st.decode_tokens == 640 and st.sequences == 16


def test_stats_rebank_at_another_bank_size(tmp_path):
    write_synthetic(spec("uniform", decode_tokens=8), tmp_path / "t.zarr")
    st = trace_stats(TraceReader(tmp_path / "t.zarr"), bank_size=128)
    assert sum(st.bank_load_histogram) == st.tokens * 2 * 2
    with pytest.raises(TraceError, match="does not divide"):
        trace_stats(TraceReader(tmp_path / "t.zarr"), bank_size=96)


def test_rebank_from_logits_equals_direct_selection(tmp_path):
    write_synthetic(spec("uniform", decode_tokens=8), tmp_path / "t.zarr", with_logits=True)
    r = TraceReader(tmp_path / "t.zarr")
    n = rebank_trace(r, tmp_path / "r.zarr", bank_size=32, k=4)
    out = TraceReader(tmp_path / "r.zarr")
    assert n == r.num_tokens and out.meta.bank_size == 32 and out.meta.k == 4
    logits = r.read(0, n).logits
    np.testing.assert_array_equal(out.read(0, n).masks(), reselect(logits, 32, 4))
    # The original selection is reproduced exactly from the stored fp16 logits.
    np.testing.assert_array_equal(reselect(logits, 64, 16), r.read(0, n).masks())


def test_rebank_needs_logits(tmp_path):
    write_synthetic(spec("uniform", decode_tokens=2), tmp_path / "t.zarr")
    with pytest.raises(TraceError, match="no logits"):
        rebank_trace(TraceReader(tmp_path / "t.zarr"), tmp_path / "r", bank_size=32, k=4)


def test_bank_topk_ties_go_to_the_lower_index():
    scores = np.zeros((1, 64))
    np.testing.assert_array_equal(np.flatnonzero(bank_topk_mask(scores, 64, 3)[0]), [0, 1, 2])


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(kind="poisson"), "unknown synthetic trace kind"),
        (dict(bank_size=48), "does not divide"),
        (dict(k=0), "k must be in"),
        (dict(k=65), "k must be in"),
        (dict(reuse=1.5), "reuse"),
        (dict(decode_tokens=0), "at least one token"),
    ],
)
def test_bad_specs(kw, message):
    with pytest.raises(TraceError, match=message):
        SynthSpec(**{"kind": "uniform", **SHAPE, **kw})


def _argsort_topk(x, k):
    """The old definition: a full stable descending argsort (ties to the lower index)."""
    order = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    mask = np.zeros(x.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=-1)
    return mask


@pytest.mark.parametrize("n, k", [(64, 16), (64, 1), (64, 63), (7, 3), (300, 75)])
@pytest.mark.parametrize("levels", [2, 8, 1 << 12])  # few levels: many ties at the threshold
def test_partial_selection_equals_a_stable_argsort(n, k, levels):
    x = (np.random.default_rng(n * k + levels).integers(0, levels, size=(40, 3, n)) / levels).astype(
        np.float16
    )
    np.testing.assert_array_equal(topk_mask(x, k), _argsort_topk(x, k))


def test_global_masks_are_the_global_topk_of_the_same_scores():
    s = spec("zipf", decode_tokens=5, sequences=2)
    for block in iter_synthetic(s, with_global=True):
        scores = block["logits"].astype(np.float32)
        np.testing.assert_array_equal(block["global_masks"], _argsort_topk(scores, 64))  # 256 · 16/64
        np.testing.assert_array_equal(block["global_masks"], global_topk_mask(scores, 64))
        np.testing.assert_array_equal(block["masks"], bank_topk_mask(scores, 64, 16))


def test_write_synthetic_stores_the_global_topk_masks_beside_the_trace(tmp_path):
    s = spec("uniform", decode_tokens=6, sequences=3)
    write_synthetic(s, tmp_path / "t.zarr", with_logits=True, chunk_tokens=4)
    r, g = TraceReader(tmp_path / "t.zarr"), TraceReader(tmp_path / "t.zarr" / GLOBAL_TOPK_STORE)
    assert g.num_tokens == r.num_tokens == 18
    logits = r.read(0, 18).logits
    np.testing.assert_array_equal(g.read(0, 18).masks(), reselect(logits, 64, 16, global_topk=True))
    np.testing.assert_array_equal(g.read(0, 18).seq_id, r.read(0, 18).seq_id)


def test_stats_batch_union_is_over_decode_steps_of_distinct_sequences(tmp_path):
    """Four sequences decode in turn: a batch of 4 is one decode step, a batch of 8 cannot exist (two positions
    of one sequence), and a step straddling a chunk boundary still counts once."""
    write_synthetic(spec("zipf", zipf_s=1.2, sequences=4, decode_tokens=9), tmp_path / "t.zarr", chunk_tokens=7)
    reader = TraceReader(tmp_path / "t.zarr")
    st = trace_stats(reader, batches=(1, 2, 4, 8), chunk_tokens=5)
    assert 8 not in st.union_density and {1, 2, 4} <= set(st.union_density)
    m = reader.read(0, reader.num_tokens, with_logits=False).masks()  # (36, L, I): 9 steps of 4 sequences
    by_step = m.reshape(9, 4, *m.shape[1:]).any(axis=1).mean(axis=(1, 2))
    assert st.union_density[4] == pytest.approx(by_step.mean(), rel=1e-12)
