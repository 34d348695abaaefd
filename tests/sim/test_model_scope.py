"""Whole-decoder-step simulation (scope model): closed forms of the attention, KV cache, embedding and LM-head
traffic, k = B equal to dense and monotone in k and batch, the FFN part equal at both scopes, the prefetch stage
hidden across layer-steps with double_buffer (by hand), resident predictors. Through simulate and the CLI:
tests/sim/test_model_scope_cli.py.

Small model (unless a test says otherwise): hidden 64, I = 512, 3 layers, B = 64, k = 16, bf16, 4 SRAM banks;
decoder heads 2, kv_heads 1, head_dim 16 (q_dim 32, kv_dim 16), vocab 128. Per layer: QKV/O weights
(2·64·32 + 2·64·16)·2 = 12288 B, a KV row (K and V of one token) 2·16·2 = 64 B, an embedding row 128 B, the LM
head 128·64·2 = 16384 B. DRAM: HBM3 `ideal`, refresh off: a call of b 32-byte bursts (32 channels) takes
tRCD + tCL + ceil(b / 32) · 1.25 ns = 31.9 + 1.25·ceil(b / 32) ns, rounded up to 1 GHz cycles.
"""

import dataclasses
import math

import numpy as np
import pytest
from test_engine import small_params  # same directory (pytest's rootdir-less prepend import)

from codesign.errors import ConfigError
from codesign.sim.config import load_hwconfig
from codesign.sim.dram import build_dram
from codesign.sim.engine import (
    Block,
    SimParams,
    dense_words,
    simulate_variant,
    words_from_bits,
    words_from_masks,
)
from codesign.sim.pipeline import COL
from codesign.sim.report import variant_summary
from codesign.sim.simulation import params_from_config
from codesign.trace.store import pack_masks
from codesign.trace.synth import bank_topk_mask

HW = "hwconfigs/bank64.yaml"
PEAK = 8.192e11


def model_params(**overrides) -> SimParams:
    """test_engine's small model, at whole-model scope with a 2-head GQA decoder and roomy SRAM banks."""
    base = dict(
        bank_size_bytes=65536, residency="none", scope="model", heads=2, kv_heads=1, head_dim=16, vocab=128
    )
    return small_params(**{**base, **overrides})


@pytest.fixture(scope="module")
def ideal():
    return build_dram(load_hwconfig(HW, ["dram.model=ideal", "dram.timing.tRFC_ns=0"]).dram)


def token_keys(sequences, prefill, decode):
    """seq_id, position, is_decode in processing order: each sequence's prefill, then decode interleaved."""
    S, P, D = sequences, prefill, decode
    seq = np.concatenate([np.repeat(np.arange(S), P), np.tile(np.arange(S), D)]).astype(np.int32)
    pos = np.concatenate([np.tile(np.arange(P), S), P + np.repeat(np.arange(D), S)]).astype(np.int32)
    dec = np.concatenate([np.zeros(S * P, bool), np.ones(S * D, bool)])
    return seq, pos, dec


def make_blocks(masks, keys, bank_size=64, split=None):
    seq, pos, dec = keys
    words = words_from_masks(masks, bank_size)
    T = len(words)
    split = split or T
    return lambda: (Block(words[i : i + split], dec[i : i + split], seq[i : i + split], pos[i : i + split])
                    for i in range(0, T, split))  # fmt: skip


def run(p, blocks, dram, batch, chunk=4):
    v = simulate_variant("s", p, blocks, dram, batch, prefill_chunk_tokens=chunk)
    return v, variant_summary(v, PEAK)


def scores_of(seed, tokens, p):
    return np.random.default_rng(seed).standard_normal((tokens, p.layers, p.intermediate))


# ---- 1. closed forms ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("split", [None, 3])  # one block, or blocks of 3 tokens (steps straddle blocks)
def test_closed_forms_of_attention_kv_and_head_traffic(ideal, split):
    # 2 sequences × (5 prefill + 3 decode) = 16 tokens; prefill chunks of 4 → chunks at positions 0 and 4 of each
    # sequence; batch 2 → 3 decode steps of both sequences at positions 5, 6, 7: 4 + 3 = 7 steps.
    p = model_params()
    keys = token_keys(2, 5, 3)
    masks = bank_topk_mask(scores_of(0, 16, p), 64, 16)
    v, s = run(p, make_blocks(masks, keys, split=split), ideal, batch=2)
    t = s["totals"]
    L, T, steps = 3, 16, 7
    assert (t["tokens"], t["steps"]) == (T, steps)
    assert (p.attention_bytes_per_layer, p.kv_row_bytes, p.head_bytes) == (12288, 64, 16384)
    kv_rows_read = 2 * (5 + 6 + 7) + 2 * (0 + 4)  # decode tokens' positions + prefill chunks' first positions
    ctx = 2 * (1 + 2 + 3 + 4 + 5) + 2 * (6 + 7 + 8)  # Σ (position + 1): rows each token attends
    assert t["dram_attention_bytes"] == steps * L * 12288 == 258048
    assert t["dram_kv_write_bytes"] == T * L * 64 == 3072 == t["dram_write_bytes"]
    assert t["dram_kv_read_bytes"] == L * 64 * kv_rows_read == 8448
    assert t["dram_head_bytes"] == steps * 128 * 64 * 2 + T * 64 * 2 == 116736
    assert t["attention_macs"] == L * (T * (2 * 64 * 32 + 2 * 64 * 16) + ctx * 2 * 32) == 308736
    assert t["head_macs"] == T * 128 * 64 == 131072
    assert t["vector_ops"] == L * (T * (6 * 64 + 2 * (32 + 16)) + ctx * 3 * 2) == 24336
    # residency none: every kept channel of a step fetched; all requests burst-aligned, so reads add up
    assert t["dram_ffn_bytes"] == t["union_channels"] * p.bundle_bytes
    assert t["dram_predictor_bytes"] == steps * L * (64 * 16 + 16 * 512) * 2
    assert t["dram_read_bytes"] == sum(t[f"dram_{x}_bytes"] for x in ("ffn", "predictor", "attention", "kv_read",
                                                                      "head"))  # fmt: skip
    # the LM head counts in the last layer, the embeddings in the first
    head = v.per_layer[:, COL["dram_head_bytes"]].tolist()
    assert head == [T * 128, 0, steps * 16384]
    assert v.per_layer[:, COL["head_macs"]].tolist() == [0, 0, T * 8192]


def test_ffn_scope_has_no_attention_traffic(ideal):
    p = model_params(scope="ffn")
    masks = bank_topk_mask(scores_of(1, 16, p), 64, 16)
    _, s = run(p, make_blocks(masks, token_keys(2, 5, 3)), ideal, batch=2)
    t = s["totals"]
    for key in ("dram_attention_bytes", "dram_kv_read_bytes", "dram_kv_write_bytes", "dram_head_bytes",
                "attention_macs", "head_macs", "vector_ops", "dram_write_bytes"):  # fmt: skip
        assert t[key] == 0, key
    assert s["ffn_scope"]["cycles"] == t["cycles"]


# ---- 2. k = B is the dense baseline; monotone in k and batch --------------------------------------------------
def test_k_equal_b_through_the_masks_equals_dense_at_model_scope(ideal):
    p = model_params(k=64)
    seq, pos, dec = token_keys(2, 5, 3)
    masks = bank_topk_mask(scores_of(2, 16, p), 64, 64)  # all kept
    words = words_from_bits(pack_masks(masks), 64)
    a = simulate_variant(
        "masks", p, lambda: iter([Block(words, dec, seq, pos)]), ideal, 2, prefill_chunk_tokens=4
    )
    dense = dense_words(16, 3, 8, 64)
    b = simulate_variant(
        "dense", p, lambda: iter([Block(dense, dec, seq, pos)]), ideal, 2, prefill_chunk_tokens=4
    )
    np.testing.assert_array_equal(a.per_layer, b.per_layer)
    np.testing.assert_array_equal(a.per_sram_bank, b.per_sram_bank)
    assert a.per_layer[:, COL["dram_attention_bytes"]].sum() > 0


@pytest.mark.parametrize("residency", ["none", "lru"])
@pytest.mark.parametrize("topk_cycles", [1, 64])
def test_bytes_and_cycles_non_decreasing_in_k(ideal, residency, topk_cycles):
    keys = token_keys(4, 6, 4)
    scores = scores_of(3, 40, model_params())
    rows = []
    for k in (4, 8, 16, 32, 64):  # top-k sets of the same scores are nested
        p = model_params(k=k, residency=residency, topk_cycles_per_bank=topk_cycles)
        _, s = run(p, make_blocks(bank_topk_mask(scores, 64, k), keys), ideal, batch=4)
        rows.append((s["totals"]["dram_read_bytes"] + s["totals"]["dram_write_bytes"], s["totals"]["cycles"]))
    dram_bytes, cycles = zip(*rows, strict=True)
    assert list(dram_bytes) == sorted(dram_bytes) and len(set(dram_bytes)) == 5, rows
    # k = B is the dense model: no predictor, no top-k. With a slow top-k (64 cycles per bank on 4 lanes:
    # 512 cycles per layer-step at batch 4) k = 32 costs more than dense (136254 vs 130371 cycles), so cycles
    # are monotone up to k = B only while top-k is cheap; among sparse k they always are.
    sparse_cycles = cycles if topk_cycles == 1 else cycles[:4]
    assert list(sparse_cycles) == sorted(sparse_cycles), rows
    if topk_cycles == 64:
        assert cycles[4] < cycles[3]


def test_per_step_bytes_and_cycles_non_decreasing_in_batch(ideal):
    # decode only, 8 sequences × 6 tokens: every step at batch b holds exactly b tokens, 48 / b steps
    p = model_params()
    keys = token_keys(8, 0, 6)
    blocks = make_blocks(bank_topk_mask(scores_of(4, 48, p), 64, 16), keys)
    previous = None
    for batch in (1, 2, 4, 8):
        _, s = run(p, blocks, ideal, batch=batch)
        t = s["totals"]
        assert t["steps"] == 48 // batch
        now = ((t["dram_read_bytes"] + t["dram_write_bytes"]) / t["steps"], t["cycles"] / t["steps"],
               t["dram_kv_read_bytes"] / t["steps"])  # fmt: skip
        if previous is not None:
            assert all(a >= b for a, b in zip(now, previous, strict=True)), (batch, now, previous)
        previous = now


# ---- 3. FFN scope vs model scope ----------------------------------------------------------------------------
FFN_COLUMNS = ("dram_ffn_bytes", "dram_predictor_bytes", "union_channels", "miss_channels", "token_channels",
               "ffn_macs", "predictor_macs", "sram_read_lines", "sram_write_lines", "topk_cycles",
               "ffn_compute_cycles", "predictor_compute_cycles", "steps", "tokens")  # fmt: skip


@pytest.mark.parametrize("dram_model", ["ideal", "bank_stream", "bank_timing"])
def test_ffn_part_is_the_same_at_both_scopes(dram_model):
    dram = build_dram(load_hwconfig(HW, [f"dram.model={dram_model}"]).dram)
    keys = token_keys(3, 6, 5)
    masks = bank_topk_mask(scores_of(5, 33, model_params()), 64, 16)
    runs = {}
    for scope in ("ffn", "model"):
        runs[scope] = run(model_params(scope=scope, residency="lru"), make_blocks(masks, keys), dram, batch=3)
    (vf, sf), (vm, sm) = runs["ffn"], runs["model"]
    for column in FFN_COLUMNS:
        np.testing.assert_array_equal(
            vf.per_layer[:, COL[column]], vm.per_layer[:, COL[column]], err_msg=column
        )
    assert sm["totals"]["cycles"] > sf["totals"]["cycles"]
    assert sm["ffn_scope"]["cycles"] <= sm["totals"]["cycles"]
    assert sf["ffn_scope"]["cycles"] == sf["totals"]["cycles"]
    if dram_model == "ideal":  # no DRAM state: the FFN-only schedule of the model run is the FFN run exactly
        assert sm["ffn_scope"]["cycles"] == sf["totals"]["cycles"]
        assert sm["dram_split"]["ffn_fetch_cycles"] == sf["dram_split"]["ffn_fetch_cycles"]
    else:  # the attention traffic changes the DRAM state (open rows, channels used) the FFN fetches meet
        assert sm["ffn_scope"]["cycles"] == pytest.approx(sf["totals"]["cycles"], rel=1e-2)


# ---- 4. double_buffer across layer-steps, by hand -----------------------------------------------------------
def dram_cycles(bursts: int) -> int:
    return math.ceil(31.9 + 1.25 * math.ceil(bursts / 32)) if bursts else 0


SRAM_BOUND = dict(macs_per_cycle=256, num_sram_banks=4, topk_cycles_per_bank=64, sram_line_interval_cycles=2)
DRAM_BOUND = dict(
    macs_per_cycle=16384, num_sram_banks=64, topk_cycles_per_bank=1, sram_line_interval_cycles=1
)


def hand_stages(position: int, layer: int, layers: int, hw: dict) -> dict:
    """Stage cycles of one decode token (batch 1) at `position` in `layer` of the small model, residency none,
    fills written then read back (fill_bypass off), 128 kept channels per layer; lanes = SRAM banks."""
    mpc, lanes = hw["macs_per_cycle"], hw["num_sram_banks"]
    pred_bursts = (64 * 16 + 16 * 512) * 2 // 32  # 576
    attn_bursts = 12288 // 32 + position * 2 + 2  # weights, KV rows read (64 B each), the appended row
    attn_bursts += 4 if layer == 0 else 0  # the token's embedding row
    attn_bursts += 16384 // 32 if layer == layers - 1 else 0  # the LM head
    return {
        "prefetch": dram_cycles(pred_bursts) + dram_cycles(attn_bursts),  # two calls: predictor, attention
        "attention": -(-(6144 + (position + 1) * 64) // mpc),
        "vector": -(-(480 + (position + 1) * 6) // lanes),
        "predictor": -(-9216 // mpc),
        "topk": hw["topk_cycles_per_bank"] * -(-8 // lanes),
        "fetch": dram_cycles(128 * 384 // 32),  # 1536 bursts → 92
        # 128 bundles × 6 lines read and as many written, dealt over the banks; bank 0 gets the most
        "sram": 2 * -(-768 // lanes) * hw["sram_line_interval_cycles"],
        "compute": -(-3 * 64 * 128 // mpc),
        "head": -(-128 * 64 // mpc) if layer == layers - 1 else 0,
    }


@pytest.mark.parametrize("bound", ["sram", "dram"])
def test_double_buffer_hides_prefetch_in_the_previous_layer_steps_idle_dram(ideal, bound):
    hw = SRAM_BOUND if bound == "sram" else DRAM_BOUND
    positions, L = (10, 11), 3
    masks = bank_topk_mask(scores_of(6, 2, model_params()), 64, 16)
    keys = (np.zeros(2, np.int32), np.array(positions, np.int32), np.ones(2, bool))
    stages = [hand_stages(pos, l, L, hw) for pos in positions for l in range(L)]
    serial_total = sum(sum(st.values()) for st in stages)
    db_total = db_hidden = carry = 0
    for st in stages:
        hidden = min(st["prefetch"], carry)  # what the previous layer-step left DRAM idle for
        ffn = max(st["fetch"], st["sram"], st["compute"])  # streamed tile by tile
        rest = sum(st[x] for x in ("attention", "vector", "predictor", "topk", "head"))
        total = st["prefetch"] - hidden + rest + ffn
        carry = total - (st["prefetch"] - hidden) - st["fetch"]
        db_total += total
        db_hidden += hidden
    # 576 predictor bursts → 18 per channel → 55 cycles; layer 0: 384 + 20 + 2 + 4 = 410 bursts → 49;
    # layer 2: 384 + 20 + 2 + 512 = 918 bursts → 69
    assert stages[0]["prefetch"] == 55 + 49 and stages[2]["prefetch"] == 55 + 69
    p = model_params(fill_bypass=False, double_buffer=False, **hw)
    _, s = run(p, make_blocks(masks, keys), ideal, batch=1)
    assert s["totals"]["cycles"] == serial_total and s["dram_split"]["prefetch_hidden_cycles"] == 0
    _, s = run(dataclasses.replace(p, double_buffer=True), make_blocks(masks, keys), ideal, batch=1)
    assert s["dram_split"]["prefetch_hidden_cycles"] == db_hidden > 0
    assert s["totals"]["cycles"] == db_total < serial_total
    later = sum(st["prefetch"] for st in stages[1:])  # the first layer-step has nothing before it
    if bound == "sram":  # SRAM ports leave DRAM idle long enough: every later prefetch hides whole
        assert db_hidden == later
    else:  # DRAM idles only while attention, vector, predictor, top-k run: part of each prefetch hides
        assert 0 < db_hidden < later


@pytest.mark.parametrize("macs_per_cycle", [64, 16384])
def test_double_buffer_never_slower(macs_per_cycle):
    dram = build_dram(load_hwconfig(HW, []).dram)  # bank_stream, as shipped
    keys = token_keys(3, 6, 5)
    masks = bank_topk_mask(scores_of(7, 33, model_params()), 64, 16)
    out = {}
    for db in (False, True):
        p = model_params(double_buffer=db, macs_per_cycle=macs_per_cycle, residency="lru")
        out[db] = run(p, make_blocks(masks, keys), dram, batch=3)[1]
    assert out[False]["dram_split"]["prefetch_hidden_cycles"] == 0
    assert out[True]["totals"]["cycles"] <= out[False]["totals"]["cycles"]
    if macs_per_cycle == 64:  # compute-heavy: DRAM idles during attention, prefetch hides there
        assert out[True]["dram_split"]["prefetch_hidden_cycles"] > 0


# ---- 5. resident predictors ---------------------------------------------------------------------------------
def test_resident_predictor_reads_sram_and_reserves_its_capacity(ideal):
    keys = token_keys(3, 6, 5)
    masks = bank_topk_mask(scores_of(8, 33, model_params()), 64, 16)
    streamed = model_params(residency="lru")
    resident = dataclasses.replace(streamed, predictor_resident=True)
    # 3 layers × 18432 B of predictor over 4 banks = 13824 B reserved per bank: 170 → 134 bundles of 384 B
    assert (
        resident.predictor_reserved_bytes_per_bank == 13824
        and streamed.predictor_reserved_bytes_per_bank == 0
    )
    assert (streamed.capacity_bundles, resident.capacity_bundles) == (170, 134)
    shrunk = dataclasses.replace(streamed, bank_size_bytes=65536 - 13824)  # same capacity, predictor streamed
    vr, sr = run(resident, make_blocks(masks, keys), ideal, batch=3)
    vs, ss = run(shrunk, make_blocks(masks, keys), ideal, batch=3)
    _, sb = run(streamed, make_blocks(masks, keys), ideal, batch=3)
    tr, ts = sr["totals"], ss["totals"]
    layer_steps = tr["steps"] * 3
    assert tr["dram_predictor_bytes"] == 0 and sr["predictor"]["dram_cycles"] == 0
    assert vr.per_layer[:, COL["sram_predictor_lines"]].sum() == layer_steps * 288  # 18432 B / 64 B lines
    assert sr["predictor"]["sram_read_bytes"] == layer_steps * 18432
    assert sr["predictor"]["sram_cycles"] == layer_steps * 144  # 72 lines on bank 0 × 2 cycles a line
    assert sr["predictor"]["resident"] is True and ss["predictor"]["resident"] is False
    for column in ("union_channels", "miss_channels", "dram_ffn_bytes", "sram_write_lines", "predictor_macs"):
        np.testing.assert_array_equal(vr.per_layer[:, COL[column]], vs.per_layer[:, COL[column]], column)
    assert ts["dram_read_bytes"] - tr["dram_read_bytes"] == layer_steps * 18432 == ts["dram_predictor_bytes"]
    assert tr["sram_read_bytes"] - ts["sram_read_bytes"] == layer_steps * 18432
    assert sb["totals"]["miss_channels"] < tr["miss_channels"]  # the reserved SRAM costs hits


SMALL_SRAM = [
    "sram.num_banks=4",
    "sram.bank_size_bytes=4096",
    "sram.macros_per_bank=1",
    "predictor.resident=true",
]


def test_resident_predictors_that_do_not_fit_are_refused():
    with pytest.raises(ConfigError, match="predictor.resident: the predictors need 55,296 bytes"):
        params_from_config(load_hwconfig(HW, SMALL_SRAM), 64, 512, 3, 16)
    params_from_config(
        load_hwconfig(HW, [*SMALL_SRAM, "sparsity.k=64"]), 64, 512, 3, 16
    )  # dense: no predictor
    params_from_config(load_hwconfig(HW, [*SMALL_SRAM, "predictor.resident=false"]), 64, 512, 3, 16)
