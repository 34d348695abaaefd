"""A whole sweep on the tiny model, in this process: rows, outputs, the cache, an extended grid, a failure."""

from __future__ import annotations

import json

import pytest
from sweep_helpers import comparable, tiny_spec_dict

from codesign.errors import OutputExistsError
from codesign.sweep.run import run_sweep
from codesign.sweep.spec import spec_from_dict


def test_rows_outputs_rerun_from_cache_and_extension(tmp_path):
    spec = spec_from_dict(tiny_spec_dict())
    cache = tmp_path / "cache"
    first = run_sweep(spec, tmp_path / "a", executor="local", workers=0, cache_dir=cache)
    # 3 model points (8/32, 16/64, dense) × 2 hardware points (batch 1, 4)
    assert [(r["point"], r["hw_point"]) for r in first.rows][:2] == [
        ("bank_topk-B32-k8", "bank64@b1"),
        ("bank_topk-B32-k8", "bank64@b4"),
    ]
    assert len(first.rows) == 6 and all(r["status"] == "ok" for r in first.rows), first.rows
    assert (first.summary["computed"], first.summary["cached"]) == (3 + 6, 0)
    for r in first.rows:
        assert r["ppl"] > 1 and r["tokens_per_s"] > 0 and r["energy_per_token_pj"] > 0
        assert r["decode_tokens"] == 4 * 5 and r["sim_tokens"] == 20  # decode view: prompts × (new − 1)
        if r["mode"] == "dense":
            assert r["speedup_vs_dense"] == 1.0 and r["recall_mean"] is None
        else:
            assert 0 < r["recall_mean"] <= 1 and r["kept_density_mean"] == pytest.approx(0.25)
    # every hardware point has a non-empty front on both axes, and the front is made of ok rows
    for hw in ("bank64@b1", "bank64@b4"):
        assert any(r["pareto_tokens_per_s"] for r in first.rows if r["hw_point"] == hw)
        assert any(r["pareto_energy"] for r in first.rows if r["hw_point"] == hw)
    assert len(first.recommendation) == 2 and "16/64" in first.recommendation[0]
    for name in ("sweep.csv", "sweep.json", "pareto.json", "summary.json"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    assert {p.name for p in (tmp_path / "a" / "plots").glob("*.png")} == {
        "sweep_ppl_vs_tokens_per_s.png",
        "sweep_ppl_vs_energy_per_token.png",
    }
    saved = json.loads((tmp_path / "a" / "sweep.json").read_text())["rows"]
    assert comparable(saved) == comparable(first.rows)
    with pytest.raises(OutputExistsError):
        run_sweep(spec, tmp_path / "a", workers=0, cache_dir=cache, plots=False)

    again = run_sweep(spec, tmp_path / "a", workers=0, cache_dir=cache, force=True, plots=False)
    assert (again.summary["computed"], again.summary["cached"]) == (0, 9)
    assert comparable(again.rows) == comparable(first.rows)

    wider = spec_from_dict(tiny_spec_dict(grid={"bank_sizes": [32, 64, 128], "densities": [0.25]}))
    ext = run_sweep(wider, tmp_path / "b", workers=0, cache_dir=cache, plots=False)
    assert (ext.summary["computed"], ext.summary["cached"]) == (1 + 2, 9)  # only 32/128: 1 eval + 2 sims
    assert comparable([r for r in ext.rows if r["bank_size"] != 128]) == comparable(first.rows)


def test_a_failing_point_is_marked_and_two_spellings_of_one_machine_simulate_once(tmp_path, monkeypatch):
    import codesign.jobs.simulate as sim_job

    real = sim_job.simulate_view

    def flaky(hw, overrides, bank_size, k, *args, **kwargs):
        if bank_size == 32:
            raise RuntimeError("simulated failure at B=32")
        return real(hw, overrides, bank_size, k, *args, **kwargs)

    monkeypatch.setattr(sim_job, "simulate_view", flaky)
    # 1e9 and 1000000000 Hz resolve to the same hardware: each trace is simulated once for both points
    spec = spec_from_dict(
        tiny_spec_dict(hardware={"batch": [1], "set": {"clock.frequency_hz": [1.0e9, 1000000000]}})
    )
    res = run_sweep(spec, tmp_path / "out", workers=0, plots=False)
    assert len(res.rows) == 3 * 2
    # 3 evals; 3 traces × 1 machine = 3 simulations (not 6), of which B=32's failed
    assert (res.summary["computed"], res.summary["failed"]) == (3 + 2, 1)
    status = {r["point"]: (r["status"], r["error"]) for r in res.rows}
    assert status["bank_topk-B32-k8"] == ("failed", "RuntimeError: simulated failure at B=32")
    assert status["bank_topk-B64-k16"] == ("ok", "") and status["dense"] == ("ok", "")
    assert res.summary["rows_failed"] == 2  # B=32 on both spellings
    failed = next(r for r in res.rows if r["status"] == "failed")
    assert failed["ppl"] is not None and failed["tokens_per_s"] is None  # the eval half is kept
    assert not failed["pareto_tokens_per_s"]
    cycles = {}
    for r in res.rows:
        cycles.setdefault(r["point"], set()).add(r["cycles"])
    assert all(len(c) == 1 for c in cycles.values()) and len(res.recommendation) == 2
