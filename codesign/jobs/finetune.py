"""A short fine-tune of one (B, k) point: the given recipe's model and data, its sparse stage at (B, k) for
`steps` steps (dense stages dropped), run by codesign.train.Trainer into `run_dir`."""

from __future__ import annotations

import os
import time

from codesign.errors import ConfigError


def finetune_recipe(recipe_path: str | os.PathLike, *, bank_size: int, k: int, steps: int, seed: int = 0):
    """The generated recipe: `recipe_path` with sparsity (B, k), only its first sparse stage, `steps` steps."""
    from codesign.train.recipe import load_recipe, recipe_from_dict

    base = load_recipe(recipe_path)
    data = base.model_dump(mode="json")
    data.pop("path", None)
    sparse = [s for s in data["stages"] if s.get("sparse")]
    if not sparse:
        raise ConfigError(f"{recipe_path}: no sparse stage to fine-tune at (B, k)")
    stage = {**sparse[0], "steps": steps, "warmup_steps": min(sparse[0].get("warmup_steps", 0), steps)}
    data["stages"] = [stage]
    data["sparsity"] = {**data["sparsity"], "bank_size": bank_size, "k": k}
    data["name"] = f"{base.name}-sweep-B{bank_size}-k{k}-ft{steps}"
    data["seed"] = base.seed + seed
    return recipe_from_dict(
        data, where=f"{recipe_path} (sweep fine-tune B={bank_size}, k={k}, {steps} steps)"
    )


def finetune(recipe_path, run_dir, *, bank_size: int, k: int, steps: int, seed: int = 0) -> dict:
    """Train the generated recipe into `run_dir` (replaced: a half-finished run of an interrupted sweep)."""
    from codesign.train.trainer import Trainer

    recipe = finetune_recipe(recipe_path, bank_size=bank_size, k=k, steps=steps, seed=seed)
    t0 = time.perf_counter()
    summary = Trainer(recipe, run_dir, force=True).run()
    return {
        "run_dir": str(run_dir),
        "finetune_steps": steps,
        "finetune_s": time.perf_counter() - t0,
        "finetune_final_loss": summary.get("final_loss", summary.get("loss")),
    }
