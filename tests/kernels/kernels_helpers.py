"""Shared by the kernel tests: the one dtype/tolerance table and mismatch reports."""

import torch

# One (atol, rtol) per dtype for outputs of order 1, against an fp64 reference on the same (rounded) inputs.
# bf16: h and the output are rounded to 8 mantissa bits (relative step 2^-8 = 3.9e-3); a few steps of error.
TOLERANCES = {torch.float32: (1e-5, 1e-4), torch.bfloat16: (2e-2, 2e-2)}


def report_mismatch(actual: torch.Tensor, expected: torch.Tensor, limit: int = 5) -> str:
    """The first mismatching elements and any NaN / inf, for assertion messages."""
    bad = ~torch.isclose(actual.double(), expected.double(), rtol=0, atol=0, equal_nan=False)
    where = bad.nonzero()[:limit].tolist()
    lines = [f"{idx}: got {actual[tuple(idx)].item()} want {expected[tuple(idx)].item()}" for idx in where]
    nonfinite = (~torch.isfinite(actual)).sum().item() if actual.is_floating_point() else 0
    return f"{int(bad.sum())} mismatches, {nonfinite} non-finite; first: " + "; ".join(lines)
