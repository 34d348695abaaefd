"""Hand-computed golden case: any difference in cycles, bytes, stalls or energy fails.

Model: hidden 4, I = 8, 2 layers, B = 4, k = 2 (2 model banks per layer), bf16 → bundle = 3·4·2 = 24 B.
Hardware: 2 SRAM banks (model bank j → SRAM bank j), 96 B each → capacity 4 bundles, 8 B lines → 3 lines
per bundle, 1 port, 1 cycle per line; 8 MACs/cycle; top-k 1 cycle per (token, bank); predictor rank 2;
1 GHz. DRAM: HBM3 `ideal` model with refresh off: any call of ≤ 32 bursts (32 B each, 32 channels) takes
tRCD + tCL + one burst = 19.4 + 12.5 + 1.25 = 33.15 ns → 34 cycles.

Trace (3 decode tokens, batch 1), kept channels:
          layer 0        layer 1
    t0    {0,1 | 4,5}    {2,3 | 6,7}
    t1    {0,2 | 4,5}    {2,3 | 4,6}
    t2    {1,3 | 6,7}    {0,1 | 4,5}
LRU per SRAM bank (key = 8·layer + channel; order t0L0, t0L1, t1L0, ...; cache listed oldest first):
  SRAM 0: t0L0 miss 0,1 [0,1]; t0L1 miss 10,11 [0,1,10,11]; t1L0 hit 0, miss 2 (evict 1) [10,11,0,2];
          t1L1 hit 10,11 [0,2,10,11]; t2L0 miss 1,3 (evict 0,2) [10,11,1,3]; t2L1 miss 8,9 (evict 10,11)
  SRAM 1: t0L0 miss 4,5; t0L1 miss 14,15 [4,5,14,15]; t1L0 hit 4,5 [14,15,4,5]; t1L1 miss 12,14 (evict
          14,15) [4,5,12,14]; t2L0 miss 6,7 (evict 4,5) [12,14,6,7]; t2L1 hit 12, miss 13 (evict 14)
Missed channels per layer-step: t0L0 {0,1,4,5}  t0L1 {2,3,6,7}  t1L0 {2}  t1L1 {4,6}  t2L0 {1,3,6,7}
t2L1 {0,1,5}: 18 misses, 6 hits.
SRAM port cycles per bank = (2 reads + misses) · 3 lines: max over the two banks 12, 12, 9, 12, 12, 12
(Σ max 69; Σ both banks 24 + 24 + 15 + 18 + 24 + 21 = 126).
DRAM requests (runs of missed channels at layer·192 + c·24; the predictor's 48 B at 384 + layer·48 in a call
of its own, before routing — prefetchable — so every layer-step makes two DRAM calls of 34 cycles each),
32 B bursts touched: t0L0 [0,48) 2 + [96,144) 2 + pred 2 = 6; t0L1 [240,288) 2 + [336,384) 2 + pred [432,480)
2 = 6; t1L0 [48,72) 2 + 2 = 4; t1L1 [288,312) 1 + [336,360) 2 + 2 = 5; t2L0 [24,48) 2 + [72,96) 1 +
[144,192) 2 + 2 = 7; t2L1 [192,240) 2 + [312,336) 2 + 2 = 6 → 34 bursts = 1088 B in 18 requests.
Compute per layer-step: FFN 3·4·4 = 48 MACs → 6 cycles; predictor 4·2 + 2·8 = 24 MACs → 3 cycles; top-k
1·ceil(2/2) = 1 cycle.
double buffer: T = prefetch + 3 + 1 + max(34, S, 6). The first layer-step prefetches in full: 34 + 38 = 72,
and leaves DRAM idle for 72 − 34 − 34 = 4 cycles (predictor and top-k), which the next layer-step's prefetch
uses: 30 + 38 = 68, again 4 idle, ... → 72 + 5·68 = 412 cycles. The critical path is prefetch (DRAM) →
predictor (compute, 3) → topk (1) → fetch (DRAM, 34): DRAM owns every layer-step, so all 412 are DRAM-bound.
Busy: DRAM 12·34 = 408, SRAM ports Σ max 69, compute 6·(3 + 6) = 54, vector lanes (top-k) 6.
serial: T = 34 + 3 + 1 + 34 + S + 6 = 90,90,87,90,90,90 → 537; on the path DRAM 68 > S ≤ 12 > compute 9: all
537 DRAM-bound.
stripe placement (the default; the case above is `modulo`): a layer-step's (2 reads + misses)·3 lines dealt
over both banks: 24, 24, 15, 18, 24, 21 lines → busiest bank 12, 12, 8, 9, 12, 11 = 64 port cycles.
Energy (read 1 pJ/line, write 2 pJ/line, DRAM 0.5 pJ/bit, MAC 0.25 pJ, 1 mW leakage per bank):
72 read lines → 72; 54 fill lines → 108; 1088 B · 8 · 0.5 → 4352; (288 + 144) MACs → 108;
2 mW · 412 ns → 824 pJ; total 5464 pJ (double buffer).
"""

import numpy as np
import pytest

from codesign.sim.config import load_hwconfig
from codesign.sim.dram import build_dram
from codesign.sim.engine import Block, SimParams, simulate_variant, words_from_masks
from codesign.sim.reference_numpy import simulate_variant_ref
from codesign.sim.report import variant_summary

pytestmark = pytest.mark.golden

KEPT = [  # token → layer → kept channels
    [{0, 1, 4, 5}, {2, 3, 6, 7}],
    [{0, 2, 4, 5}, {2, 3, 4, 6}],
    [{1, 3, 6, 7}, {0, 1, 4, 5}],
]


def golden_params(double_buffer: bool, placement: str = "modulo", **energy) -> SimParams:
    return SimParams(
        hidden=4, intermediate=8, layers=2, bank_size=4, k=2, dtype_bytes=2, num_sram_banks=2,
        bank_size_bytes=96, line_bytes=8, ports_per_bank=1, sram_line_interval_cycles=1, macs_per_cycle=8,
        topk_cycles_per_bank=1, frequency_hz=1e9, execution="batch_union", residency="lru",
        double_buffer=double_buffer, predictor_rank=2, sram_read_energy_pj=1.0, sram_write_energy_pj=2.0,
        dram_energy_pj_per_bit=0.5, mac_energy_pj=0.25, leakage_mw_per_bank=1.0, area_mm2_per_bank=0.1,
        placement=placement, **energy,
    )  # fmt: skip


def run(double_buffer: bool, twin: bool = False, placement: str = "modulo", **energy):
    dram = build_dram(
        load_hwconfig("hwconfigs/bank64.yaml", ["dram.model=ideal", "dram.timing.tRFC_ns=0"]).dram
    )
    masks = np.zeros((3, 2, 8), dtype=bool)
    for t, layers in enumerate(KEPT):
        for l, kept in enumerate(layers):
            masks[t, l, sorted(kept)] = True
    block = Block(words_from_masks(masks, 4), np.ones(3, bool), np.arange(3, dtype=np.int32))
    sim = simulate_variant_ref if twin else simulate_variant
    p = golden_params(double_buffer, placement, **energy)
    return variant_summary(
        sim("golden", p, lambda: iter([block]), dram, 1), peak_dram_bandwidth_bytes_per_s=8.192e11
    )


@pytest.mark.parametrize("twin", [False, True])
def test_golden_double_buffered(twin):
    s = run(double_buffer=True, twin=twin)
    t = s["totals"]
    assert (t["cycles"], t["tokens"], t["steps"]) == (412, 3, 3)
    assert s["bound_by"] == {
        "dram_cycles": 412,
        "sram_port_cycles": 0,
        "compute_cycles": 0,
        "vector_cycles": 0,
    }
    assert s["busy"] == {"dram_cycles": 408, "sram_port_cycles": 69, "compute_cycles": 54, "vector_cycles": 6}
    assert s["dram_split"] == {
        "prefetch_cycles": 6 * 34,
        "prefetch_hidden_cycles": 5 * 4,
        "ffn_fetch_cycles": 6 * 34,
    }
    assert s["predictor"]["dram_cycles"] == 6 * 34 and s["ffn_scope"]["cycles"] == 412
    assert (t["dram_read_bytes"], t["dram_requests"], t["dram_ffn_bytes"], t["dram_predictor_bytes"]) == (
        1088,
        18,
        18 * 24,
        6 * 48,
    )
    assert (t["union_channels"], t["miss_channels"]) == (24, 18)
    assert (t["sram_read_bytes"], t["sram_write_bytes"]) == (72 * 8, 54 * 8)
    assert (t["ffn_macs"], t["predictor_macs"]) == (288, 144)
    assert s["compute_split"] == {
        "attention_cycles": 0,
        "predictor_cycles": 18,
        "ffn_cycles": 36,
        "head_cycles": 0,
    }
    assert s["utilisation"]["dram"] == pytest.approx(408 / 412, rel=1e-12)
    assert t["sram_read_energy_pj"] == 72.0 and t["sram_write_energy_pj"] == 108.0
    assert t["dram_energy_pj"] == 4352.0 and t["mac_energy_pj"] == 108.0
    assert t["leakage_energy_pj"] == pytest.approx(824.0, rel=1e-12)
    assert t["energy_pj"] == pytest.approx(5464.0, rel=1e-12)
    assert t["bank_imbalance"] == pytest.approx(69 / 63 - 1, rel=1e-12)


def test_golden_serial():
    s = run(double_buffer=False)
    assert s["totals"]["cycles"] == 537
    assert s["bound_by"] == {
        "dram_cycles": 537,
        "sram_port_cycles": 0,
        "compute_cycles": 0,
        "vector_cycles": 0,
    }
    assert s["dram_split"]["prefetch_hidden_cycles"] == 0  # nothing overlaps without double buffering


@pytest.mark.parametrize("twin", [False, True])
def test_golden_striped(twin):
    s = run(double_buffer=True, twin=twin, placement="stripe")
    t = s["totals"]
    assert s["busy"]["sram_port_cycles"] == 64 and t["cycles"] == 412  # SRAM is off the critical path
    assert t["bank_imbalance"] == pytest.approx(64 / 63 - 1, rel=1e-12)


def test_golden_topk_and_vector_energy():
    """top-k: 3 tokens × 2 model banks × 2 layers × 1 compare-exchange = 12 compares × 0.5 pJ = 6 pJ; vector:
    24 kept channel-tokens (288 FFN MACs / 12) × 0.25 pJ = 6 pJ; the ideal DRAM has no rows: no activations."""
    s = run(True, topk_energy_pj_per_compare=0.5, vector_energy_pj_per_op=0.25, dram_activation_energy_pj=9.0)
    t = s["totals"]
    assert (t["topk_energy_pj"], t["vector_energy_pj"], t["dram_activation_energy_pj"]) == (6.0, 6.0, 0.0)
    assert t["energy_pj"] == pytest.approx(5464.0 + 12.0, rel=1e-12)


@pytest.mark.parametrize("twin", [False, True])
def test_golden_fill_bypass(twin):
    """Misses stream to the lanes: SRAM reads are the 6 hits (24 needed − 18 missed) → 18 lines; LRU keeps
    every miss → 54 fill lines. Per layer-step and bank (hits + fills) = 2 channels · 3 lines = 6 port cycles →
    36 busy. Energy 5464 − (72 − 18) = 5410 pJ; cycles unchanged (DRAM-bound)."""
    s = run(True, twin=twin, fill_bypass=True)
    t = s["totals"]
    assert (t["sram_read_bytes"], t["sram_write_bytes"]) == (18 * 8, 54 * 8)
    assert s["busy"]["sram_port_cycles"] == 36 and t["cycles"] == 412
    assert t["energy_pj"] == pytest.approx(5410.0, rel=1e-12)
