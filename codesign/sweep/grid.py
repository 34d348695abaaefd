"""Model points × hardware points of a sweep, and every check that can run before any work starts."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from codesign.errors import ConfigError, ModelError
from codesign.sweep.spec import SweepSpec

# Knobs a sweep point sets itself: a `hardware.set` entry naming one would be silently overwritten.
RESERVED_KNOBS = ("sparsity.bank_size", "sparsity.k", "batch")


@dataclass(frozen=True)
class ModelPoint:
    """One model configuration: its routing mode at (bank_size, k), fine-tuned for `finetune_steps` or not."""

    mode: str  # bank_topk | global_topk | threshold | dense
    bank_size: int
    k: int
    finetune_steps: int = 0

    @property
    def id(self) -> str:
        if self.mode == "dense":
            return "dense"
        ft = f"-ft{self.finetune_steps}" if self.finetune_steps else ""
        return f"{self.mode}-B{self.bank_size}-k{self.k}{ft}"

    @property
    def sim_k(self) -> int:
        """k the simulated hardware is configured with (B for the dense reference: every channel)."""
        return self.bank_size if self.mode == "dense" else self.k


@dataclass(frozen=True)
class HwPoint:
    config: str  # hwconfig YAML path
    name: str  # the hwconfig's own name
    batch: int
    overrides: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        knobs = f"[{','.join(self.overrides)}]" if self.overrides else ""
        return f"{self.name}@b{self.batch}{knobs}"

    @property
    def knobs(self) -> dict[str, str]:
        return dict(o.split("=", 1) for o in self.overrides)


@dataclass(frozen=True)
class Grid:
    model_points: list[ModelPoint]
    hw_points: list[HwPoint]
    intermediate: int


def grid_ks(spec: SweepSpec, bank_size: int) -> list[int]:
    """The k values swept at bank size B (k = density × B, or the explicit ks)."""
    g = spec.grid
    if g.ks is not None:
        return list(g.ks)
    out = []
    for d in g.densities:
        k = d * bank_size
        if abs(k - round(k)) > 1e-9:
            raise ConfigError(f"grid: density {d} × bank size {bank_size} = {k:g} is not a whole k")
        out.append(round(k))
    return out


def _check_point(bank_size: int, k: int, intermediate: int, where: str) -> None:
    if bank_size <= 0 or k <= 0:
        raise ConfigError(f"{where}: B and k must be positive (B={bank_size}, k={k})")
    if k >= bank_size:
        raise ConfigError(
            f"{where}: k={k} >= B={bank_size} keeps every channel (the dense reference covers it)"
        )
    if intermediate % bank_size:
        raise ModelError(
            f"{where}: B={bank_size} does not divide the model's intermediate size {intermediate}"
        )


def expand(spec: SweepSpec, intermediate: int) -> tuple[list[ModelPoint], list[HwPoint]]:
    """Every model point and hardware point of `spec` (checked: k < B, B | I, knobs exist), in a fixed order."""
    ft = spec.accuracy.finetune_steps
    points: list[ModelPoint] = []
    for b in spec.grid.bank_sizes:
        for k in grid_ks(spec, b):
            _check_point(b, k, intermediate, f"grid point B={b}, k={k}")
            points.append(ModelPoint("bank_topk", b, k, ft))
    if not points:
        raise ConfigError("grid: empty (no bank size × k point to evaluate)")
    ref = spec.references
    for mode in ref.modes:
        if mode == "dense":
            points.append(ModelPoint("dense", ref.bank_size, ref.bank_size))
            continue
        _check_point(ref.bank_size, ref.k, intermediate, f"references ({mode})")
        points.append(ModelPoint(mode, ref.bank_size, ref.k))
    seen = set()
    points = [p for p in points if not (p.id in seen or seen.add(p.id))]
    return points, hw_points(spec)


def hw_points(spec: SweepSpec) -> list[HwPoint]:
    """Hardware configs × batch × the product of the `set` knobs; each combination is loaded once here, so an
    unknown key or a bad value fails before any work (the loader's own one-line error, naming the key)."""
    from codesign.sim.config import load_hwconfig

    hw = spec.hardware
    for key in hw.set:
        if key in RESERVED_KNOBS:
            raise ConfigError(
                f"hardware.set: {key} is set by each sweep point (grid / hardware.batch), not a knob"
            )
        if not hw.set[key]:
            raise ConfigError(f"hardware.set: {key} has no values")
    if not hw.batch or any(b <= 0 for b in hw.batch):
        raise ConfigError(f"hardware.batch: positive batch sizes needed, got {hw.batch}")
    combos = [
        tuple(f"{k}={_fmt(v)}" for k, v in zip(hw.set, values, strict=True))
        for values in itertools.product(*hw.set.values())
    ]
    out = []
    for path in hw.configs:
        if not Path(path).is_file():
            raise ConfigError(f"hardware.configs: {path} does not exist")
        for overrides in combos:
            cfg = load_hwconfig(path, list(overrides))
            out += [HwPoint(path, cfg.name, b, overrides) for b in hw.batch]
    ids = [h.id for h in out]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup is not None:
        raise ConfigError(f"hardware: two hardware points are both {dup!r} (a config or batch listed twice?)")
    return out


def _fmt(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def check_spec(spec: SweepSpec) -> Grid:
    """Everything checkable before work: the model source exists (and its intermediate size), every point,
    every hardware point, the fine-tune recipe and the layer split. One CodesignError line otherwise."""
    from codesign.jobs.models import source_intermediate

    intermediate = source_intermediate(spec.model.kind, spec.model.path)
    models, hws = expand(spec, intermediate)
    if spec.simulate.phase == "decode" and max(spec.hardware.batch) > spec.eval.prompts:
        # a decode batch is tokens of distinct sequences at one step: the trace has eval.prompts of them
        raise ConfigError(
            f"hardware.batch {max(spec.hardware.batch)} needs at least that many sequences decoding together; "
            f"eval.prompts is {spec.eval.prompts}"
        )
    if spec.accuracy.finetune_steps:
        if spec.accuracy.finetune_recipe is None:
            raise ConfigError("accuracy.finetune_steps > 0 needs accuracy.finetune_recipe")
        from codesign.train.recipe import load_recipe

        load_recipe(spec.accuracy.finetune_recipe)
    if spec.simulate.split_layers > 1:
        from codesign.jobs.simulate import split_exactness
        from codesign.sim.config import load_hwconfig

        for h in hws:
            reason = split_exactness(load_hwconfig(h.config, list(h.overrides)))
            if reason:
                raise ConfigError(f"simulate.split_layers={spec.simulate.split_layers}: {h.id}: {reason}")
    return Grid(models, hws, intermediate)
