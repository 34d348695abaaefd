"""`SparsityConfig`: what a sparse SwiGLU keeps, how its predictor is built, and how gradients reach it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from codesign.errors import ConfigError, ModelError

MODES = ("bank_topk", "global_topk", "dense", "oracle", "threshold")
ESTIMATORS = ("ste", "gate", "ste+gate")
INITS = ("svd", "fit", "random")


@dataclass(frozen=True)
class SparsityConfig:
    """Bank-wise top-k sparsity of the SwiGLU intermediate activation.

    bank_size (B) consecutive channels form a bank; `k` of every bank are kept per token (k_per_layer overrides
    k for single layers). `rank` is the low-rank predictor's inner width. `mode` picks how channels are chosen:
    bank_topk (predictor, k per bank), global_topk (predictor, same density without bank balance), dense,
    oracle (top-k per bank of the true |silu(g)·u|) or threshold (per-layer magnitude threshold on |silu(g)|,
    the CATS-style baseline). `estimator` says how the LM loss reaches the predictor during training and
    `aux_loss` adds a BCE toward the dense FFN's own bank top-k (exposed as `module.aux_loss`).
    """

    bank_size: int = 64
    k: int = 16
    rank: int = 64
    mode: str = "bank_topk"
    k_per_layer: dict[int, int] = field(default_factory=dict)
    estimator: str = "ste"
    aux_loss: bool = False
    init: str = "svd"
    predictor_bias: bool = True

    def __post_init__(self) -> None:
        _check_int("bank_size", self.bank_size)
        _check_int("rank", self.rank)
        _check_k("k", self.k, self.bank_size)
        # JSON round trips turn int keys into strings: normalise here so config.json reloads equal.
        object.__setattr__(self, "k_per_layer", {int(i): int(v) for i, v in dict(self.k_per_layer).items()})
        for layer, k in self.k_per_layer.items():
            if layer < 0:
                raise ConfigError(f"sparsity k_per_layer: layer index must be >= 0, got {layer}")
            _check_k(f"k_per_layer[{layer}]", k, self.bank_size)
        for name, value, allowed in (
            ("mode", self.mode, MODES),
            ("estimator", self.estimator, ESTIMATORS),
            ("init", self.init, INITS),
        ):
            if value not in allowed:
                raise ConfigError(f"sparsity {name}={value!r} is not one of {', '.join(allowed)}")

    def k_for(self, layer_idx: int) -> int:
        """k of layer `layer_idx` (the per-layer override if any)."""
        return self.k_per_layer.get(layer_idx, self.k)

    def check_intermediate(self, intermediate: int, where: str = "model") -> None:
        """ModelError unless the bank size divides the FFN's intermediate size."""
        if intermediate % self.bank_size:
            raise ModelError(
                f"{where}: bank_size={self.bank_size} does not divide intermediate_size={intermediate}"
            )

    @property
    def density(self) -> float:
        return self.k / self.bank_size

    def replace(self, **changes: Any) -> SparsityConfig:
        return SparsityConfig(**{**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["k_per_layer"] = {str(i): v for i, v in self.k_per_layer.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "sparsity config") -> SparsityConfig:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
        return cls(**data)


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"sparsity {name} must be a positive integer, got {value!r}")


def _check_k(name: str, k: Any, bank_size: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ConfigError(f"sparsity {name} must be a positive integer, got {k!r}")
    if k > bank_size:
        raise ConfigError(f"sparsity {name}={k} exceeds bank_size={bank_size}")
