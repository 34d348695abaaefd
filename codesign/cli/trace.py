"""`codesign trace synth|info|rebank` — make and inspect routing-trace stores."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import numpy as np

from codesign.cli.params import OutputPath
from codesign.cli.render import console, print_kv_table, write_json_output
from codesign.errors import TraceError


@click.group()
def trace() -> None:
    """Make and inspect routing-trace stores."""


@trace.command()
@click.argument("out", type=OutputPath(file_okay=False))
@click.option(
    "--kind",
    type=click.Choice(["uniform", "zipf", "correlated", "global_topk"]),
    default="uniform",
    show_default=True,
    help="Routing statistics to synthesise.",
)
@click.option(
    "--preset",
    type=click.Choice(["smollm2-135m", "qwen2.5-0.5b", "qwen2.5-7b", "llama-3.1-8b"]),
    default=None,
    help="Model shapes (hidden, intermediate, layers) by exact name.",
)
@click.option("--hidden", type=int, default=None, help="Hidden size (overrides the preset).")
@click.option("--intermediate", type=int, default=None, help="FFN intermediate size (overrides the preset).")
@click.option("--layers", type=int, default=None, help="Number of FFN layers (overrides the preset).")
@click.option("--bank-size", "-B", type=int, default=64, show_default=True, help="Channels per bank.")
@click.option("--k", "-k", type=int, default=16, show_default=True, help="Kept channels per bank.")
@click.option("--sequences", type=int, default=4, show_default=True, help="Concurrent sequences.")
@click.option("--prefill-tokens", type=int, default=0, show_default=True, help="Prefill tokens per sequence.")
@click.option("--decode-tokens", type=int, default=64, show_default=True, help="Decode steps per sequence.")
@click.option("--zipf-s", type=float, default=1.0, show_default=True, help="Zipf exponent (kind zipf).")
@click.option(
    "--reuse",
    type=float,
    default=0.5,
    show_default=True,
    help="Fraction of the previous token's channels reused per bank (kind correlated).",
)
@click.option(
    "--with-logits", is_flag=True, help="Store the scores as fp16 logits (enables offline re-banking)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
def synth(
    out,
    kind,
    preset,
    hidden,
    intermediate,
    layers,
    bank_size,
    k,
    sequences,
    prefill_tokens,
    decode_tokens,
    zipf_s,
    reuse,
    with_logits,
    seed,
    force,
) -> None:
    """Write a synthetic trace store to OUT."""
    from codesign.trace.synth import PRESETS, SynthSpec, write_synthetic

    shape = dict(
        zip(("hidden", "intermediate", "layers"), PRESETS[preset] if preset else (None,) * 3, strict=True)
    )
    for name, value in (("hidden", hidden), ("intermediate", intermediate), ("layers", layers)):
        if value is not None:
            shape[name] = value
    missing = [f"--{n}" for n, v in shape.items() if v is None]
    if missing:
        raise click.UsageError(f"give --preset or {', '.join(missing)}")
    spec = SynthSpec(
        kind=kind,
        bank_size=bank_size,
        k=k,
        sequences=sequences,
        prefill_tokens=prefill_tokens,
        decode_tokens=decode_tokens,
        zipf_s=zipf_s,
        reuse=reuse,
        seed=seed,
        model_name=preset or "synthetic",
        **shape,
    )
    _check_synth_fits(spec, with_logits, Path(out))
    existed = Path(out).exists()
    try:
        with console(stderr=True).status(f"writing {spec.num_tokens} synthetic tokens"):
            n = write_synthetic(spec, out, with_logits=with_logits, force=force)
    except BaseException:
        # A refused or interrupted synth leaves no half-made store (a replaced one was already deleted).
        if (existed and force or not existed) and (Path(out) / "commit.json").is_file():
            shutil.rmtree(out, ignore_errors=True)
        raise
    click.echo(
        f"wrote {n} tokens ({kind}, {shape['layers']} layers × {shape['intermediate']} channels, "
        f"{k}/{bank_size}) to {out}"
    )


@trace.command()
@click.argument("path", type=click.Path())
@click.option(
    "--bank-size", "-B", type=int, default=None, help="Re-bank the statistics (default: as recorded)."
)
@click.option(
    "--json", "json_out", type=OutputPath(dir_okay=False), default=None, help="Also write JSON here."
)
@click.option("--force", is_flag=True, help="Overwrite the JSON file if it exists.")
def info(path, bank_size, json_out, force) -> None:
    """Metadata, density per layer, bank-load histogram, token-to-token reuse, union density vs batch."""
    from codesign.trace.reader import TraceReader
    from codesign.trace.stats import trace_stats

    reader = TraceReader(path)
    I = reader.meta.intermediate
    if bank_size is not None and (bank_size <= 0 or I % bank_size):
        raise click.BadParameter(
            f"{bank_size} must be a positive divisor of the trace's intermediate size {I}", param_hint="-B"
        )
    if json_out and _inside(Path(json_out), reader.path):
        raise click.BadParameter(f"{json_out} is inside the trace store {path}", param_hint="--json")
    stats = trace_stats(reader, bank_size=bank_size)
    meta = reader.meta
    kind = "SYNTHETIC" if meta.synthetic else "recorded"
    print_kv_table(
        f"trace {path} ({kind})",
        {
            "model": f"{meta.model_name}: hidden {meta.hidden}, intermediate {meta.intermediate}, {meta.layers} layers",
            "routing": f"{meta.k}/{meta.bank_size} per bank"
            + (f", per-layer k {meta.k_per_layer}" if meta.k_per_layer else ""),
            "source": meta.source,
            "tokens": f"{stats.tokens} ({stats.prefill_tokens} prefill, {stats.decode_tokens} decode, {stats.sequences} sequences)",
            "logits stored": str(reader.has_logits),
            "checksums": f"CRC-32 per chunk of {reader.chunk_tokens} tokens ({reader.num_chunks} verified)"
            if reader.verified
            else "none (written before checksums: counts and chunk files checked only)",
            "created": f"{meta.created_at} by codesign {meta.codesign_version} (schema {meta.schema_version})",
            "density": f"{stats.density:.4f} (layers {min(stats.density_per_layer):.4f}..{max(stats.density_per_layer):.4f})",
            "reuse vs previous token": f"{np.mean(stats.reuse_per_layer):.3f} mean over layers",
        },
    )
    hist = stats.bank_load_histogram
    nonzero = {str(j): c for j, c in enumerate(hist) if c}
    print_kv_table(f"bank load at B = {stats.bank_size} (kept channels → bank-steps)", nonzero)
    print_kv_table(
        "union density vs batch (decode tokens)",
        {
            f"b = {b}": f"{v:.4f}  (independent uniform: {stats.union_density_uniform[b]:.4f})"
            for b, v in stats.union_density.items()
        },
    )
    if json_out:
        write_json_output(json_out, {"meta": meta.to_dict(), "stats": stats.to_dict()}, force=force)


@trace.command()
@click.argument("src", type=click.Path())
@click.argument("out", type=OutputPath(file_okay=False))
@click.option("--bank-size", "-B", type=int, required=True, help="New bank size.")
@click.option("--k", "-k", type=int, required=True, help="New kept channels per bank.")
@click.option(
    "--global-topk", is_flag=True, help="Keep the top k·I/B of each layer instead (no bank balance)."
)
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
def rebank(src, out, bank_size, k, global_topk, force) -> None:
    """Re-apply a different (B, k) to a trace's stored logits, writing a new store."""
    from codesign.trace.reader import TraceReader
    from codesign.trace.rebank import rebank_trace

    n = rebank_trace(TraceReader(src), out, bank_size=bank_size, k=k, global_topk=global_topk, force=force)
    click.echo(
        f"wrote {n} tokens re-selected at {k}/{bank_size}{' (global top-k)' if global_topk else ''} to {out}"
    )


def _inside(path: Path, store: Path) -> bool:
    path, store = path.resolve(), store.resolve()
    return path == store or store in path.parents


def _check_synth_fits(spec, with_logits: bool, out: Path) -> None:
    """Refuse a synthetic trace whose working set exceeds memory or whose store cannot fit on disk."""
    from codesign.sim.config.limits import format_bytes, physical_memory_bytes
    from codesign.trace.synth import BLOCK_BYTES

    cells = spec.layers * spec.intermediate  # per token
    # One generated block (≤ 256 tokens, about BLOCK_BYTES of masks, at least one token): float32 scores,
    # fp16 logits, bool bank and global masks, int64 top-k order ≈ 16 B per cell, room for a temporary copy;
    # plus the writer's buffer of one 1024-token chunk (packed masks, logits), concatenated once.
    block_tokens = max(1, min(256, BLOCK_BYTES // cells))
    working = block_tokens * cells * 24 + 2 * 1024 * (cells // 8 + (2 * cells if with_logits else 0))
    if working > physical_memory_bytes():
        raise TraceError(
            f"--layers {spec.layers} × --intermediate {spec.intermediate}: generating needs ≈ "
            f"{format_bytes(working)} of memory (estimated), more than this machine's "
            f"{format_bytes(physical_memory_bytes())}"
        )
    stored = spec.num_tokens * (2 * cells // 8 + (2 * cells if with_logits else 0) + 26)  # + global top-k
    parent = next((p for p in out.absolute().parents if p.exists()), Path("/"))
    free = shutil.disk_usage(parent).free
    if stored > free:
        raise TraceError(
            f"{spec.num_tokens} tokens × {spec.layers} layers × {spec.intermediate} channels need ≈ "
            f"{format_bytes(stored)} on disk (estimated, uncompressed), more than the {format_bytes(free)} "
            f"free under {parent}"
        )
