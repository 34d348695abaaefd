"""The local process pool and Ray give the same rows, row for row, on a tiny grid."""

from __future__ import annotations

import pytest
from sweep_helpers import comparable, tiny_spec_dict

from codesign.sweep.run import run_sweep
from codesign.sweep.spec import spec_from_dict


def test_ray_rows_equal_local_rows(tmp_path):
    pytest.importorskip("ray")  # the `ray` extra; skipped where it is not installed
    spec = spec_from_dict(
        tiny_spec_dict(grid={"bank_sizes": [32, 64], "densities": [0.25]}, hardware={"batch": [1]})
    )
    local = run_sweep(spec, tmp_path / "local", executor="local", workers=1, plots=False, torch_threads=1)
    ray = run_sweep(spec, tmp_path / "ray", executor="ray", workers=2, plots=False, torch_threads=1)
    assert local.summary["computed"] == ray.summary["computed"] == 3 + 3  # separate caches: both computed
    assert all(r["status"] == "ok" for r in ray.rows), [r["error"] for r in ray.rows]
    assert comparable(ray.rows) == comparable(local.rows)
    assert {r["tokens_per_s"] for r in ray.rows} and len({r["ppl"] for r in ray.rows}) == 3
