"""Single-layer repair on a tiny sparse Llama with a planted fault, and its simulator cost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_cwe import TINY, tiny_sparse  # tests/eval is on sys.path (rootdir-relative imports)

from codesign.errors import ConfigError
from codesign.eval.diagnose import plant_fault
from codesign.eval.repair import repair_layer
from codesign.jobs.simulate import simulate_masks
from codesign.train.models import ByteTokenizer

HW = str(Path(__file__).resolve().parents[2] / "hwconfigs" / "bank64.yaml")


def test_repair_retrains_a_planted_fault_away():
    torch.set_num_threads(1)
    model, tok = tiny_sparse(layers=3), ByteTokenizer()
    plant_fault(model, 1)
    rng = np.random.default_rng(0)
    val, train = rng.integers(0, 256, (2, 128)), rng.integers(0, 256, (2, 128))
    res = repair_layer(model, tok, layer=1, setting=TINY, lengths=[1024], samples=1, val_windows=val,
                       train_windows=train, train_samples=1, steps=150, k_candidates=[32], hwconfig=HW,
                       price=lambda m, hidden, rank, name: simulate_masks(m, HW, hidden, rank, name))  # fmt: skip
    cands = res["candidates"]
    assert set(cands) == {"retrain", "retrain+k=32", "k=32"}
    # the negated predictor keeps the least active channels: more of them (k=32) recovers less than
    # retraining it toward the dense layer's own top-k
    assert cands["retrain"]["recovered"] > cands["k=32"]["recovered"]
    assert cands["retrain"]["recovered"] > 0.5 and res["retrain"]["loss_last"] < res["retrain"]["loss_first"]
    assert res["chosen"].startswith("retrain")
    from codesign.sparse.upcycle import sparse_modules

    assert sparse_modules(model)[1].k == cands[res["chosen"]]["k"]  # the chosen repair is left applied
    assert res["ppl_before"] > 0 and res["ppl_after"] > 0 and "ppl_regression_ok" in res
    sim = res["sim"]
    assert sim["before"]["tokens"] == sim["after"]["tokens"] > 0
    with pytest.raises(ConfigError, match="layers 0..2"):
        repair_layer(model, tok, layer=3, setting=TINY, lengths=[1024], samples=1, val_windows=val,
                     train_windows=train)  # fmt: skip


def test_simulator_costs_a_per_layer_k_override():
    rng = np.random.default_rng(1)
    T, L, B = 16, 3, 64
    scores = rng.random((T, L, 4, B))

    def masks(k_layer1: int) -> np.ndarray:
        ks = [16, k_layer1, 16]
        out = np.zeros((T, L, 4, B), dtype=bool)
        for layer, k in enumerate(ks):
            top = np.argsort(-scores[:, layer], axis=-1)[..., :k]
            np.put_along_axis(out[:, layer], top, True, axis=-1)
        return out.reshape(T, L, 4 * B)

    base = simulate_masks(masks(16), HW, 64, 16, "k16")
    wide = simulate_masks(masks(32), HW, 64, 16, "k32")
    # hwconfig residency keeps most of this tiny FFN on chip, so DRAM bytes grow by first touches only;
    # the MACs grow exactly with the kept channels
    assert wide["dram_read_bytes"] > base["dram_read_bytes"]
    per_base, per_wide = base["per_layer_dram_read_bytes"], wide["per_layer_dram_read_bytes"]
    assert per_wide[1] > per_base[1] and per_wide[0] == per_base[0] and per_wide[2] == per_base[2]
    assert wide["ffn_macs"] == pytest.approx(base["ffn_macs"] * (16 + 32 + 16) / 48)
