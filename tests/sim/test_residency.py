"""Residency policies: numba kernels equal their plain-Python twins; LRU by hand; LRU inclusion property."""

import numpy as np
import pytest

from codesign.errors import ConfigError
from codesign.sim.config import load_hwconfig
from codesign.sim.dram import build_dram
from codesign.sim.engine import Block, SimParams, simulate_variant, words_from_masks
from codesign.sim.reference_numpy import simulate_variant_ref
from codesign.sim.residency import (
    Residency,
    ResidencyPy,
    choose_pinned,
    low_bit_index,
    partition_map,
    popcount64,
)


def random_need(rng, shape, bank_size, density=0.3):
    """Random need words (S, L, nb, W) with only the bank's `bank_size` low channel bits set."""
    S, L, nb, W = shape
    bits = rng.random((S, L, nb, W * 64)) < density
    bits[..., bank_size:] = False
    return np.packbits(bits, axis=-1, bitorder="little").view("<u8").astype(np.uint64)


def test_bit_helpers_match_python():
    rng = np.random.default_rng(7)
    for x in rng.integers(1, 2**63, size=50, dtype=np.uint64).tolist() + [1, 2**63, 2**64 - 1]:
        x = np.uint64(x)
        assert popcount64(x) == bin(int(x)).count("1")
        assert low_bit_index(x) == (int(x) & -int(x)).bit_length() - 1


@pytest.mark.parametrize("placement", ["modulo", "stripe"])
@pytest.mark.parametrize("policy", ["lru", "lfu", "none"])
@pytest.mark.parametrize("capacity", [1, 3, 11])
@pytest.mark.parametrize(
    ("bank_size", "num_sram_banks", "L", "nb"),
    [(64, 3, 2, 5), (100, 2, 2, 5), (32, 4, 2, 5), (64, 2, 1, 2), (64, 7, 3, 3)],
)
def test_kernels_equal_python_twin(policy, capacity, bank_size, num_sram_banks, L, nb, placement):
    # capacities below the channels a step needs exercise LRU's "flushed" fast path; L = 1 with one model
    # bank per SRAM bank revisits the flushing bank itself; 7 partitions over 3 × 3 (layer, bank) pairs
    # leave some partitions with one pair under stripe (and 4 partitions empty under modulo)
    rng = np.random.default_rng(capacity * 31 + bank_size + L)
    W = -(-bank_size // 64)
    fast = Residency(policy, num_sram_banks, capacity, bank_size, L * nb * W * 64, placement=placement)
    slow = ResidencyPy(policy, num_sram_banks, capacity, bank_size, placement=placement)
    for _ in range(4):  # state carries over between calls
        need = random_need(rng, (6, L, nb, W), bank_size, density=rng.uniform(0.02, 0.5))
        m_fast, m_slow = np.empty_like(need), np.empty_like(need)
        fast.update(need, m_fast)
        slow.update(need, m_slow)
        np.testing.assert_array_equal(m_fast, m_slow)
        assert not (m_fast & ~need).any(), "a miss must be a needed channel"


@pytest.mark.parametrize("placement", ["modulo", "stripe"])
def test_lfu_heap_equals_scan_twin_across_fill_and_calls(placement):
    # LFU keeps each partition's keys in a min-heap built when the partition fills (ResidencyPy scans them
    # all): capacities of 40 and 90 fill within a call, after several, or never; skewed use makes counts
    # differ so the heap order matters.
    rng = np.random.default_rng(21)
    L, nb, B, ns = 3, 4, 64, 5
    use = 0.6 / np.arange(1, B + 1) ** 0.5  # channel c used with probability ∝ c^-0.5
    for capacity in (40, 90, 200):
        fast = Residency("lfu", ns, capacity, B, L * nb * B, placement=placement)
        slow = ResidencyPy("lfu", ns, capacity, B, placement=placement)
        for _ in range(5):
            bits = rng.random((7, L, nb, B)) < use
            need = np.packbits(bits, axis=-1, bitorder="little").view("<u8").astype(np.uint64)
            m_fast, m_slow = np.empty_like(need), np.empty_like(need)
            fast.update(need, m_fast)
            slow.update(need, m_slow)
            np.testing.assert_array_equal(m_fast, m_slow)


def test_lru_by_hand():
    # one SRAM bank, capacity 2, one layer, one model bank; channels accessed per step (ascending order):
    # step 0 {0, 1}: miss 0, miss 1            cache [0, 1]
    # step 1 {1, 2}: hit 1, miss 2 (evict 0)   cache [1, 2]
    # step 2 {0, 2}: miss 0 (evict 1), hit 2   cache [0, 2]
    # step 3 {1}:    miss 1 (evict 0)          cache [2, 1]
    steps = [{0, 1}, {1, 2}, {0, 2}, {1}]
    need = np.array([[[[sum(1 << c for c in s)]]] for s in steps], dtype=np.uint64)  # (4, 1, 1, 1)
    miss = np.empty_like(need)
    Residency("lru", 1, 2, 64, 64).update(need, miss)
    assert [int(m) for m in miss.ravel()] == [0b11, 0b100, 0b1, 0b10]


def test_lru_capacity_smaller_than_group_keeps_the_last_channels():
    # capacity 2, a step needs {0, 1, 2}: all miss, the cache ends as the last two: {1, 2}; then {1, 2} hits
    need = np.array([[[[0b111]]], [[[0b110]]]], dtype=np.uint64)
    miss = np.empty_like(need)
    Residency("lru", 1, 2, 64, 64).update(need, miss)
    assert [int(m) for m in miss.ravel()] == [0b111, 0]


def test_lru_inclusion_more_capacity_never_more_misses():
    rng = np.random.default_rng(3)
    L, nb, B, ns = 3, 6, 64, 2
    need = random_need(rng, (40, L, nb, 1), B, density=0.25)
    previous = None
    for capacity in (1, 4, 16, 64, 200):
        miss = np.empty_like(need)
        Residency("lru", ns, capacity, B, L * nb * 64).update(need, miss)
        if previous is not None:  # LRU stack property: every miss at C+ is a miss at C
            assert not (miss & ~previous).any()
        previous = miss
    total = L * nb * B // ns
    miss = np.empty_like(need)
    Residency("lru", ns, total, B, L * nb * 64).update(need, miss)
    # everything fits: each channel misses exactly once (its first use)
    first_use = np.bitwise_or.accumulate(need, axis=0)
    expected = need & ~np.concatenate([np.zeros_like(need[:1]), first_use[:-1]])
    np.testing.assert_array_equal(miss, expected)


def test_pinned_hot_pins_most_used_per_sram_bank():
    L, I, B, ns = 1, 256, 64, 2  # model banks 0, 2 → SRAM 0; 1, 3 → SRAM 1
    freq = np.zeros((L, I), dtype=np.int64)
    freq[0, [5, 130, 131]] = [10, 9, 8]  # SRAM 0: channels 5 (bank 0), 130, 131 (bank 2)
    freq[0, [70, 200]] = [3, 4]  # SRAM 1: channel 70 (bank 1), 200 (bank 3)
    pinned = choose_pinned(freq, ns, 2, B, 1)  # two per SRAM bank
    kept = np.unpackbits(pinned.view(np.uint8), bitorder="little").reshape(L, I)
    assert set(np.flatnonzero(kept[0])) == {5, 130, 70, 200}
    need = np.full((1, L, 4, 1), np.uint64(2**64 - 1))
    miss = np.empty_like(need)
    Residency("pinned_hot", ns, 2, B, L * I, pinned).update(need, miss)
    np.testing.assert_array_equal(miss, need & ~pinned[None])


def test_partition_map_by_hand():
    # 3 layers × 2 model banks on 4 partitions. modulo: j mod 4 → partitions 2 and 3 never hold data.
    # stripe: (l·2 + j) mod 4 → layer 0 in 0, 1; layer 1 in 2, 3; layer 2 back in 0, 1.
    np.testing.assert_array_equal(partition_map(3, 2, 4, "modulo"), [[0, 1], [0, 1], [0, 1]])
    np.testing.assert_array_equal(partition_map(3, 2, 4, "stripe"), [[0, 1], [2, 3], [0, 1]])
    with pytest.raises(ConfigError, match="sram.placement"):
        Residency("lru", 4, 2, 64, 64, placement="diagonal")


def whole_model_cycle(steps, L, nb, B):
    """Every step needs every channel of every (layer, model bank): (steps, L, nb, W) words."""
    bits = np.zeros((steps, L, nb, -(-B // 64) * 64), dtype=bool)
    bits[..., :B] = True
    return np.packbits(bits, axis=-1, bitorder="little").view("<u8").astype(np.uint64)


@pytest.mark.parametrize("policy", ["lru", "lfu"])
def test_stripe_uses_every_partition_modulo_only_the_model_banks(policy):
    # 8 layers × 3 model banks of 64 channels (1,536 bundles), every step needs all of them; 8 partitions of
    # 192 bundles (1,536 in all). stripe: (l·3 + j) mod 8 runs over 0..23 mod 8 → 3 pairs (192 bundles) per
    # partition: the whole model fits, and after the first step's compulsory misses nothing misses.
    # modulo (j mod 8) puts 8 pairs (512 bundles) in each of partitions 0..2 and nothing in 3..7: a cycle
    # larger than the partition, so LRU (and LFU, whose equal counts tie to the least recent) miss everything.
    L, nb, B, ns, cap = 8, 3, 64, 8, 192
    need = whole_model_cycle(5, L, nb, B)
    keys = L * nb * B
    stripe = np.empty_like(need)
    Residency(policy, ns, cap, B, keys, placement="stripe").update(need, stripe)
    assert int(np.bitwise_count(stripe[0]).sum()) == keys and not stripe[1:].any()
    modulo = np.empty_like(need)
    Residency(policy, ns, cap, B, keys, placement="modulo").update(need, modulo)
    np.testing.assert_array_equal(modulo, need)


def test_modulo_mapping_unchanged_stripe_round_robins_layers():
    # 2 layers × 1 model bank on 2 partitions of 1 bundle; both steps need channel 0 of both layers.
    # modulo: both layers' bank 0 in partition 0 (partition 1 empty) → a 2-key cycle in 1 slot: 4 misses.
    # stripe: layer l in partition l mod 2 → only the 2 compulsory misses of step 0.
    need = np.ones((2, 2, 1, 1), dtype=np.uint64)
    for placement, expected in (("modulo", [1, 1, 1, 1]), ("stripe", [1, 1, 0, 0])):
        fast = Residency("lru", 2, 1, 64, 128, placement=placement)
        for twin in (fast, ResidencyPy("lru", 2, 1, 64, placement=placement)):
            miss = np.empty_like(need)
            twin.update(need, miss)
            assert miss.ravel().tolist() == expected, (placement, type(twin).__name__)


def test_pinned_hot_stripe_pins_per_layer_bank_partition():
    # 2 layers × 2 model banks on 4 partitions, capacity 1. stripe: (l·2 + j) mod 4 = one pair per partition,
    # so each (layer, bank) pins its own most used channel. modulo: partitions 0, 1 take the best of both
    # layers; partitions 2, 3 hold nothing.
    L, I, B = 2, 128, 64
    freq = np.zeros((L, I), dtype=np.int64)
    freq[0, [3, 70]] = [5, 6]
    freq[1, [9, 100]] = [7, 2]

    def kept(pinned):
        bits = np.unpackbits(pinned.view(np.uint8), bitorder="little").reshape(L, I)
        return {(int(layer), int(c)) for layer, c in np.argwhere(bits)}

    assert kept(choose_pinned(freq, 4, 1, B, 1, "stripe")) == {(0, 3), (0, 70), (1, 9), (1, 100)}
    assert kept(choose_pinned(freq, 4, 1, B, 1, "modulo")) == {(1, 9), (0, 70)}


@pytest.mark.parametrize("policy", ["lru", "lfu", "pinned_hot"])
def test_engine_equals_numpy_twin_with_fewer_model_banks_than_partitions(policy):
    # 3 model banks per layer on 8 SRAM banks: stripe and modulo map differently here (bank64 with SmolLM2:
    # 24 on 64). The engine (numba kernels, profile_pinned) and the numpy reference (ResidencyPy,
    # choose_pinned) must agree under both; and stripe, which uses all 8 partitions, misses less.
    rng = np.random.default_rng(len(policy))
    base = dict(
        hidden=64, intermediate=192, layers=4, bank_size=64, k=16, dtype_bytes=2, num_sram_banks=8,
        bank_size_bytes=12 * 384, line_bytes=64, ports_per_bank=1, sram_line_interval_cycles=2,
        macs_per_cycle=256, topk_cycles_per_bank=64, frequency_hz=1e9, execution="batch_union", residency=policy,
        double_buffer=True, predictor_rank=16, sram_read_energy_pj=1.0, sram_write_energy_pj=1.0,
        dram_energy_pj_per_bit=3.5, mac_energy_pj=0.5, leakage_mw_per_bank=1.0, area_mm2_per_bank=0.1,
    )  # fmt: skip
    # Zipf-skewed channel scores so that some channels recur (something for residency to keep)
    scores = rng.standard_normal((30, 4, 192)) + 3.0 / np.arange(1, 193) ** 0.5
    masks = np.zeros_like(scores, dtype=bool)
    top = np.argsort(-scores.reshape(30, 4, 3, 64), axis=-1)[..., :16]
    np.put_along_axis(masks.reshape(30, 4, 3, 64), top, True, axis=-1)
    words = words_from_masks(masks, 64)
    is_decode, seq_id = np.ones(30, dtype=bool), np.zeros(30, dtype=np.int32)

    def blocks():
        yield Block(words, is_decode, seq_id)

    dram = build_dram(load_hwconfig("hwconfigs/bank64.yaml", ["dram.model=bank_timing"]).dram)
    misses = {}
    for placement in ("stripe", "modulo"):
        p = SimParams(**base, placement=placement)
        fast = simulate_variant("s", p, blocks, dram, 1)
        slow = simulate_variant_ref("s", p, blocks, dram, 1)
        np.testing.assert_array_equal(fast.per_layer, slow.per_layer)
        np.testing.assert_array_equal(fast.per_sram_bank, slow.per_sram_bank)
        misses[placement] = fast.total("miss_channels")
    assert misses["stripe"] < misses["modulo"], misses
