"""`codesign upcycle` and `codesign eval ppl` — make a sparse checkpoint from a dense one, and measure it."""

from __future__ import annotations

import click

from codesign.cli.params import OutputPath, at_least
from codesign.cli.render import console, print_kv_table, write_json_output


@click.command()
@click.option(
    "--model", "model_spec", required=True, help="Local HF checkpoint dir, a .gguf file, or smollm2-135m."
)
@click.option("--bank-size", "-B", type=int, default=64, show_default=True, help="Channels per bank.")
@click.option("--k", "-k", type=int, default=16, show_default=True, help="Kept channels per bank.")
@click.option("--rank", type=int, default=64, show_default=True, help="Low-rank predictor rank.")
@click.option(
    "--init",
    type=click.Choice(["svd", "fit", "random"]),
    default="fit",
    show_default=True,
    help="Predictor init: SVD of gate_proj, or SVD then a fit to dense activations on KJV train tokens.",
)
@click.option(
    "--mode",
    type=click.Choice(["bank_topk", "global_topk", "dense", "oracle", "threshold"]),
    default="bank_topk",
    show_default=True,
)
@click.option(
    "--estimator",
    type=click.Choice(["ste", "gate", "ste+gate"]),
    default="ste",
    show_default=True,
    help="How training gradients reach the predictor (recorded in the checkpoint).",
)
@click.option(
    "--fit-tokens", type=at_least(1), default=4096, show_default=True, help="Tokens for --init fit."
)
@click.option("--dtype", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True)
@click.option("--out", "out_dir", required=True, type=OutputPath(file_okay=False), help="Output directory.")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
def upcycle(model_spec, bank_size, k, rank, init, mode, estimator, fit_tokens, dtype, out_dir, force) -> None:
    """Turn a dense SwiGLU checkpoint into a predictor-gated bank-sparse one."""
    from codesign.jobs.upcycle import upcycle_checkpoint
    from codesign.sparse.config import SparsityConfig

    cfg = SparsityConfig(bank_size=bank_size, k=k, rank=rank, mode=mode, estimator=estimator, init=init)
    with console(stderr=True).status("upcycling") as status:
        summary = upcycle_checkpoint(
            model_spec,
            cfg,
            out_dir,
            fit_tokens=fit_tokens,
            dtype=dtype,
            force=force,
            status=lambda msg: status.update(msg),
        )
    print_kv_table("upcycled", summary)


@click.group(name="eval")
def eval_group() -> None:
    """Evaluate dense or sparse checkpoints."""


@eval_group.command()
@click.option("--model", "model_spec", required=True, help="Sparse or dense checkpoint dir, or smollm2-135m.")
@click.option(
    "--split", type=click.Choice(["train", "validation", "test"]), default="validation", show_default=True
)
@click.option(
    "--max-tokens", type=at_least(1), default=None, help="Evaluate at most this many tokens (whole windows)."
)
@click.option("--context-len", type=at_least(2), default=512, show_default=True)
@click.option("--batch-size", type=at_least(1), default=4, show_default=True)
@click.option(
    "--mode",
    type=click.Choice(["bank_topk", "global_topk", "dense", "oracle", "threshold"]),
    default=None,
    help="Override a sparse checkpoint's mode.",
)
@click.option("--no-recall", is_flag=True, help="Skip predictor recall vs the oracle (sparse models).")
@click.option("--json", "json_out", type=OutputPath(dir_okay=False), default=None, help="Write results here.")
@click.option(
    "--trace-out",
    type=OutputPath(file_okay=False),
    default=None,
    help="Record every window's routing to a new trace store.",
)
@click.option("--force", is_flag=True, help="Overwrite the --json file / trace store if they exist.")
def ppl(
    model_spec, split, max_tokens, context_len, batch_size, mode, no_recall, json_out, trace_out, force
) -> None:
    """Perplexity on a held-out split of the KJV corpus (split by book), with recall per layer."""
    from pathlib import Path

    from rich.progress import Progress

    from codesign.errors import OutputExistsError
    from codesign.eval.ppl import evaluate_checkpoint

    for out in (json_out, trace_out):
        if out and Path(out).exists() and not force:
            raise OutputExistsError(out)  # before the model loads: fail in a second, not a minute
    with Progress(console=console(stderr=True), transient=True) as bar:
        task = bar.add_task("perplexity", total=None)
        result = evaluate_checkpoint(
            model_spec,
            split=split,
            max_tokens=max_tokens,
            context_len=context_len,
            batch_size=batch_size,
            mode=mode,
            recall=not no_recall,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            trace_out=trace_out,
            force=force,
        )
    rows = {k: result[k] for k in ("model", "split", "ppl", "nll_mean", "tokens_evaluated", "context_len")}
    if result["sparsity"]:
        s = result["sparsity"]
        rows["sparsity"] = f"{s['mode']} B={s['bank_size']} k={s['k']} rank={s['rank']}"
    if result["recall"]:
        r = result["recall"]
        rows["recall mean / min"] = f"{r['recall_mean']:.3f} / {r['recall_min']:.3f}"
        rows["kept density"] = f"{r['kept_density_mean']:.3f}"
    if result["trace"]:
        rows["routing trace"] = f"{result['trace']['path']} ({result['trace']['tokens']} tokens)"
    print_kv_table("perplexity", rows)
    if json_out:
        write_json_output(json_out, result, force=force)


def _attach_generate() -> None:
    """`codesign eval generate` lives with the training job (it records decode routing through the same capture)."""
    from codesign.cli.train import generate_command

    eval_group.add_command(generate_command, "generate")


_attach_generate()
