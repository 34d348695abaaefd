"""The sweep spec: one YAML (validated by pydantic, strict, unknown keys refused) that names the model, the
(B, k) grid, the reference points, the accuracy method, the eval budget and the hardware points.

    name: smollm2-bank
    model: {adapter: adapters/smollm2-bank64-k16.safetensors}   # or run: DIR | checkpoint: DIR | recipe: YAML
    grid: {bank_sizes: [16, 32, 64, 128], densities: [0.125, 0.25, 0.375, 0.5]}   # or ks: [2, 4, 8]
    references: {bank_size: 64, k: 16, modes: [dense, global_topk, threshold]}
    accuracy: {finetune_steps: 0}        # 0: re-select from the predictor's logits; N: N training steps
    eval: {tokens: 8192, context_len: 512, prompts: 16, prompt_len: 64, new_tokens: 64}
    hardware: {configs: [hwconfigs/bank64.yaml], batch: [1, 8], set: {sram.residency: [lru, none]}}
    simulate: {phase: decode, split_layers: 1}

Paths are relative to the working directory. `check_spec` resolves everything that can be checked without
running a model (files, k < B, B | I, every hardware knob and value) and raises one CodesignError line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from codesign.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(_Strict):
    adapter: str | None = None
    run: str | None = None
    checkpoint: str | None = None
    recipe: str | None = None

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("adapter", "run", "checkpoint", "recipe") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of adapter, run, checkpoint, recipe (got {given or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("adapter", "run", "checkpoint", "recipe") if getattr(self, k) is not None)

    @property
    def path(self) -> str:
        return getattr(self, self.kind)


class Grid(_Strict):
    bank_sizes: list[int] = Field(default_factory=list)
    densities: list[float] | None = None  # k = density × B, must come out whole
    ks: list[int] | None = None  # explicit k values, used at every B where k < B

    @model_validator(mode="after")
    def _one_of(self):
        if (self.densities is None) == (self.ks is None):
            raise ValueError("give exactly one of densities or ks")
        return self


class References(_Strict):
    bank_size: int = Field(64, gt=0)
    k: int = Field(16, gt=0)
    modes: list[Literal["dense", "global_topk", "threshold"]] = ["dense", "global_topk", "threshold"]


class Accuracy(_Strict):
    finetune_steps: int = Field(0, ge=0)
    # recipe whose model, data and sparse stage the fine-tune uses (B, k and steps are the point's)
    finetune_recipe: str | None = None


class EvalBudget(_Strict):
    corpus: str = "kjv"
    split: Literal["validation", "test"] = "validation"
    tokens: int = Field(8192, gt=0)
    context_len: int = Field(512, gt=1)
    batch_size: int = Field(4, gt=0)
    prompts: int = Field(16, gt=0)
    prompt_len: int = Field(64, gt=0)
    new_tokens: int = Field(64, gt=1)
    threshold_calib_tokens: int = Field(4096, gt=0)


class Hardware(_Strict):
    configs: list[str] = Field(min_length=1)
    batch: list[int] = Field(default_factory=lambda: [1])
    set: dict[str, list] = Field(default_factory=dict)  # dotted hwconfig key -> values (a product is swept)


class Simulate(_Strict):
    phase: Literal["decode", "all"] = "decode"
    split_layers: int = Field(1, gt=0)


class Recommend(_Strict):
    ppl_tolerance: float = Field(0.10, ge=0)  # "good enough": ppl within this fraction of dense


class SweepSpec(_Strict):
    name: str
    seed: int = 0
    model: ModelSource
    grid: Grid
    references: References = References()
    accuracy: Accuracy = Accuracy()
    eval: EvalBudget = EvalBudget()
    hardware: Hardware
    simulate: Simulate = Simulate()
    recommend: Recommend = Recommend()

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:16]


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec; ConfigError naming the file and the key on any problem."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"sweep spec not found: {p}")
    from codesign.yamlio import load_yaml

    # The project's strict reader: binary / non-UTF-8 files, duplicate keys and inf/nan are one line each.
    return spec_from_dict(load_yaml(p, "sweep spec"), where=str(p))


def spec_from_dict(data, where: str = "sweep spec") -> SweepSpec:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a sweep spec is a YAML mapping, got {type(data).__name__}")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(x) for x in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{where}: {key or '<root>'}: {msg}") from None
