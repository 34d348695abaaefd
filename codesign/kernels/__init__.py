"""Triton kernels of the bank-sparse SwiGLU FFN, each beside its torch reference.

Dispatch per call (codesign.kernels.dispatch): CUDA tensors -> compiled Triton; CPU tensors with
TRITON_INTERPRET=1 -> the same kernels through Triton's interpreter (tests, traffic probe); otherwise the torch
reference. Imports only torch, triton and numpy (the GPU machine has no config / trace stack).

    routing = predictor_bank_topk(x @ in_w.T, out_w, out_b, bank_size=64, k=16)   # inference, fused
    routing = bank_topk(logits, bank_size=64, k=16)                              # training (logits have grad)
    y = sparse_swiglu(x, *bundle_views(bundles), routing, scale=None)            # (T, d)
"""

from codesign.kernels.bank_topk import bank_topk, check_banks, predictor_bank_topk
from codesign.kernels.pack import bundle_views, pack_bundles, pack_model, unpack_bundles, unpack_model
from codesign.kernels.routing import (
    Routing,
    bank_topk_indices,
    bank_topk_routing_ref,
    indices_to_mask,
    pack_mask_bits,
    routing_from_indices,
    unpack_mask_bits,
)
from codesign.kernels.sparse_swiglu import (
    Blocks,
    SparseSwiGLUFunction,
    sparse_swiglu,
    sparse_swiglu_dense_ref,
    sparse_swiglu_indices,
    sparse_swiglu_ref,
)

__all__ = [
    "Blocks",
    "Routing",
    "SparseSwiGLUFunction",
    "bank_topk",
    "bank_topk_indices",
    "bank_topk_routing_ref",
    "bundle_views",
    "check_banks",
    "indices_to_mask",
    "pack_bundles",
    "pack_mask_bits",
    "pack_model",
    "predictor_bank_topk",
    "routing_from_indices",
    "sparse_swiglu",
    "sparse_swiglu_dense_ref",
    "sparse_swiglu_indices",
    "sparse_swiglu_ref",
    "unpack_bundles",
    "unpack_mask_bits",
    "unpack_model",
]
