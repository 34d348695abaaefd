"""`codesign eval cwe`, `codesign diagnose`, `codesign repair` — RULER-CWE, layer-local diagnosis, repair.

`diagnose` and `repair` are top-level commands (COMMANDS in cli/__init__.py); `cwe` joins the `eval` group
when this module is imported (below), so the eval group's own module needs no edit.
"""

from __future__ import annotations

from pathlib import Path

import click

from codesign.cli.model import eval_group
from codesign.cli.render import console, print_kv_table, write_json_output


def _lengths(value: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    return out


def _model_option(f):
    return click.option(
        "--model",
        "model_spec",
        default="adapters/smollm2-bank64-k16.safetensors",
        show_default=True,
        help="smollm2-135m (dense), an adapter .safetensors, or a sparse / dense checkpoint directory.",
    )(f)


def _common(f):
    for opt in reversed(
        [
            _model_option,
            click.option("--setting", type=click.Choice(["standard", "scaled"]), default="scaled", show_default=True,
                         help="RULER's standard CWE, or the scaled variant for ~100M models (parameters are printed)."),
            click.option("--lengths", default="256,512,1024,2048", show_default=True,
                         help="Context lengths in the model's tokens, comma-separated."),
            click.option("--samples", type=int, default=4, show_default=True, help="Samples per length."),
            click.option("--seed", type=int, default=42, show_default=True),
        ]
    ):  # fmt: skip
        f = opt(f)
    return f


def load_cwe_model(spec: str):
    """(model, tokenizer, name): an adapter file over its base, or a checkpoint (sparse or dense)."""
    if str(spec).endswith(".safetensors"):
        from codesign.train.adapter import load_adapted

        model, tok = load_adapted(spec)
        return model, tok, str(spec)
    from codesign.sparse.io import load_model

    model, tok = load_model(spec)
    return model, tok, str(spec)


def _refuse_existing(paths, force: bool) -> None:
    from codesign.errors import OutputExistsError

    for p in paths:
        if p and Path(p).exists() and not force:
            raise OutputExistsError(p)  # before the model loads: fail in a second, not a minute


SMOLLM2_CONTEXT = 8192  # SmolLM2-135M's max_position_embeddings (GGUF llama.context_length)


def _known_max_context(spec: str) -> int | None:
    """The model's maximum context without loading it: from config.json, or the SmolLM2 base of an adapter."""
    import json

    path = Path(spec)
    if spec == "smollm2-135m":
        return SMOLLM2_CONTEXT
    if spec.endswith(".safetensors") and path.is_file():
        from codesign.train.adapter import read_adapter

        return SMOLLM2_CONTEXT if read_adapter(path)[0].get("base") == "smollm2-135m" else None
    if (path / "config.json").is_file():
        return json.loads((path / "config.json").read_text()).get("max_position_embeddings")
    return None


def _precheck(lengths, samples, variants=(), model_spec: str | None = None) -> None:
    """Input errors that need no model: one line before anything loads."""
    from codesign.errors import ConfigError
    from codesign.eval.cwe import check_request
    from codesign.eval.cwe_score import _VARIANT, VARIANT_HELP

    check_request(lengths, samples, _known_max_context(model_spec) if model_spec else None)
    for v in variants:
        if not _VARIANT.match(v):
            raise ConfigError(f"unknown variant {v!r}; variants are {VARIANT_HELP}")


def _progress(label: str):
    from rich.progress import Progress

    bar = Progress(console=console(stderr=True), transient=True)
    task = bar.add_task(label, total=None)
    return bar, (lambda done, total: bar.update(task, completed=done, total=total))


@eval_group.command("cwe")
@_common
@click.option("--variants", default="model", show_default=True,
              help="Comma-separated: model, dense, oracle, dense@L, k@L=K.")  # fmt: skip
@click.option("--no-generate", is_flag=True, help="Proxy only (teacher-forced answer log-likelihood).")
@click.option("--no-proxy", is_flag=True, help="Generated score only.")
@click.option("--trace-out", type=click.Path(), default=None,
              help="Record the first variant's prefill and decode routing to a new trace store.")  # fmt: skip
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None)
@click.option(
    "--plot", "plot_out", type=click.Path(dir_okay=False), default=None, help="PNG: score vs length."
)
@click.option("--force", is_flag=True, help="Overwrite outputs.")
def cwe(model_spec, setting, lengths, samples, seed, variants, no_generate, no_proxy, trace_out, json_out,
        plot_out, force) -> None:  # fmt: skip
    """RULER common-words extraction vs context length, with 95 % intervals."""
    from codesign.eval.cwe import resolve_setting
    from codesign.eval.cwe_score import evaluate_cwe

    lengths, names = _lengths(lengths), [v.strip() for v in variants.split(",") if v.strip()]
    _precheck(lengths, samples, names, model_spec)
    _refuse_existing([json_out, plot_out, trace_out], force)
    cfg = resolve_setting(setting)
    print_kv_table(f"CWE setting {cfg.name}", _setting_rows(cfg, seed))
    model, tok, name = load_cwe_model(model_spec)
    bar, tick = _progress("cwe")
    with bar:
        result = evaluate_cwe(
            model, tok, model_name=name, setting=cfg, lengths=lengths, samples=samples, seed=seed,
            variants=names, generate=not no_generate, proxy=not no_proxy, trace_out=trace_out, force=force,
            progress=tick,
        )  # fmt: skip
    _render_scores(result)
    if json_out:
        write_json_output(json_out, result, force=force)
    if plot_out:
        from codesign.eval.cwe_plots import plot_scores

        plot_scores(result, plot_out, force=force)


def _setting_rows(cfg, seed) -> dict:
    rows = {"common words": cfg.num_cw, "tokens generated": cfg.tokens_to_generate, "seed": seed}
    for label, r in ((f"< {cfg.long_from}", cfg.short), (f">= {cfg.long_from}", cfg.long)):
        rows[f"repeats {label}"] = (
            f"query {r.repeats_common}/{r.repeats_uncommon}, few-shot {r.example_words} words at "
            f"{r.example_repeats_common}/{r.example_repeats_uncommon}"
        )
    return rows


def _render_scores(result: dict) -> None:
    from rich.table import Table

    table = Table(title=f"CWE {result['setting']['name']} — {result['model']}")
    table.add_column("variant")
    table.add_column("length", justify="right")
    table.add_column("words", justify="right")
    table.add_column("score % [95 % CI]", justify="right")
    table.add_column("proxy loglik/token [95 % CI]", justify="right")
    for name, rows in result["scores"].items():
        for L, row in rows.items():
            gen = f"{row['mean']:.1f} [{row['ci95'][0]:.1f}, {row['ci95'][1]:.1f}]" if "mean" in row else "-"
            lo, hi = row.get("loglik_ci95", (0, 0))
            prox = f"{row['loglik_mean']:.3f} [{lo:.3f}, {hi:.3f}]" if "loglik_mean" in row else "-"
            words = result["num_words"][L]
            table.add_row(name, L, f"{min(words)}-{max(words)}", gen, prox)
    console().print(table)
    agree = result.get("proxy_agreement")
    if agree:
        console().print(f"proxy vs generated, Spearman over variants: {agree['spearman']}")


@click.command()
@_common
@click.option("--screen", type=int, default=None, metavar="M",
              help="Ablate only the M layers with the largest local FFN error (default: every layer).")  # fmt: skip
@click.option("--plant-fault", type=int, default=None, metavar="LAYER",
              help="Corrupt this layer's predictor (in memory) first: a check that diagnose finds it.")  # fmt: skip
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None)
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), default=None, help="PNG heatmaps.")
@click.option("--force", is_flag=True)
def diagnose(
    model_spec, setting, lengths, samples, seed, screen, plant_fault, json_out, plot_out, force
) -> None:
    """Rank the layers whose routing costs the CWE answer: ablation, recall by position, divergence."""
    from codesign.eval.cwe import make_samples, resolve_setting
    from codesign.eval.cwe_score import max_context
    from codesign.eval.diagnose import diagnose as run
    from codesign.eval.diagnose import plant_fault as plant

    lengths = _lengths(lengths)
    _precheck(lengths, samples, (), model_spec)
    _refuse_existing([json_out, plot_out], force)
    cfg = resolve_setting(setting)
    model, tok, name = load_cwe_model(model_spec)
    from codesign.eval.cwe import check_request

    check_request(lengths, samples, max_context(model))
    if plant_fault is not None:
        plant(model, plant_fault)
    sets = [s for L in lengths for s in make_samples(tok, cfg, L, samples, seed)]
    bar, tick = _progress("diagnose")
    with bar:
        d = run(model, tok, sets, screen=screen, progress=tick)
    result = {
        "model": name,
        "setting": cfg.to_dict(),
        "seed": seed,
        "planted_fault": plant_fault,
        "diagnosis": d,
    }
    _render_ranking(d, plant_fault)
    if json_out:
        write_json_output(json_out, result, force=force)
    if plot_out:
        from codesign.eval.cwe_plots import plot_diagnosis

        plot_diagnosis(result, plot_out, force=force)


def _render_ranking(d: dict, planted, top: int = 8) -> None:
    from rich.table import Table

    table = Table(title=f"layers ranked by ablation gain (lengths {d['lengths']}, {d['samples']} samples)")
    for col in (
        "rank",
        "layer",
        "gain loglik/tok",
        "recovered",
        "recall",
        "recall rank",
        "local err",
        "div jump",
    ):
        table.add_column(col, justify="right")
    for r in d["ranking"][:top]:
        rec = "-" if r["recovered"] is None else f"{r['recovered']:.2f}"
        gain = "not ablated" if r["ablation_gain"] is None else f"{r['ablation_gain']:.4f}"
        klr = "-" if r["kl_removed"] is None else f"{r['kl_removed']:.2f}"
        table.add_row(str(r["rank"]), str(r["layer"]), klr, gain, rec, f"{r['recall']:.3f}",
                      str(r["recall_rank"]), f"{r['local_error']:.3f}", f"{r['divergence_jump']:.3f}")  # fmt: skip
    console().print(table)
    line = f"all-dense gain per length: {[round(g, 4) for g in d['all_dense_gain']]}; ranked first: {d['culprit']}"
    if planted is not None:
        line += f" (planted fault at layer {planted}: {'found' if d['culprit'] == planted else 'NOT found'})"
    console().print(line)


@click.command()
@_common
@click.option("--layer", type=int, required=True, help="The layer to repair (diagnose's first).")
@click.option("--steps", type=int, default=300, show_default=True, help="Predictor retraining steps.")
@click.option("--target", type=float, default=0.8, show_default=True,
              help="Fraction of the layer-dense gain a repair must recover to be chosen by cost.")  # fmt: skip
@click.option("--hw", default="hwconfigs/bank64.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="Hardware config the repair is costed on.")  # fmt: skip
@click.option("--out", "adapter_out", type=click.Path(dir_okay=False), default=None,
              help="Write the repaired predictors (+ per-layer k) as an adapter .safetensors.")  # fmt: skip
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None)
@click.option("--force", is_flag=True)
def repair(model_spec, setting, lengths, samples, seed, layer, steps, target, hw, adapter_out, json_out,
           force) -> None:  # fmt: skip
    """Repair one layer's routing (retrain its predictor and/or raise its k), chosen by measurement."""
    from codesign.errors import ConfigError

    lengths = _lengths(lengths)
    _precheck(lengths, samples, (), model_spec)
    if layer < 0 or steps <= 0 or not 0 < target <= 1:
        raise ConfigError("--layer must be >= 0, --steps positive and --target in (0, 1]")
    if not Path(hw).is_file():
        raise ConfigError(f"hardware config {hw} does not exist")
    _refuse_existing([json_out, adapter_out], force)
    result = _run_repair(
        model_spec, setting, lengths, samples, seed, layer, steps, target, hw, adapter_out, force
    )
    s = result["summary"]
    print_kv_table(
        f"repair of layer {layer}",
        {
            "chosen": s["chosen"],
            "recovered (of layer-dense gain)": f"{s['recovered']:.2f}",
            "proxy loglik before -> after": " ".join(
                f"{L}: {result['loglik_before'][L]:.3f} -> {result['loglik_after'][L]:.3f}"
                for L in result["lengths"]
            ),
            "ppl before -> after": f"{result['ppl_before']:.3f} -> {result['ppl_after']:.3f} "
            f"({100 * result['ppl_regression']:+.2f} %)",
            "sim extra DRAM bytes / cycles": f"{result['sim']['extra_dram_read_bytes']} / {result['sim']['extra_cycles']} "
            f"(cycles x{result['sim']['cycles_ratio']:.3f}, {result['sim']['before']['tokens']} tokens)",
        },
    )
    if json_out:
        write_json_output(json_out, result, force=force)


def _run_repair(model_spec, setting, lengths, samples, seed, layer, steps, target, hw, adapter_out, force):
    from codesign.data.corpus import load_corpus, windows_for_eval
    from codesign.eval.cwe import check_request, resolve_setting
    from codesign.eval.cwe_score import max_context
    from codesign.eval.repair import repair_layer
    from codesign.jobs.simulate import simulate_masks

    cfg = resolve_setting(setting)
    model, tok, name = load_cwe_model(model_spec)
    check_request(lengths, samples, max_context(model))
    corpus = load_corpus("kjv", tok)
    val = windows_for_eval(corpus.tokens("validation"), 512, 8 * 512)
    train = windows_for_eval(corpus.tokens("train"), 512, 4 * 512)
    bar, tick = _progress("repair")
    with bar:
        result = repair_layer(model, tok, layer=layer, setting=cfg, lengths=lengths, samples=samples,
                              val_windows=val, train_windows=train, seed=seed, steps=steps, target=target,
                              price=lambda masks, hidden, rank, name: simulate_masks(masks, hw, hidden, rank, name),
                              hwconfig=hw, progress=tick)  # fmt: skip
    result["model"] = name
    if adapter_out:
        from codesign.train.adapter import save_adapter

        names = [n for n, _ in model.named_parameters() if ".predictor." in n]
        base = "smollm2-135m" if name.endswith(".safetensors") or name == "smollm2-135m" else name
        save_adapter(model, adapter_out, names=names, base=base, force=force,
                     provenance={"repair": result["summary"], "from": name, "layer": layer})  # fmt: skip
        result["adapter"] = str(adapter_out)
    return result
