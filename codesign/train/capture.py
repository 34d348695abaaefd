"""The training run's routing capture: a `RoutingCapture` whose metadata comes from the recipe."""

from __future__ import annotations

from codesign.sparse.capture import RoutingCapture


def capture_for_recipe(
    path, recipe, *, force: bool = False, with_logits: bool | None = None
) -> RoutingCapture:
    """A RoutingCapture whose metadata names the recipe's model, dtype, sampling and corpus."""
    from codesign.train.models import model_name

    return RoutingCapture(
        path,
        with_logits=recipe.train.trace_logits if with_logits is None else with_logits,
        force=force,
        model_name=model_name(recipe.model),
        dtype="bfloat16" if recipe.train.dtype == "bf16" else "float32",
        source=f"train:{recipe.name}",
        synthetic=False,
        extra={
            "recipe": recipe.path,
            "trace_every_steps": recipe.train.trace_every,
            "corpus": recipe.data.corpus,
            "phases": "train = sampled training steps (first micro-batch of rank 0); eval = validation passes",
        },
    )
