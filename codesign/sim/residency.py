"""On-chip residency of FFN channel bundles in the SRAM weight banks.

Contract of a residency policy: given the channels each (step, layer, model bank) needs, as bit words
`need` (S, L, nb, W) uint64 (bit i of word w = channel w·64 + i of the bank), write the channels that were
*not* resident, `miss` (same shape), and update the on-chip state. Misses are fetched from DRAM (and
written into the bank); hits are read from the bank without DRAM traffic.

Mapping: the SRAM is N = num_sram_banks residency partitions of `capacity` bundles each
(bank_size_bytes // bundle_bytes). Model bank j of layer l belongs to partition
  stripe  (l·nb + j) mod N — (layer, model bank) round-robin: every bundle is striped over all banks, so
          the whole SRAM is one pool, cut into N equal partitions that all hold data (a layer with fewer
          model banks than N still fills every partition across layers);
  modulo  j mod N — model bank j of every layer lives whole in SRAM bank j mod N (nb < N leaves N − nb
          banks empty).
Partitions are about capacity only; which banks' ports serve the lines is the pipeline's business.
Each partition sees its accesses in a fixed order: step, then layer, then model bank (ascending), then
channel (ascending). Partitions are independent, so the stateful kernels run in parallel across them (numba
prange); their state is disjoint by key.

A channel's key is its global index l·I + j·B + c. Policies, chosen by name from POLICIES:
  none        nothing stays on chip: every needed channel is fetched every step;
  lru         least recently used, exact per access;
  lfu         least frequently used (counts persist across evictions), ties to the least recently used
              (no ties remain: last uses within a partition are distinct); a binary min-heap per partition;
  pinned_hot  the `capacity` most frequently used channels of each partition are pinned at load time (not
              charged); everything else is streamed. The use counts come from a profile the caller chooses
              (codesign/sim/simulation.py: the other half of the trace than the one replayed).
Every numba kernel has a plain-Python twin (`*_py`, ResidencyPy) used by the tests for exact equality.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from numba import njit, prange

from codesign.errors import ConfigError

POLICIES = ("none", "lru", "lfu", "pinned_hot")
PLACEMENTS = ("stripe", "modulo")


def layer_shift(placement: str, num_model_banks: int) -> int:
    """Partition of (layer l, model bank j) = (l·shift + j) mod N: shift nb for stripe, 0 for modulo."""
    if placement not in PLACEMENTS:
        raise ConfigError(
            f"sram.placement: unknown placement {placement!r} (choose from {', '.join(PLACEMENTS)})"
        )
    return num_model_banks if placement == "stripe" else 0


def partition_map(layers: int, num_model_banks: int, num_sram_banks: int, placement: str) -> np.ndarray:
    """(L, nb) int64: the residency partition of each (layer, model bank)."""
    shift = layer_shift(placement, num_model_banks)
    return (np.arange(layers)[:, None] * shift + np.arange(num_model_banks)[None, :]) % num_sram_banks


# ---- bit helpers on uint64 words (numba has no popcount / count-trailing-zeros intrinsic) ----------------
_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
# bit index of an isolated bit x from (x · DEBRUIJN) >> 58 (Leiserson, Prokop & Randall 1998)
_DEBRUIJN_INDEX = np.zeros(64, dtype=np.int64)
for _i in range(64):
    _DEBRUIJN_INDEX[((1 << _i) * 0x03F79D71B4CB0A89 & 0xFFFFFFFFFFFFFFFF) >> 58] = _i
_ONE = np.uint64(1)
_ZERO = np.uint64(0)


@njit(cache=True, inline="always")
def popcount64(x):
    """Set bits of a uint64 (SWAR)."""
    x = x - ((x >> _ONE) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return np.int64((x * _H01) >> np.uint64(56))


@njit(cache=True, inline="always")
def low_bit_index(x):
    """Index of the lowest set bit of a non-zero uint64."""
    low = x & (~x + _ONE)
    return _DEBRUIJN_INDEX[(low * _DEBRUIJN) >> np.uint64(58)]


@njit(cache=True, inline="always")
def first_model_bank(s, l, shift, num_sram_banks):
    """Lowest model bank j of layer l in partition s, i.e. (l·shift + j) mod N = s; the next are j + N, ..."""
    return (s - (l * shift) % num_sram_banks + num_sram_banks) % num_sram_banks


# ---- none and pinned_hot: stateless once the pinned set is chosen ----------------------------------------
def update_none(need: np.ndarray, miss: np.ndarray) -> None:
    miss[...] = need


def update_pinned(need: np.ndarray, miss: np.ndarray, pinned: np.ndarray) -> None:
    """pinned: (L, nb, W) uint64 words of pinned channels."""
    np.bitwise_and(need, ~pinned[None], out=miss)


def choose_pinned(
    freq: np.ndarray,
    num_sram_banks: int,
    capacity: int,
    bank_size: int,
    words: int,
    placement: str = "modulo",
) -> np.ndarray:
    """The `capacity` most used channels of each partition (ties to the lower key), as (L, nb, W) words.

    freq: (L, I) int64 channel use counts.
    """
    layers, inter = freq.shape
    nb = inter // bank_size
    pinned = np.zeros((layers, nb, words), dtype=np.uint64)
    by_bank = freq.reshape(layers, nb, bank_size)  # (L, nb, B)
    part = partition_map(layers, nb, num_sram_banks, placement)  # (L, nb)
    for s in range(num_sram_banks):
        banks = np.argwhere(part == s)  # (n_s, 2) (layer, model bank) rows in key order
        if len(banks) == 0:
            continue
        flat = by_bank[banks[:, 0], banks[:, 1]].reshape(-1)  # (n_s · B,) in key order
        top = np.argsort(-flat, kind="stable")[:capacity]
        row, c = np.divmod(top, bank_size)
        l_idx, j = banks[row, 0], banks[row, 1]
        np.bitwise_or.at(pinned, (l_idx, j, c // 64), np.left_shift(np.uint64(1), (c % 64).astype(np.uint64)))
    return pinned


# ---- LRU: one doubly linked list of slots per SRAM bank, MRU at head -------------------------------------
@njit(cache=True)
def _lru_bank(s, need, miss, num_sram_banks, shift, bank_size, slot_key, prev, nxt, head, tail, count, key_slot,
              flush_bank, flush_words):  # fmt: skip
    """All accesses of SRAM bank s, exact LRU. List ends and size live in locals until the end.

    Fast path ("flushed" state): a model bank that needs ≥ capacity channels in one step leaves exactly its
    `capacity` highest channels on chip, whatever was there before. Such a state is kept as (model bank,
    words) instead of a list; while every step of this SRAM bank needs ≥ capacity channels of a *different*
    model bank, everything misses and the state is replaced in O(W) — the thrash regime of large models
    (Qwen2.5-7B on bank64: 12 bundles per SRAM bank, 16 channels per step). Anything else first rebuilds
    the list from the flushed words (oldest = lowest channel) and takes the general path.
    """
    S, L, nb, W = need.shape
    cap = slot_key.shape[1]
    sk, pv, nx, fw = slot_key[s], prev[s], nxt[s], flush_words[s]  # this bank's rows
    h, tl, cnt, fb = head[s], tail[s], count[s], flush_bank[s]
    for t in range(S):
        for l in range(L):
            for j in range(first_model_bank(s, l, shift, num_sram_banks), nb, num_sram_banks):
                bank_id = l * nb + j
                pc = 0
                for w in range(W):
                    pc += popcount64(need[t, l, j, w])
                if fb >= 0 and fb != bank_id and pc >= cap:  # flushed → flushed: all miss
                    _keep_highest(need[t, l, j], fw, pc - cap)
                    fb = bank_id
                    for w in range(W):
                        miss[t, l, j, w] = need[t, l, j, w]
                    continue
                if fb >= 0:  # rebuild the list: the flushed channels, oldest (lowest) first
                    for w in range(W):
                        y = fw[w]
                        while y != _ZERO:
                            key = fb * bank_size + w * 64 + low_bit_index(y)
                            y = y & (y - _ONE)
                            slot = cnt
                            cnt += 1
                            sk[slot] = key
                            key_slot[key] = slot
                            pv[slot] = -1
                            nx[slot] = h
                            if h != -1:
                                pv[h] = slot
                            else:
                                tl = slot
                            h = slot
                    fb = -1
                base = bank_id * bank_size
                for w in range(W):
                    x = need[t, l, j, w]
                    m = _ZERO
                    while x != _ZERO:
                        bit = low_bit_index(x)
                        x = x & (x - _ONE)
                        key = base + w * 64 + bit
                        slot = key_slot[key]
                        if slot >= 0:  # hit: unlink, relink at the head below
                            if slot == h:
                                continue
                            p = pv[slot]
                            n = nx[slot]
                            nx[p] = n
                            if n == -1:
                                tl = p
                            else:
                                pv[n] = p
                        else:
                            m |= _ONE << np.uint64(bit)
                            if cnt < cap:
                                slot = cnt
                                cnt += 1
                            else:  # evict the tail (least recently used)
                                slot = tl
                                key_slot[sk[slot]] = -1
                                if slot == h:  # capacity 1
                                    h = -1
                                    tl = -1
                                else:
                                    tl = pv[slot]
                                    nx[tl] = -1
                            sk[slot] = key
                            key_slot[key] = slot
                        pv[slot] = -1
                        nx[slot] = h
                        if h != -1:
                            pv[h] = slot
                        else:
                            tl = slot
                        h = slot
                    miss[t, l, j, w] = m
                if pc >= cap:  # the list now holds exactly this bank's top channels: switch to flushed
                    for i in range(cnt):
                        key_slot[sk[i]] = -1
                    cnt, h, tl, fb = 0, -1, -1, bank_id
                    _keep_highest(need[t, l, j], fw, pc - cap)
    head[s], tail[s], count[s], flush_bank[s] = h, tl, cnt, fb


@njit(cache=True)
def _keep_highest(words, out, drop):
    """out = words with their `drop` lowest set bits (across words, ascending) cleared."""
    for w in range(words.shape[0]):
        y = words[w]
        while drop > 0 and y != _ZERO:
            y = y & (y - _ONE)
            drop -= 1
        out[w] = y


@njit(cache=True, parallel=True)
def update_lru(need, miss, num_sram_banks, shift, bank_size, slot_key, prev, nxt, head, tail, count, key_slot,
               flush_bank, flush_words):  # fmt: skip
    for s in prange(num_sram_banks):  # partitions own disjoint keys and state rows: no races
        _lru_bank(s, need, miss, num_sram_banks, shift, bank_size, slot_key, prev, nxt, head, tail, count, key_slot,
                  flush_bank, flush_words)  # fmt: skip


# ---- LFU: counts per key; each partition's resident keys in a binary min-heap on (count, last use) ---------
# The victim is the heap's root: O(log capacity) per access instead of a scan of every slot per miss. It is
# the scan's victim exactly: last uses within a partition are distinct (one clock tick per access), so the
# order is total. slot_key[s] is partition s's heap, key_slot[key] the key's position in it. Nothing is
# evicted before the partition is full, so until then the keys sit unordered (hits cost O(1), as when the
# whole model fits) and the heap is built once, in O(capacity), by the miss that fills it.
@njit(cache=True, inline="always")
def _lfu_less(a, b, freq, last_use):
    return freq[a] < freq[b] or (freq[a] == freq[b] and last_use[a] < last_use[b])


@njit(cache=True)
def _sift_down(heap, n, i, key_slot, freq, last_use):
    key = heap[i]
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _lfu_less(heap[c + 1], heap[c], freq, last_use):
            c += 1
        if not _lfu_less(heap[c], key, freq, last_use):
            break
        heap[i] = heap[c]
        key_slot[heap[i]] = i
        i = c
    heap[i] = key
    key_slot[key] = i


@njit(cache=True, parallel=True)
def update_lfu(
    need, miss, num_sram_banks, shift, bank_size, slot_key, count, key_slot, freq, last_use, clock
):
    S, L, nb, W = need.shape
    cap = slot_key.shape[1]
    for s in prange(num_sram_banks):
        heap = slot_key[s]
        n, now = count[s], clock[s]
        for t in range(S):
            for l in range(L):
                for j in range(first_model_bank(s, l, shift, num_sram_banks), nb, num_sram_banks):
                    for w in range(W):
                        x = need[t, l, j, w]
                        m = _ZERO
                        base = (l * nb + j) * bank_size + w * 64
                        while x != _ZERO:
                            bit = low_bit_index(x)
                            x = x & (x - _ONE)
                            key = base + bit
                            now += 1
                            freq[key] += 1
                            last_use[key] = now
                            pos = key_slot[key]
                            if pos >= 0:  # hit: its (count, last use) only grew
                                if n == cap:
                                    _sift_down(heap, n, pos, key_slot, freq, last_use)
                                continue
                            m |= _ONE << np.uint64(bit)
                            if n < cap:
                                heap[n] = key
                                key_slot[key] = n
                                n += 1
                                if n == cap:  # full: order it once (bottom-up heap construction)
                                    for i in range(cap // 2 - 1, -1, -1):
                                        _sift_down(heap, n, i, key_slot, freq, last_use)
                            else:  # evict the root, the least frequently (then least recently) used
                                key_slot[heap[0]] = -1
                                heap[0] = key
                                _sift_down(heap, n, 0, key_slot, freq, last_use)
                        miss[t, l, j, w] = m
        count[s], clock[s] = n, now


class Residency:
    """The on-chip state of one policy for one simulated configuration; `update(need, miss)` per chunk."""

    def __init__(
        self,
        policy: str,
        num_sram_banks: int,
        capacity: int,
        bank_size: int,
        num_keys: int,
        pinned: np.ndarray | None = None,
        placement: str = "modulo",
    ):
        if policy not in POLICIES:
            raise ConfigError(
                f"sram.residency: unknown policy {policy!r} (choose from {', '.join(POLICIES)})"
            )
        if capacity < 1 and policy != "none":
            raise ConfigError(
                f"sram: a bank holds {capacity} channel bundles; residency {policy!r} needs ≥ 1"
            )
        self.policy, self.num_sram_banks, self.capacity, self.bank_size = (
            policy,
            num_sram_banks,
            capacity,
            bank_size,
        )
        self.pinned, self.placement = pinned, placement
        layer_shift(placement, 1)  # refuse an unknown placement here, not at the first update
        if policy == "pinned_hot" and pinned is None:
            raise ValueError("pinned_hot needs the pinned words (choose_pinned)")
        ns = num_sram_banks
        self.slot_key = np.full((ns, max(capacity, 1)), -1, dtype=np.int64)
        self.count = np.zeros(ns, dtype=np.int64)
        self.key_slot = np.full(num_keys, -1, dtype=np.int64)
        if policy == "lru":
            self.prev = np.full((ns, capacity), -1, dtype=np.int64)
            self.nxt = np.full((ns, capacity), -1, dtype=np.int64)
            self.head = np.full(ns, -1, dtype=np.int64)
            self.tail = np.full(ns, -1, dtype=np.int64)
            self.flush_bank = np.full(ns, -1, dtype=np.int64)  # see _lru_bank's fast path
            self.flush_words = np.zeros((ns, -(-bank_size // 64)), dtype=np.uint64)
        elif policy == "lfu":
            self.freq = np.zeros(num_keys, dtype=np.int64)
            self.last_use = np.zeros(num_keys, dtype=np.int64)
            self.clock = np.zeros(ns, dtype=np.int64)

    def update(self, need: np.ndarray, miss: np.ndarray) -> None:
        if self.policy == "none":
            update_none(need, miss)
        elif self.policy == "pinned_hot":
            update_pinned(need, miss, self.pinned)
        elif self.policy == "lru":
            shift = layer_shift(self.placement, need.shape[2])
            update_lru(need, miss, self.num_sram_banks, shift, self.bank_size, self.slot_key, self.prev, self.nxt,
                       self.head, self.tail, self.count, self.key_slot, self.flush_bank, self.flush_words)  # fmt: skip
        else:
            shift = layer_shift(self.placement, need.shape[2])
            update_lfu(need, miss, self.num_sram_banks, shift, self.bank_size, self.slot_key, self.count, self.key_slot,
                       self.freq, self.last_use, self.clock)  # fmt: skip


# ---- plain-Python twins (tests and the numpy reference) ---------------------------------------------------
def _bank_order(need: np.ndarray, num_sram_banks: int, bank_size: int, placement: str = "modulo"):
    """Yield (s, t, l, j, w, bit, key) in the order partition s sees its accesses."""
    S, L, nb, W = need.shape
    part = partition_map(L, nb, num_sram_banks, placement)
    for s in range(num_sram_banks):
        for t in range(S):
            for l in range(L):
                for j in (j for j in range(nb) if part[l, j] == s):
                    for w in range(W):
                        x = int(need[t, l, j, w])
                        for bit in range(64):
                            if x >> bit & 1:
                                yield s, t, l, j, w, bit, (l * nb + j) * bank_size + w * 64 + bit


class ResidencyPy:
    """Twin of Residency in plain Python (OrderedDict LRU, dict LFU)."""

    def __init__(self, policy, num_sram_banks, capacity, bank_size, pinned=None, placement="modulo"):
        self.policy, self.ns, self.cap, self.bank_size, self.pinned, self.placement = (
            policy,
            num_sram_banks,
            capacity,
            bank_size,
            pinned,
            placement,
        )
        self.lru = [OrderedDict() for _ in range(num_sram_banks)]
        self.res = [set() for _ in range(num_sram_banks)]
        self.freq: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.clock = [0] * num_sram_banks

    def update(self, need: np.ndarray, miss: np.ndarray) -> None:
        if self.policy in ("none", "pinned_hot"):
            pin = 0 if self.pinned is None else self.pinned[None]
            miss[...] = need & ~np.asarray(pin, dtype=np.uint64)
            return
        miss[...] = 0
        for s, t, l, j, w, bit, key in _bank_order(need, self.ns, self.bank_size, self.placement):
            if self.policy == "lru":
                od = self.lru[s]
                if key in od:
                    od.move_to_end(key)
                    continue
                od[key] = None
                if len(od) > self.cap:
                    od.popitem(last=False)
            else:
                self.clock[s] += 1
                self.freq[key] = self.freq.get(key, 0) + 1
                self.last[key] = self.clock[s]
                if key in self.res[s]:
                    continue
                if len(self.res[s]) >= self.cap:
                    victim = min(self.res[s], key=lambda k: (self.freq[k], self.last[k]))
                    self.res[s].remove(victim)
                self.res[s].add(key)
            miss[t, l, j, w] = int(miss[t, l, j, w]) | (1 << bit)
