import pytest
import torch

from codesign.errors import ModelError
from codesign.kernels.pack import bundle_views, pack_bundles, pack_model, unpack_bundles, unpack_model
from codesign.layout import BundleLayout


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32}[t.element_size()])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_round_trip_is_bit_exact(gen, dtype):
    hidden, intermediate = 37, 320
    gate, up = (torch.randn(intermediate, hidden, generator=gen).to(dtype) for _ in range(2))
    down = torch.randn(hidden, intermediate, generator=gen).to(dtype)
    bundles = pack_bundles(gate, up, down)
    assert bundles.shape == (intermediate, 3, hidden) and bundles.is_contiguous()
    for a, b in zip(unpack_bundles(bundles), (gate, up, down), strict=True):
        assert torch.equal(_bits(a), _bits(b))  # bit for bit, NaN payloads and -0.0 included
    g, u, d = bundle_views(bundles)
    assert torch.equal(g, gate) and torch.equal(u, up) and torch.equal(d, down.t())


def test_bundle_bytes_sit_at_layout_addresses(gen):
    hidden, intermediate, layers = 24, 128, 2
    prefixes = [f"model.layers.{i}.mlp" for i in range(layers)]
    state = {}
    for p in prefixes:
        state[f"{p}.gate_proj.weight"] = torch.randn(intermediate, hidden, generator=gen).bfloat16()
        state[f"{p}.up_proj.weight"] = torch.randn(intermediate, hidden, generator=gen).bfloat16()
        state[f"{p}.down_proj.weight"] = torch.randn(hidden, intermediate, generator=gen).bfloat16()
    packed = pack_model(state, prefixes)  # (L, I, 3, d)
    raw = packed.view(torch.uint8).reshape(-1)
    layout = BundleLayout(hidden=hidden, intermediate=intermediate, layers=layers, dtype_bytes=2)
    assert raw.numel() == layout.total_bytes
    for layer, channel in [(0, 0), (0, 77), (1, 5), (1, intermediate - 1)]:
        at = layout.channel_address_bytes(layer, channel)
        bundle = raw[at : at + layout.bundle_bytes].view(torch.bfloat16).view(3, hidden)
        p = prefixes[layer]
        assert torch.equal(bundle[0], state[f"{p}.gate_proj.weight"][channel])
        assert torch.equal(bundle[1], state[f"{p}.up_proj.weight"][channel])
        assert torch.equal(bundle[2], state[f"{p}.down_proj.weight"][:, channel])
    back = unpack_model(packed, prefixes)
    assert back.keys() == state.keys() and all(torch.equal(back[key], state[key]) for key in state)


def test_bad_shapes_name_the_problem():
    with pytest.raises(ModelError, match="down"):
        pack_bundles(torch.zeros(8, 4), torch.zeros(8, 4), torch.zeros(8, 4))
    with pytest.raises(ModelError, match="no model.layers.0.mlp.up_proj.weight"):
        pack_model({"model.layers.0.mlp.gate_proj.weight": torch.zeros(8, 4)}, ["model.layers.0.mlp"])
