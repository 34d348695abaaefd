"""Training recipes: a YAML file validated into typed, frozen pydantic models.

A recipe names the model to start from, the corpus, the sparsity the FFNs get when a sparse stage begins, and
an ordered list of stages. Each stage says how long it runs (steps x batch x grad_accum x seq_len tokens),
which parameters train, its learning-rate schedule, and which losses it optimises (LM cross-entropy, KL to
the dense teacher's logits, the predictors' auxiliary routing loss). Unknown keys and impossible values are
errors that name the file and the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from codesign.errors import ConfigError

TRAINABLE = ("all", "ffn", "predictor", "predictor+ffn", "predictor+norms")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TinyModel(_Strict):
    """A random-initialised Qwen2 built from a config (tests, smoke runs); byte-level tokenizer."""

    hidden: int = Field(64, gt=0)
    intermediate: int = Field(256, gt=0)
    layers: int = Field(2, gt=0)
    heads: int = Field(4, gt=0)
    kv_heads: int = Field(2, gt=0)
    max_position: int = Field(1024, gt=0)


class ModelSpec(_Strict):
    source: str = Field(description='"tiny", "smollm2-135m", or a local HF / GGUF checkpoint path')
    tiny: TinyModel = TinyModel()


class DataSpec(_Strict):
    corpus: str = "kjv"
    cache_dir: str | None = None


class SparsitySpec(_Strict):
    """Handed to codesign.sparse.SparsityConfig when the first sparse stage begins."""

    bank_size: int = Field(64, gt=0)
    k: int = Field(16, gt=0)
    rank: int = Field(64, gt=0)
    estimator: Literal["ste", "gate", "ste+gate"] = "ste"
    init: Literal["svd", "fit", "random"] = "svd"
    # init "fit": predictors fitted in closed form to the dense FFN on this many training tokens.
    fit_tokens: int = Field(8192, gt=0)
    fit_seq_len: int = Field(512, gt=0)

    @model_validator(mode="after")
    def _k_le_bank(self):
        if self.k > self.bank_size:
            raise ValueError(f"k={self.k} exceeds bank_size={self.bank_size}")
        return self


class Stage(_Strict):
    name: str
    sparse: bool = False
    steps: int = Field(ge=0)
    seq_len: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    grad_accum: int = Field(1, gt=0)
    trainable: Literal["all", "ffn", "predictor", "predictor+ffn", "predictor+norms"] = "all"
    lr: float = Field(gt=0)
    # Peak LR of the predictors when it should differ from the FFN's / the rest (None: the same `lr`).
    predictor_lr: float | None = Field(None, gt=0)
    schedule: Literal["constant", "cosine", "linear"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    lm_weight: float = Field(1.0, ge=0)
    kl_weight: float = Field(0.0, ge=0)
    kl_temperature: float = Field(1.0, gt=0)
    aux_weight: float = Field(0.0, ge=0)
    grad_checkpointing: bool = False

    @model_validator(mode="after")
    def _checks(self):
        if not self.sparse and self.trainable.startswith("predictor"):
            raise ValueError(
                f"trainable={self.trainable!r} needs sparse: true (no predictor in a dense stage)"
            )
        if not self.sparse and self.aux_weight > 0:
            raise ValueError("aux_weight > 0 needs sparse: true (the routing loss belongs to the predictor)")
        if self.lm_weight == 0 and self.kl_weight == 0 and self.aux_weight == 0:
            raise ValueError("every loss weight is 0: nothing to train")
        if self.predictor_lr is not None and not (self.trainable == "all" or self.trainable.startswith("predictor")):
            raise ValueError(f"predictor_lr is set but trainable={self.trainable!r} trains no predictor")
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} exceeds steps={self.steps}")
        return self

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.batch_size * self.grad_accum


class TrainSpec(_Strict):
    dtype: Literal["bf16", "fp32"] = "bf16"
    log_every: int = Field(1, gt=0)
    checkpoint_every: int = Field(50, gt=0)
    trace_every: int = Field(10, gt=0)
    trace_logits: bool = False
    eval_tokens: int = Field(8192, gt=0)
    eval_seq_len: int | None = Field(None, gt=0)
    # KL over the teacher's top-k tokens (+ one tail bucket), the teacher's answers cached on disk per batch
    # and shared by every run with the same teacher and data order (codesign/train/teacher.py); 0 = the full
    # vocabulary, recomputed every step.
    kl_topk: int = Field(0, ge=0)
    # Validation perplexity every N global steps (learning curves in evals.jsonl); 0 = only at stage ends.
    eval_every: int = Field(0, ge=0)


class Recipe(_Strict):
    name: str
    seed: int = 0
    model: ModelSpec
    data: DataSpec = DataSpec()
    sparsity: SparsitySpec = SparsitySpec()
    train: TrainSpec = TrainSpec()
    stages: list[Stage] = Field(min_length=1)
    # Where the recipe came from; set by load_recipe, used in error messages and checkpoints.
    path: str = ""

    @model_validator(mode="after")
    def _stage_order(self):
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        seen_sparse = False
        for s in self.stages:
            if seen_sparse and not s.sparse:
                raise ValueError(f"stage {s.name!r} is dense after a sparse stage (upcycling is one-way)")
            seen_sparse |= s.sparse
        return self

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def stage_at(self, step: int) -> tuple[int, int]:
        """(stage index, step within that stage) of global step `step` (0-based)."""
        for i, s in enumerate(self.stages):
            if step < s.steps:
                return i, step
            step -= s.steps
        return len(self.stages), 0

    def first_step_of(self, stage_idx: int) -> int:
        return sum(s.steps for s in self.stages[:stage_idx])

    def check_model_limits(self, max_position: int) -> None:
        """ConfigError if a stage's context exceeds what the model supports."""
        if self.train.eval_seq_len is not None and self.train.eval_seq_len > max_position:
            raise ConfigError(
                f"{self.path or 'recipe'}: train.eval_seq_len={self.train.eval_seq_len} exceeds the model's "
                f"context limit max_position_embeddings={max_position}"
            )
        for i, s in enumerate(self.stages):
            if s.seq_len > max_position:
                raise ConfigError(
                    f"{self.path or 'recipe'}: stages[{i}].seq_len={s.seq_len} exceeds the model's "
                    f"context limit max_position_embeddings={max_position}"
                )

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read and validate a recipe YAML; ConfigError naming the file and key on any problem."""
    from codesign.yamlio import load_yaml

    p = Path(path)
    data = load_yaml(p, "recipe file")  # binary, non-UTF-8, duplicate keys, inf/nan: one line each
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a recipe is a YAML mapping, got {type(data).__name__}")
    return recipe_from_dict(data, where=str(p))


def recipe_from_dict(data: dict, where: str = "recipe") -> Recipe:
    if "path" in data:
        raise ConfigError(f"{where}: unknown key 'path'")
    try:
        return Recipe.model_validate({**data, "path": where})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in err["loc"]).replace(".[", "[")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        value = err.get("input")
        shown = (
            f" (got {value!r})" if err["type"] != "extra_forbidden" and not isinstance(value, dict) else ""
        )
        raise ConfigError(f"{where}: {key or '<root>'}: {msg}{shown}") from exc


def sparsity_config(recipe: Recipe):
    """The SparsityConfig every sparse stage uses (aux loss on if any stage weighs it)."""
    from codesign.sparse.config import SparsityConfig

    sp = recipe.sparsity
    return SparsityConfig(
        bank_size=sp.bank_size,
        k=sp.k,
        rank=sp.rank,
        estimator=sp.estimator,
        # "fit" overwrites whatever upcycle puts in the predictors: skip upcycle's SVD (30 s on SmolLM2).
        init="random" if sp.init == "fit" else sp.init,
        aux_loss=any(s.sparse and s.aux_weight > 0 for s in recipe.stages),
    )
