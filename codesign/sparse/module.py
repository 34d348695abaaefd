"""`SparseSwiGLU`: a drop-in for a Hugging Face SwiGLU MLP that computes only predictor-chosen channels.

Attribute names follow the HF MLP (gate_proj, up_proj, down_proj, act_fn) so state dicts load unchanged; the
predictor adds `predictor.in_proj` / `predictor.out_proj`. After every forward the module exposes
`last_mask` (bool (…, I), detached; all True in dense mode), `last_logits` (detached predictor logits, or None
when the predictor is not used) and `aux_loss` (BCE toward the dense FFN's own bank top-k, when enabled and
training; else None). Trace capture reads these from forward hooks: forward has no sink and no trace flag.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codesign.errors import ConfigError
from codesign.kernels.pack import pack_bundles
from codesign.sparse.config import MODES, SparsityConfig
from codesign.sparse.gather import sparse_swiglu_gather
from codesign.sparse.predictor import LowRankPredictor
from codesign.sparse.topk import (
    bank_threshold,
    bank_topk_indices,
    estimator_multiplier,
    global_topk_indices,
    indices_to_mask,
)

# Inference compute paths a SparseSwiGLU can be told to use (module.kernel_backend).
KERNEL_BACKENDS = ("auto", "triton", "numba", "torch")


class SparseSwiGLU(nn.Module):
    def __init__(
        self,
        hidden: int,
        intermediate: int,
        cfg: SparsityConfig,
        layer_idx: int,
        act_fn: nn.Module | None = None,
        **factory,
    ) -> None:
        super().__init__()
        cfg.check_intermediate(intermediate, where=f"layer {layer_idx} MLP")
        self.hidden, self.intermediate, self.layer_idx = hidden, intermediate, layer_idx
        self.cfg = cfg
        self.mode = cfg.mode
        self.k = cfg.k_for(layer_idx)
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False, **factory)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False, **factory)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False, **factory)
        self.act_fn = act_fn if act_fn is not None else nn.SiLU()
        self.predictor = LowRankPredictor(hidden, intermediate, cfg.rank, bias=cfg.predictor_bias, **factory)
        # Threshold mode (CATS-style baseline): keep channels with |act(gate)| above this calibrated value.
        self.register_buffer("threshold", torch.zeros((), **factory))
        self.last_mask: torch.Tensor | None = None
        self.last_logits: torch.Tensor | None = None
        self.aux_loss: torch.Tensor | None = None
        self._bundle: torch.Tensor | None = None
        self._bundle_key: tuple | None = None
        # Inference compute (see KERNEL_BACKENDS): "auto" = compiled Triton kernels on CUDA, the fused numba
        # decode kernel on CPU for 1..16 tokens, else the torch gather path; the others force one path and
        # refuse, in one line, a call that path cannot take.
        self.kernel_backend = "auto"

    @property
    def bank_size(self) -> int:
        return self.cfg.bank_size

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ConfigError(f"sparsity mode={mode!r} is not one of {', '.join(MODES)}")
        self.mode = mode

    def set_k(self, k: int) -> None:
        self.cfg.replace(k=k)  # validates 0 < k <= bank_size with the config's own one-line errors
        self.k = k

    def extra_repr(self) -> str:
        return (
            f"layer_idx={self.layer_idx}, mode={self.mode}, bank_size={self.bank_size}, k={self.k}, "
            f"rank={self.predictor.rank}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.hidden)  # (N, d)
        self.aux_loss = None
        self.last_logits = None
        if self.mode == "dense":
            out = self.down_proj(self.act_fn(self.gate_proj(flat)) * self.up_proj(flat))
            mask = torch.ones(flat.shape[0], self.intermediate, dtype=torch.bool, device=x.device)
        elif self.training or self.mode in ("oracle", "threshold"):
            out, mask = self._masked_dense(flat)
        else:
            out, mask = self._gathered(flat)
        self.last_mask = mask.detach().reshape(*lead, self.intermediate)
        if self.last_logits is not None:
            self.last_logits = self.last_logits.reshape(*lead, self.intermediate)
        return out.reshape(*lead, self.hidden)

    def select(self, logits: torch.Tensor) -> torch.Tensor:
        """Kept channel ids (N, K) from predictor logits (N, I) under the current mode and k."""
        if self.mode == "global_topk":
            return global_topk_indices(logits, self.intermediate // self.bank_size * self.k)
        return bank_topk_indices(logits, self.bank_size, self.k)

    def oracle_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Bank top-k of the true |act(g)·u| (N, d) -> (N, K): what a perfect predictor would keep."""
        h = self.act_fn(self.gate_proj(x)) * self.up_proj(x)
        return bank_topk_indices(h.abs().float(), self.bank_size, self.k)

    def _gathered(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: pick channels from the predictor, then compute only those (Triton, numba or gather.py)."""
        logits = self.predictor(flat)
        self.last_logits = logits.detach()
        idx = self.select(logits.float())
        path = self._compute_path(flat)
        if path == "triton":
            from codesign.kernels import sparse_swiglu_indices

            out = sparse_swiglu_indices(flat, idx, self._decode_bundle(), self.bank_size, backend="triton")
            return out, indices_to_mask(idx, self.intermediate)
        if path == "numba":
            from codesign.kernels.cpu_decode import sparse_swiglu_cpu_decode

            out = sparse_swiglu_cpu_decode(flat, idx, self._decode_bundle())
            return out, indices_to_mask(idx, self.intermediate)
        out = sparse_swiglu_gather(
            flat,
            idx,
            self.gate_proj.weight,
            self.up_proj.weight,
            self.down_proj.weight,
            bundle=self._decode_bundle() if flat.shape[0] == 1 else None,
            act=self.act_fn,
        )
        return out, indices_to_mask(idx, self.intermediate)

    def _compute_path(self, flat: torch.Tensor) -> str:
        """This call's compute path, "triton" | "numba" | "torch"; a forced backend that cannot take it is a ConfigError.

        The Triton rule is the launchers' own (codesign.kernels.dispatch.triton_unsupported) plus what this
        module adds: SiLU gating and bank_topk mode (a Routing holds k per bank). The numba kernel takes CPU
        tensors, 1..16 tokens, bf16 / fp32 weights, SiLU gating and no autograd.
        """
        backend = self.kernel_backend
        if backend not in KERNEL_BACKENDS:
            raise ConfigError(f"kernel_backend={backend!r} is not one of {', '.join(KERNEL_BACKENDS)}")
        if backend == "torch":
            return "torch"
        silu = type(self.act_fn).__name__ in ("SiLU", "SiLUActivation")
        act = f"{type(self.act_fn).__name__} gating (the kernels implement SiLU)"
        if backend == "triton" or (backend == "auto" and flat.is_cuda):
            from codesign.kernels import dispatch

            why = dispatch.triton_unsupported(self.bank_size, flat.dtype)
            if why is None and not silu:
                why = act
            if why is None and self.mode != "bank_topk":
                why = f"needs bank_topk mode (have {self.mode})"
            if why is None:
                return "triton"
            if backend == "triton":
                raise ConfigError(f"layer {self.layer_idx}: kernel_backend='triton' {why}")
            return "torch"
        from codesign.kernels.cpu_decode import DECODE_MAX_TOKENS, cpu_decode_supported

        if silu and cpu_decode_supported(flat, self.gate_proj.weight):
            return "numba"
        if backend == "numba":
            why = (
                act
                if not silu
                else (
                    f"takes 1..{DECODE_MAX_TOKENS} CPU tokens with bf16/fp32 weights and no autograd "
                    f"(have {flat.shape[0]} {flat.device.type} tokens, {flat.dtype}, grad "
                    f"{'on' if torch.is_grad_enabled() else 'off'})"
                )
            )
            raise ConfigError(f"layer {self.layer_idx}: kernel_backend='numba' {why}")
        return "torch"

    def _masked_dense(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training and the dense-scored modes: gate/up are computed densely, then dropped channels zeroed.

        Not a speed path. Training needs every channel's activation anyway (the straight-through soft mask
        gives dropped channels a gradient; the oracle and aux loss are top-k of the dense activation), and
        the oracle / threshold baselines are defined on the dense gate. Inference in the predictor modes
        takes `_gathered`, which never reads dropped channels' weights.
        """
        g = self.gate_proj(flat)
        h = self.act_fn(g) * self.up_proj(flat)  # (N, I)
        if self.mode == "oracle":
            mask = indices_to_mask(
                bank_topk_indices(h.detach().abs().float(), self.bank_size, self.k), self.intermediate
            )
            return self.down_proj(h * mask.to(h.dtype)), mask
        if self.mode == "threshold":
            mask = self.act_fn(g).detach().abs() > self.threshold
            return self.down_proj(h * mask.to(h.dtype)), mask
        logits = self.predictor(flat).float()
        self.last_logits = logits.detach()
        mask = indices_to_mask(self.select(logits), self.intermediate)
        if self.training:
            if self.mode == "global_topk":  # one "bank" spanning all channels, same density
                boundary = bank_threshold(
                    logits.detach(), self.intermediate, self.intermediate // self.bank_size * self.k
                )
            else:
                boundary = bank_threshold(logits.detach(), self.bank_size, self.k)
            mult = estimator_multiplier(logits, mask, boundary.detach(), self.cfg.estimator)
            if self.cfg.aux_loss:
                oracle = bank_topk_indices(h.detach().abs().float(), self.bank_size, self.k)
                target = indices_to_mask(oracle, self.intermediate).float()
                self.aux_loss = F.binary_cross_entropy_with_logits(logits, target)
        else:
            mult = mask
        return self.down_proj(h * mult.to(h.dtype)), mask

    def _decode_bundle(self) -> torch.Tensor:
        """The (I, 3, d) bundled weights for one-token decode, rebuilt when the weights change in place."""
        weights = (self.gate_proj.weight, self.up_proj.weight, self.down_proj.weight)
        key = tuple((w.data_ptr(), w._version) for w in weights)
        if self._bundle is None or key != self._bundle_key:
            with torch.no_grad():
                self._bundle = pack_bundles(*weights)
            self._bundle_key = key
        return self._bundle
