"""A per-layer-k trace (eval/layer_k.py records k_per_layer) is replayed as recorded and costed per layer."""

import numpy as np

from codesign.sim.config import load_hwconfig
from codesign.sim.report import build_report
from codesign.sim.simulation import simulate
from codesign.trace.store import TraceMeta, TraceWriter
from codesign.trace.synth import bank_topk_mask

HIDDEN, INTER, LAYERS, B = 32, 256, 3, 64
K_OF_LAYER = {0: 16, 1: 8, 2: 32}  # nominal k 16 (layer 0), layers 1 and 2 recorded at their own k


def write_trace(path, tokens=6, seed=0):
    rng = np.random.default_rng(seed)
    masks = np.stack(
        [bank_topk_mask(rng.standard_normal((tokens, INTER)), B, K_OF_LAYER[l]) for l in range(LAYERS)],
        axis=1,
    )
    meta = TraceMeta(model_name="tiny", hidden=HIDDEN, intermediate=INTER, layers=LAYERS, bank_size=B, k=16,
                     k_per_layer={1: 8, 2: 32})  # fmt: skip
    w = TraceWriter.create(path, meta)
    n = np.arange(tokens)
    w.append(masks, seq_id=np.zeros(tokens, np.int32), position=n.astype(np.int32), token_id=n.astype(np.int32),
             is_decode=np.ones(tokens, bool))  # fmt: skip
    w.close()
    return masks


def test_per_layer_k_is_costed_per_layer(tmp_path):
    masks = write_trace(tmp_path / "t.zarr")
    cfg = load_hwconfig("hwconfigs/bank64.yaml", ["dram.model=ideal", "sram.residency=none"])
    report = build_report(simulate(cfg, tmp_path / "t.zarr", batch=1))
    rows = report["per_layer"]
    for layer, k in K_OF_LAYER.items():  # batch 1: a layer-step reads exactly its layer's k per bank
        assert rows[layer]["union_channels"] == masks.shape[0] * (INTER // B) * k == masks[:, layer].sum()
        assert rows[layer]["dram_ffn_bytes"] == rows[layer]["union_channels"] * 3 * HIDDEN * 2
    assert any("per-layer k as recorded" in n for n in report["notes"])
    dense = report["dense_baseline_per_layer"]
    assert all(
        d["union_channels"] == masks.shape[0] * INTER for d in dense
    )  # the baseline is dense everywhere


def test_per_layer_k_trace_at_another_nominal_k_is_refused(tmp_path):
    import pytest

    from codesign.errors import TraceError

    write_trace(tmp_path / "t.zarr")
    cfg = load_hwconfig("hwconfigs/bank64.yaml", ["dram.model=ideal", "sparsity.k=8"])
    with pytest.raises(TraceError, match="recorded at B=64"):
        simulate(cfg, tmp_path / "t.zarr", batch=1)
