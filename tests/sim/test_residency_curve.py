"""Residency policies end to end (`simulate` → report totals): what each earns as SRAM capacity grows.

Tiny model: hidden 64 → one channel bundle (gate column, up column, down row, bf16) = 3 · 64 · 2 = 384 B.
4 SRAM banks, `placement: stripe` (bank64's default); residency partition s holds the (layer l, model bank j)
with (l·nb + j) mod 4 = s — model bank s (and s + 4, ...) of every layer when nb is a multiple of 4 —
`bank_size_bytes // 384` bundles each. Hand-made traces are one sequence of decode tokens at batch 1, so every token is one step.
"""

import numpy as np
import pytest

from codesign.sim.config import load_hwconfig
from codesign.sim.report import build_report
from codesign.sim.simulation import simulate
from codesign.trace.store import TraceMeta, TraceReader, TraceWriter
from codesign.trace.synth import SynthSpec, write_synthetic

HIDDEN, BUNDLE_BYTES = 64, 3 * 64 * 2


def totals(trace, policy: str, capacity_bundles: int, batch: int = 1, *, sets: tuple[str, ...] = ()) -> dict:
    # one macro per bank so that small banks stay inside the CACTI sweep (≥ 4 KB macros: ≥ 11 bundles)
    cfg = load_hwconfig("hwconfigs/bank64.yaml", [
        "sram.num_banks=4", "sram.macros_per_bank=1", f"sram.residency={policy}",
        f"sram.bank_size_bytes={capacity_bundles * BUNDLE_BYTES}", *sets])  # fmt: skip
    return build_report(simulate(cfg, trace, batch=batch))["totals"]


def handmade(path, channels_per_half) -> str:
    """8 decode tokens of one sequence, 2 layers × 4 model banks of 64; tokens of half h keep, in every bank
    and layer, the 16 channels channels_per_half[h]."""
    layers, inter = 2, 256
    masks = np.zeros((8, layers, inter), dtype=bool)
    for t in range(8):
        for bank in range(4):
            masks[t, :, bank * 64 + np.asarray(channels_per_half[t // 4])] = True
    meta = TraceMeta(model_name="handmade", hidden=HIDDEN, intermediate=inter, layers=layers, bank_size=64, k=16,
                     source="test")  # fmt: skip
    with TraceWriter.create(path, meta) as w:
        w.append(masks, seq_id=0, position=np.arange(8), token_id=0, is_decode=True)
    return path


def test_lru_thrashes_on_cyclic_layer_access_pinned_hot_does_not(tmp_path):
    # Every token needs channels 0..15 of its bank in both layers. Partition s sees, every step, the same
    # 32 keys in the same order (layer 0's 16, then layer 1's 16) — a cycle. With room for 31, LRU evicts
    # each key just before it comes round again: 0 hits. With room for 32: only the 32 first-use misses.
    trace = handmade(tmp_path / "cyclic.zarr", [range(16), range(16)])
    union = 8 * 2 * 4 * 16  # steps × layers × model banks × channels = 1024
    none = totals(trace, "none", 31)
    assert none["hit_rate"] == 0.0 and none["dram_ffn_bytes"] == union * BUNDLE_BYTES
    lru = totals(trace, "lru", 31)
    assert lru["hit_rate"] == 0.0 and lru["dram_ffn_bytes"] == none["dram_ffn_bytes"]
    lru = totals(trace, "lru", 32)
    assert lru["miss_channels"] == 32 * 4 and lru["hit_rate"] == 1 - 128 / union
    # pinned_hot keeps 31 of the 32 (profiled on the other half, identical here): 1 miss per partition-step
    pinned = totals(trace, "pinned_hot", 31)
    assert pinned["miss_channels"] == 8 * 4 and pinned["dram_ffn_bytes"] == 32 * BUNDLE_BYTES


def test_pinned_hot_is_profiled_on_the_half_it_does_not_replay(tmp_path):
    # Tokens 0..3 use channels 0..15 of every bank, tokens 4..7 channels 32..47. Each half is replayed with
    # the set profiled on the other half, so nothing it pins is ever needed: 0 hits (an oracle profiled on
    # the replayed tokens would hit everything). LRU pays the first use of each half's 32 keys per partition.
    trace = handmade(tmp_path / "shift.zarr", [range(16), range(32, 48)])
    union = 8 * 2 * 4 * 16
    pinned, none = totals(trace, "pinned_hot", 32), totals(trace, "none", 32)
    assert (
        pinned["hit_rate"] == 0.0
        and pinned["dram_ffn_bytes"] == none["dram_ffn_bytes"] == union * BUNDLE_BYTES
    )
    lru = totals(trace, "lru", 32)
    assert lru["miss_channels"] == 2 * 32 * 4 and lru["hit_rate"] == 0.75


@pytest.mark.parametrize("policy", ["lru", "lfu"])
def test_stripe_residency_uses_every_bank_modulo_only_the_model_banks(tmp_path, policy):
    # 2 layers × 4 model banks, every token needs the same 16 channels of each: 8 (layer, bank) pairs of 16
    # hot bundles. On 8 banks of 16 bundles, stripe maps (l·4 + j) mod 8 → one pair per partition: the whole
    # working set fits in 8 × 16 = 128 bundles and only its 128 first uses miss. modulo keeps model bank j of
    # both layers in bank j (banks 4..7 empty): 32 bundles cycling through 16 slots, every access misses.
    # stripe on 4 banks (half the SRAM) is that same 2-pairs-per-partition thrash.
    trace = handmade(tmp_path / "hot.zarr", [range(16), range(16)])
    union = 8 * 2 * 4 * 16
    eight = totals(trace, policy, 16, sets=("sram.num_banks=8", "sram.placement=stripe"))
    assert eight["miss_channels"] == 128 and eight["hit_rate"] == 1 - 128 / union
    assert eight["dram_ffn_bytes"] == 128 * BUNDLE_BYTES
    modulo = totals(trace, policy, 16, sets=("sram.num_banks=8", "sram.placement=modulo"))
    four = totals(trace, policy, 16, sets=("sram.placement=stripe",))
    for t in (modulo, four):
        assert t["hit_rate"] == 0.0 and t["dram_ffn_bytes"] == union * BUNDLE_BYTES


@pytest.fixture(scope="module")
def zipf_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("curve") / "z.zarr"
    spec = SynthSpec("zipf", HIDDEN, 512, 3, sequences=4, prefill_tokens=6, decode_tokens=12, seed=11)
    write_synthetic(spec, path, chunk_tokens=16)
    return path


@pytest.mark.parametrize("batch", [1, 4])
def test_whole_model_on_chip_costs_only_compulsory_misses(zipf_trace, batch):
    # 512 channels = 8 model banks; partition s holds model banks s and s + 4 of 3 layers: 384 bundles fit
    # them all. LRU and LFU then never evict: each channel the trace uses is fetched exactly once.
    reader = TraceReader(zipf_trace)
    masks = reader.read(0, reader.num_tokens, with_logits=False).masks()  # (T, L, I) bool
    distinct = int(masks.any(axis=0).sum())  # channels used at least once
    for policy in ("lru", "lfu"):
        t = totals(zipf_trace, policy, 384, batch)
        assert t["miss_channels"] == distinct, policy
        assert t["dram_ffn_bytes"] == distinct * BUNDLE_BYTES, policy
    none = totals(zipf_trace, "none", 384, batch)
    assert none["hit_rate"] == 0.0 and none["dram_ffn_bytes"] == none["union_channels"] * BUNDLE_BYTES
    assert none["union_channels"] > distinct  # channels are reused, so residency has something to earn
    pinned = totals(zipf_trace, "pinned_hot", 384, batch)  # everything pinned, whatever the profile
    assert pinned["dram_ffn_bytes"] == 0 and pinned["hit_rate"] == 1.0


def test_lru_misses_never_increase_with_capacity(zipf_trace):
    # LRU is a stack algorithm (Mattson et al. 1970): on one access sequence the lines resident at capacity C
    # are a subset of those at C + 1, so misses never increase with capacity (Belady's anomaly is FIFO's).
    # The per-partition sequence does not depend on capacity, so this holds for the whole run.
    # `none` fetches every needed channel at any capacity.
    capacities = (11, 24, 48, 96, 192, 384)
    lru = [totals(zipf_trace, "lru", c) for c in capacities]
    misses = [t["miss_channels"] for t in lru]
    assert misses == sorted(misses, reverse=True) and misses[-1] < misses[0], misses
    assert [t["dram_ffn_bytes"] for t in lru] == [m * BUNDLE_BYTES for m in misses]
    hit_rates = [t["hit_rate"] for t in lru]
    assert hit_rates == sorted(hit_rates)
    none = {totals(zipf_trace, "none", c)["dram_ffn_bytes"] for c in (11, 384)}
    assert none == {lru[0]["union_channels"] * BUNDLE_BYTES}
