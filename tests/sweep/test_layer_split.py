"""A trace simulated by layer ranges on several workers merges into exactly the totals of one worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_helpers import tiny_spec_dict

from codesign.errors import ConfigError
from codesign.jobs.simulate import layer_ranges, merge_layer_parts, metrics, simulate_view, split_exactness
from codesign.sim.config import load_hwconfig
from codesign.sweep.grid import check_spec
from codesign.sweep.spec import spec_from_dict

HW = str(Path(__file__).resolve().parents[2] / "hwconfigs" / "bank64.yaml")


@pytest.fixture(scope="module")
def trace(tmp_path_factory) -> Path:
    from codesign.trace.synth import SynthSpec, write_synthetic

    path = tmp_path_factory.mktemp("split") / "t.zarr"
    spec = SynthSpec(kind="zipf", hidden=64, intermediate=512, layers=7, sequences=4, prefill_tokens=20,
                     decode_tokens=40, seed=3)  # fmt: skip
    write_synthetic(spec, path, with_global=False, chunk_tokens=32)
    return path


@pytest.mark.parametrize("dram", ["bank_stream", "ideal"])
def test_layer_parts_merge_to_the_whole(trace, tmp_path, dram):
    knobs = ["sram.residency=none", f"dram.model={dram}", "sram.double_buffer=false"]
    assert split_exactness(load_hwconfig(HW, knobs)) is None
    whole = metrics(*simulate_view(HW, knobs, 64, 16, 4, trace, phase="all"))
    ranges = layer_ranges(7, 3)
    assert ranges == [(0, 2), (2, 5), (5, 7)]
    parts = [simulate_view(HW, knobs, 64, 16, 4, trace, phase="all", layers=r) for r in ranges]
    merged = metrics(*merge_layer_parts(parts))
    assert merged == whole  # integers and the floats derived from them: exactly equal
    assert whole["cycles"] > 0 and whole["sim_tokens"] == 4 * 60
    # one part alone is not the whole: the merge really adds the other layers
    assert metrics(*merge_layer_parts(parts[:1]))["cycles"] < whole["cycles"]


def test_decode_view_keeps_only_decode_tokens(trace):
    knobs = ["sram.residency=none"]
    decode = metrics(*simulate_view(HW, knobs, 64, 16, 1, trace, phase="decode"))
    assert decode["sim_tokens"] == 4 * 40 and decode["sim_steps"] == 4 * 40  # batch 1: a step per token


def test_a_split_that_would_not_be_exact_is_refused():
    assert "residency=lru" in split_exactness(load_hwconfig(HW))
    assert "double_buffer" in split_exactness(load_hwconfig(HW, ["sram.residency=none"]))
    assert "bank_timing" in split_exactness(
        load_hwconfig(HW, ["sram.residency=none", "dram.model=bank_timing"])
    )
    spec = spec_from_dict(tiny_spec_dict(simulate={"split_layers": 2}))
    with pytest.raises(ConfigError, match="split_layers=2: bank64@b1: sram.residency=lru shares SRAM state"):
        check_spec(spec)
    ok = spec_from_dict(
        tiny_spec_dict(
            simulate={"split_layers": 2},
            hardware={"set": {"sram.residency": ["none"], "sram.double_buffer": [False]}},
        )
    )
    assert len(check_spec(ok).hw_points) == 2


def test_layer_parts_merge_to_the_whole_at_model_scope(tmp_path):
    """Whole decoder step (attention, KV cache, embeddings on layer 0, LM head on the last layer): the parts
    still add up exactly, each layer's attention and the LM head counted once."""
    from codesign.trace.synth import SynthSpec, write_synthetic

    spec = SynthSpec(kind="uniform", hidden=576, intermediate=1536, layers=30, sequences=2, prefill_tokens=6,
                     decode_tokens=5, seed=1, model_name="smollm2-135m")  # fmt: skip
    write_synthetic(spec, tmp_path / "t.zarr", with_global=False)
    knobs = ["sram.residency=none", "dram.model=ideal", "sram.double_buffer=false"]
    whole = simulate_view(HW, knobs, 64, 16, 2, tmp_path / "t.zarr", phase="all")
    assert whole[0].params.scope == "model"
    parts = [simulate_view(HW, knobs, 64, 16, 2, tmp_path / "t.zarr", phase="all", layers=r)
             for r in layer_ranges(30, 4)]  # fmt: skip
    assert metrics(*merge_layer_parts(parts)) == metrics(*whole)
