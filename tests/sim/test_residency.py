"""Residency policies: numba kernels equal their plain-Python twins; LRU by hand; LRU inclusion property."""

import numpy as np
import pytest

from codesign.sim.residency import Residency, ResidencyPy, choose_pinned, low_bit_index, popcount64


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


@pytest.mark.parametrize("policy", ["lru", "lfu", "none"])
@pytest.mark.parametrize("capacity", [1, 3, 11])
@pytest.mark.parametrize(
    ("bank_size", "num_sram_banks", "L", "nb"), [(64, 3, 2, 5), (100, 2, 2, 5), (32, 4, 2, 5), (64, 2, 1, 2)]
)
def test_kernels_equal_python_twin(policy, capacity, bank_size, num_sram_banks, L, nb):
    # capacities below the channels a step needs exercise LRU's "flushed" fast path; L = 1 with one model
    # bank per SRAM bank revisits the flushing bank itself
    rng = np.random.default_rng(capacity * 31 + bank_size + L)
    W = -(-bank_size // 64)
    fast = Residency(policy, num_sram_banks, capacity, bank_size, L * nb * W * 64)
    slow = ResidencyPy(policy, num_sram_banks, capacity, bank_size)
    for _ in range(4):  # state carries over between calls
        need = random_need(rng, (6, L, nb, W), bank_size, density=rng.uniform(0.02, 0.5))
        m_fast, m_slow = np.empty_like(need), np.empty_like(need)
        fast.update(need, m_fast)
        slow.update(need, m_slow)
        np.testing.assert_array_equal(m_fast, m_slow)
        assert not (m_fast & ~need).any(), "a miss must be a needed channel"


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
