import json

import pytest
import torch
import triton
from kernels_probe_targets import strided_load_kernel

from codesign.kernels.probe import probe, probe_sparse_swiglu
from codesign.layout import BundleLayout


def _launch(src, dst, n, stride, block):
    strided_load_kernel[(triton.cdiv(n, block),)](src, dst, n, STRIDE=stride, BLOCK=block)


@pytest.mark.analytic
@pytest.mark.parametrize("n,stride", [(100, 1), (64, 8), (33, 32), (50, 3)])
def test_counts_equal_closed_form(n, stride):
    """fp32 element i at byte 4*i*stride: distinct sectors / lines are the distinct 4*i*stride // 32 / 128."""
    src = torch.arange(n * stride, dtype=torch.float32)
    dst = torch.empty(n, dtype=torch.float32)
    measured = probe(_launch, src, dst, n, stride, 32, tensors={"src": src})
    offsets = [4 * i * stride for i in range(n)]
    traffic = measured.per_tensor["src"]
    assert traffic.bytes_requested == 4 * n == traffic.bytes_distinct
    assert traffic.sectors_32b == len({o // 32 for o in offsets})
    assert traffic.lines_128b == len({o // 128 for o in offsets})
    if stride == 1:  # contiguous: ceil(4n / 32) sectors
        assert traffic.sectors_32b == -(-4 * n // 32)
    assert torch.equal(dst, src[::stride][:n])  # the launch really ran


@pytest.mark.analytic
@pytest.mark.parametrize("tokens", [1, 3])
def test_sparse_decode_loads_exactly_the_bundles_the_layout_predicts(tokens):
    report = probe_sparse_swiglu(hidden=96, intermediate=256, bank_size=64, k=16, tokens=tokens, seed=tokens)
    layout = BundleLayout(hidden=96, intermediate=256, layers=1, dtype_bytes=2)
    assert report["weight_bytes_measured"] == report["channels_read"] * layout.bundle_bytes
    assert report["weight_bytes_measured"] == report["weight_bytes_predicted"]
    if tokens == 1:
        assert report["channels_read"] == 4 * 16
        assert report["measured_over_dense"] == 0.25
    json.dumps(report)  # the CLI writes it as JSON


def test_cli_probe_writes_json_and_refuses_overwrite(tmp_path, capsys):
    from codesign.cli import main

    out = tmp_path / "probe.json"
    args = [
        "kernels",
        "probe",
        "--hidden",
        "64",
        "--intermediate",
        "128",
        "--tokens",
        "1",
        "--json",
        str(out),
    ]
    main(args)
    report = json.loads(out.read_text())
    assert report["measured_over_predicted"] == 1.0 and report["channels_read"] == 32
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2 and "already exists" in capsys.readouterr().err
