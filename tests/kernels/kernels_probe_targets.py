"""Tiny kernels with closed-form access patterns for the probe tests (Triton needs them in a .py file)."""

import triton
import triton.language as tl


@triton.jit
def strided_load_kernel(src_ptr, dst_ptr, N, STRIDE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    tl.store(dst_ptr + offs, tl.load(src_ptr + offs * STRIDE, mask=mask), mask=mask)
