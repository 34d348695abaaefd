"""`codesign train` (run a recipe) and `eval generate` (greedy decoding with decode-step routing capture).

Both parse arguments, call one library function and render progress / results; heavy imports stay inside.
"""

from __future__ import annotations

from pathlib import Path

import click

from codesign.cli.params import OutputPath, at_least


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,  # the summary lines below stay; a failed run leaves only its error line
    )


@click.command("train")
@click.option("--recipe", "recipe_path", required=True, type=click.Path(path_type=Path), help="Recipe YAML.")
@click.option(
    "--out",
    "out_dir",
    type=OutputPath(file_okay=False, path_type=Path),
    default=None,
    help="Run directory (checkpoint, metrics.jsonl, summary.json). Default: runs/<recipe name>.",
)
@click.option(
    "--trace-out",
    type=OutputPath(file_okay=False, path_type=Path),
    default=None,
    help="Record routing of sampled training steps and eval passes into this trace store.",
)
@click.option("--resume", is_flag=True, help="Continue exactly from the run directory's checkpoint.")
@click.option("--force", is_flag=True, help="Overwrite an existing run directory / trace store.")
def train(recipe_path: Path, out_dir: Path | None, trace_out: Path | None, resume: bool, force: bool) -> None:
    """Continual training: dense stage(s), then upcycled sparse stage(s), as the recipe says."""
    from codesign.errors import OutputExistsError
    from codesign.train.capture import capture_for_recipe
    from codesign.train.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    out_dir = out_dir or Path("runs") / recipe.name
    if trace_out is not None and trace_out.exists() and not force:
        raise OutputExistsError(trace_out)  # before any model is loaded: fail in a second, not a minute
    console = _console()
    created = [p for p in (out_dir, trace_out) if p is not None and not p.exists()]
    try:
        capture = capture_for_recipe(trace_out, recipe, force=force) if trace_out is not None else None
        summary = _run(recipe, out_dir, resume, force, capture, console)
    except BaseException:
        _remove_if_unused(created, trace_out)
        raise
    for name, ev in summary["evals"].items():
        console.print(
            f"{name}: validation ppl {ev['val_ppl']:.3f} ({ev['val_tokens']} tokens, ctx {ev['seq_len']})"
        )
    console.print(
        f"{summary['steps']} steps, {summary['tokens_seen']} tokens, {summary['wall_s']:.0f} s -> {out_dir}"
    )
    if trace_out is not None:
        console.print(f"routing trace: {trace_out} ({capture.num_tokens} tokens)")


def _run(recipe, out_dir: Path, resume: bool, force: bool, capture, console) -> dict:
    from codesign.train.trainer import Trainer

    with _progress(console) as bar:
        task = bar.add_task(f"train {recipe.name}", total=recipe.total_steps, info="loading model + corpus")

        def on_step(m: dict) -> None:
            info = f"{m['stage']} loss {m['loss']:.4f}  {m['tokens_per_s']:.0f} tok/s"
            bar.update(task, completed=m["step"], info=info)

        try:
            summary = Trainer(
                recipe, out_dir, resume=resume, force=force, capture=capture, on_step=on_step
            ).run()
        finally:
            if capture is not None:
                capture.close()
    return summary


def _remove_if_unused(created: list[Path], trace_out: Path | None) -> None:
    """After a failed run: remove the run directory / trace store this command created if nothing was
    recorded in it, so that the failure leaves nothing behind and a rerun starts clean."""
    import shutil

    from codesign.trace.reader import TraceReader

    for path in created:
        if not path.is_dir():
            continue
        if path == trace_out:
            try:
                empty = TraceReader(path).num_tokens == 0
            except Exception:  # a store that cannot even be opened holds nothing worth keeping
                empty = True
            if empty:
                shutil.rmtree(path, ignore_errors=True)
        elif not any(path.iterdir()):
            path.rmdir()


@click.command("generate")
@click.option(
    "--model",
    "model_spec",
    default=None,
    help='Sparse checkpoint dir, a run dir (its checkpoint), or "smollm2-135m" with --adapter.',
)
@click.option(
    "--adapter", type=click.Path(path_type=Path), default=None, help="Adapter applied over the base model."
)
@click.option("--corpus", default="kjv", show_default=True, help='"kjv" or a local .txt / .jsonl corpus.')
@click.option(
    "--prompts", type=at_least(1), default=4, show_default=True, help="Validation prompts to continue."
)
@click.option(
    "--prompt-len", type=at_least(1), default=128, show_default=True, help="Prompt tokens (prefill)."
)
@click.option(
    "--new-tokens", type=at_least(1), default=32, show_default=True, help="Greedy decode steps per prompt."
)
@click.option(
    "--trace-out",
    type=OutputPath(file_okay=False, path_type=Path),
    default=None,
    help="Record prefill + decode routing.",
)
@click.option(
    "--eval-windows",
    type=at_least(0),
    default=0,
    show_default=True,
    help="Validation windows recorded first as prefill passes (phase eval), with --trace-out.",
)
@click.option("--eval-len", type=at_least(2), default=256, show_default=True, help="Tokens per eval window.")
@click.option("--force", is_flag=True, help="Overwrite an existing trace store.")
def generate_command(
    model_spec, adapter, corpus, prompts, prompt_len, new_tokens, trace_out, eval_windows, eval_len, force
) -> None:
    """Greedy generation over validation prompts, recording decode-step routing."""
    from codesign.errors import OutputExistsError
    from codesign.eval.generate import generate_from_corpus
    from codesign.jobs.models import load_for_generate

    if trace_out is not None and trace_out.exists() and not force:
        raise OutputExistsError(trace_out)
    console = _console()
    model, tokenizer, name = load_for_generate(model_spec, adapter)
    with _progress(console) as bar:
        task = bar.add_task("generate", total=prompts, info="")
        result = generate_from_corpus(
            model,
            tokenizer,
            corpus=corpus,
            prompts=prompts,
            prompt_len=prompt_len,
            new_tokens=new_tokens,
            eval_windows=eval_windows,
            eval_len=eval_len,
            trace_out=trace_out,
            force=force,
            source_note=f"codesign eval generate --model {model_spec} --adapter {adapter}",
            model_name=name,
            progress=lambda done: bar.update(task, completed=done),
        )
    for i, text in enumerate(result["texts"]):
        console.print(f"[{i}] …{text!r}")
    console.print(
        f"{result['decode_tokens']} decode + {result['prefill_tokens']} prefill tokens"
        + (f" -> {trace_out}" if trace_out else "")
    )
