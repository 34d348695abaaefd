"""Bad input to every command: non-zero exit, one line on stderr naming the problem, no traceback, and no
file created, changed or removed (every file under the test's directories is hashed before and after).

Every case is refused before any model loads (the checkpoints below are never loaded: their config, header
and file checks refuse first), so the whole corpus runs in seconds. Each case is (argv, words the one line
must contain); `{a}` is a shared directory of good and damaged inputs, `{t}` an empty per-test directory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from codesign.cli import main

REPO = Path(__file__).resolve().parents[1]
HUGE = "99999999999999999999"  # beyond int64

CASES: list[tuple[str, str, str]] = [
    # ---- trace synth ------------------------------------------------------------------------------------
    ("synth-int64", f"trace synth {{t}}/x --preset smollm2-135m --decode-tokens {HUGE}", "64-bit integer"),
    ("synth-nan", "trace synth {t}/x --preset smollm2-135m --zipf-s nan", "not a finite number"),
    ("synth-inf", "trace synth {t}/x --preset smollm2-135m --reuse inf", "not a finite number"),
    ("synth-no-shape", "trace synth {t}/x --hidden 8", "give --preset or --intermediate, --layers"),
    ("synth-bank", "trace synth {t}/x --preset smollm2-135m -B 100", "does not divide"),
    ("synth-k0", "trace synth {t}/x --preset smollm2-135m -k 0", "k must be in 1..64"),
    ("synth-k-big", "trace synth {t}/x --preset smollm2-135m -k 65", "k must be in 1..64"),
    ("synth-seq0", "trace synth {t}/x --preset smollm2-135m --sequences 0", "sequences must be positive"),
    ("synth-no-tokens", "trace synth {t}/x --preset smollm2-135m --decode-tokens 0", "at least one token"),
    ("synth-neg-prefill", "trace synth {t}/x --preset smollm2-135m --prefill-tokens -1", "non-negative"),
    ("synth-reuse", "trace synth {t}/x --preset smollm2-135m --reuse 1.5", "reuse must be within"),
    ("synth-zipf", "trace synth {t}/x --preset smollm2-135m --zipf-s -1", "zipf exponent"),
    ("synth-exists", "trace synth {a}/good.zarr --preset smollm2-135m", "already exists"),
    ("synth-under-file", "trace synth {a}/file.txt/x --preset smollm2-135m", "is a file, not a directory"),
    ("synth-over-file", "trace synth {a}/file.txt --preset smollm2-135m --force", "is a file"),
    ("synth-disk", "trace synth {t}/x --preset qwen2.5-7b --decode-tokens 100000000000", "on disk"),
    ("synth-memory", "trace synth {t}/x --hidden 8 --intermediate 80000000 --layers 1000", "of memory"),
    ("synth-preset", "trace synth {t}/x --preset gpt-5", "'gpt-5' is not one of"),
    ("synth-kind", "trace synth {t}/x --preset smollm2-135m --kind nope", "'nope' is not one of"),
    ("synth-packed", "trace synth {t}/x --hidden 8 --intermediate 12 --layers 2 -B 4 -k 1", "multiple of 8"),
    # ---- trace info -------------------------------------------------------------------------------------
    ("info-missing", "trace info {t}/missing.zarr", "does not exist"),
    ("info-not-store", "trace info {a}", "not a codesign trace store"),
    ("info-bank0", "trace info {a}/good.zarr -B 0", "positive divisor of the trace's intermediate"),
    ("info-bank48", "trace info {a}/good.zarr -B 48", "positive divisor of the trace's intermediate"),
    ("info-bank-int64", f"trace info {{a}}/good.zarr -B {HUGE}", "64-bit integer"),
    ("info-json-in-store", "trace info {a}/good.zarr --json {a}/good.zarr/x.json", "inside the trace store"),
    ("info-json-under-file", "trace info {a}/good.zarr --json {a}/file.txt/x.json", "is a file"),
    ("info-json-exists", "trace info {a}/good.zarr --json {a}/existing.json", "already exists"),
    ("info-lost-chunk", "trace info {a}/lost_chunk.zarr", "chunk 1 of masks (tokens 16..31) is missing"),
    (
        "info-changed-chunk",
        "trace info {a}/changed_chunk.zarr",
        "chunk 0 of masks (tokens 0..15) does not match",
    ),
    ("info-negative", "trace info {a}/negative.zarr", "num_tokens -3 is not an integer"),
    ("info-phantom", "trace info {a}/phantom.zarr", "but masks has checksums for 3"),
    ("info-array-meta", "trace info {a}/array_meta.zarr", "unreadable metadata of array seq_id"),
    ("info-commit", "trace info {a}/commit.zarr", "commit.json is corrupt"),
    # ---- trace rebank -----------------------------------------------------------------------------------
    (
        "rebank-self",
        "trace rebank {a}/good.zarr {a}/good.zarr -B 32 -k 8 --force",
        "is (or holds) the source",
    ),
    (
        "rebank-link",
        "trace rebank {a}/link.zarr {a}/good.zarr -B 32 -k 8 --force",
        "is (or holds) the source",
    ),
    ("rebank-dotdot", "trace rebank {a}/good.zarr {a}/../a/good.zarr -B 32 -k 8 --force", "is (or holds)"),
    ("rebank-inside", "trace rebank {a}/good.zarr {a}/good.zarr/sub -B 32 -k 8", "is (or holds) the source"),
    ("rebank-no-logits", "trace rebank {a}/no_logits.zarr {t}/r -B 32 -k 8", "no logits"),
    ("rebank-bank", "trace rebank {a}/good.zarr {t}/r -B 48 -k 8", "does not divide"),
    ("rebank-k", "trace rebank {a}/good.zarr {t}/r -B 32 -k 0", "k must be in 1..32"),
    ("rebank-missing-opt", "trace rebank {a}/good.zarr {t}/r -k 8", "Missing option"),
    ("rebank-under-file", "trace rebank {a}/good.zarr {a}/file.txt/r -B 32 -k 8", "is a file"),
    # ---- simulate ---------------------------------------------------------------------------------------
    ("sim-binary", "simulate --hw {a}/binary.yaml", "binary file"),
    ("sim-latin1", "simulate --hw {a}/latin1.yaml", "not UTF-8 text"),
    ("sim-dup", "simulate --hw {a}/dup.yaml", "duplicate key 'k'"),
    ("sim-inf", "simulate --hw {a}/inf.yaml", "clock.frequency_hz: inf is not a finite number"),
    ("sim-huge", "simulate --hw {a}/huge.yaml", "sram.num_banks: 1e+30 is beyond"),
    ("sim-list", "simulate --hw {a}/list.yaml", "must be a YAML mapping"),
    ("sim-missing", "simulate --hw {t}/missing.yaml", "hwconfig not found"),
    ("sim-banks-mem", "simulate --hw {a}/bank64.yaml --set sram.num_banks=100000000000000", "memory"),
    ("sim-stacks-mem", "simulate --hw {a}/bank64.yaml --set dram.stacks=1000000000000", "memory"),
    ("sim-set-nan", "simulate --hw {a}/bank64.yaml --set clock.frequency_hz=.nan", "not a finite number"),
    ("sim-set-unknown", "simulate --hw {a}/bank64.yaml --set nope.key=1", "unknown key"),
    ("sim-set-k", "simulate --hw {a}/bank64.yaml --set sparsity.k=65", "exceeds bank_size"),
    ("sim-set-form", "simulate --hw {a}/bank64.yaml --set garbage", "not of the form"),
    ("sim-batch0", "simulate --hw {a}/bank64.yaml --batch 0", "positive number of tokens"),
    ("sim-batch-int64", f"simulate --hw {{a}}/bank64.yaml --batch {HUGE}", "64-bit integer"),
    ("sim-json-under-file", "simulate --hw {a}/bank64.yaml --json {a}/file.txt/r.json", "is a file"),
    ("sim-csv-under-file", "simulate --hw {a}/bank64.yaml --csv {a}/file.txt/csv", "is a file"),
    ("sim-plot-under-file", "simulate --hw {a}/bank64.yaml --plot {a}/file.txt/plots", "is a file"),
    ("sim-json-exists", "simulate --hw {a}/bank64.yaml --json {a}/existing.json", "already exists"),
    ("sim-trace-missing", "simulate --hw {a}/bank64.yaml --trace {t}/missing.zarr", "does not exist"),
    ("sim-trace-lost", "simulate --hw {a}/bank64.yaml --trace {a}/lost_chunk.zarr", "chunk 1 of masks"),
    # ---- train ------------------------------------------------------------------------------------------
    ("train-dup", "train --recipe {a}/dup_recipe.yaml --out {t}/run", "duplicate key 'lr'"),
    ("train-binary", "train --recipe {a}/binary.yaml --out {t}/run", "binary file"),
    ("train-nan", "train --recipe {a}/nan_recipe.yaml --out {t}/run", "lr: nan is not a finite number"),
    ("train-missing", "train --recipe {t}/missing.yaml --out {t}/run", "recipe file not found"),
    ("train-out-under-file", "train --recipe {a}/tiny.yaml --out {a}/file.txt/run", "is a file"),
    (
        "train-trace-under-file",
        "train --recipe {a}/tiny.yaml --out {t}/r --trace-out {a}/file.txt/t",
        "is a file",
    ),
    ("train-out-exists", "train --recipe {a}/tiny.yaml --out {a}/old_run", "already exists"),
    (
        "train-trace-exists",
        "train --recipe {a}/tiny.yaml --out {t}/r --trace-out {a}/good.zarr",
        "already exists",
    ),
    # ---- upcycle ----------------------------------------------------------------------------------------
    ("up-missing", "upcycle --model {t}/missing --out {t}/o --init svd", "does not exist"),
    ("up-no-tokenizer", "upcycle --model {a}/ckpt_no_tokenizer --out {t}/o --init fit", "no tokenizer files"),
    ("up-truncated", "upcycle --model {a}/ckpt_truncated --out {t}/o --init svd", "truncated safetensors"),
    ("up-not-ckpt", "upcycle --model {a}/empty_dir --out {t}/o --init svd", "no config.json"),
    ("up-out-under-file", "upcycle --model {a}/ckpt --out {a}/file.txt/o", "is a file"),
    ("up-out-exists", "upcycle --model {a}/ckpt --out {a}/old_run", "already exists"),
    ("up-fit-tokens", "upcycle --model {a}/ckpt --out {t}/o --fit-tokens 0", "--fit-tokens"),
    ("up-k", "upcycle --model {a}/ckpt --out {t}/o -k 65", "k"),
    ("up-rank", "upcycle --model {a}/ckpt --out {t}/o --rank 0", "rank"),
    ("up-int64", f"upcycle --model {{a}}/ckpt --out {{t}}/o --rank {HUGE}", "64-bit integer"),
    # ---- eval ppl / generate ----------------------------------------------------------------------------
    ("ppl-context0", "eval ppl --model {a}/ckpt --context-len 0", "--context-len"),
    ("ppl-neg-max", "eval ppl --model {a}/ckpt --max-tokens -5", "--max-tokens"),
    ("ppl-max-lt-window", "eval ppl --model {a}/ckpt --max-tokens 10", "less than one window"),
    (
        "ppl-context-long",
        "eval ppl --model {a}/ckpt --context-len 4096",
        "exceeds {a}/ckpt's maximum position 512",
    ),
    ("ppl-batch0", "eval ppl --model {a}/ckpt --batch-size 0", "--batch-size"),
    ("ppl-no-tokenizer", "eval ppl --model {a}/ckpt_no_tokenizer", "no tokenizer files"),
    ("ppl-truncated", "eval ppl --model {a}/ckpt_truncated", "truncated safetensors"),
    ("ppl-garbled", "eval ppl --model {a}/ckpt_garbled", "not a valid safetensors file"),
    ("ppl-missing", "eval ppl --model {t}/missing", "does not exist"),
    ("ppl-json-under-file", "eval ppl --model {a}/ckpt --json {a}/file.txt/x.json", "is a file"),
    ("ppl-json-exists", "eval ppl --model {a}/ckpt --json {a}/existing.json", "already exists"),
    ("ppl-trace-exists", "eval ppl --model {a}/ckpt --trace-out {a}/good.zarr", "already exists"),
    ("gen-prompts0", "eval generate --model {a}/ckpt --prompts 0", "--prompts"),
    ("gen-new-tokens", "eval generate --model {a}/ckpt --new-tokens -1", "--new-tokens"),
    ("gen-trace-under-file", "eval generate --model {a}/ckpt --trace-out {a}/file.txt/t", "is a file"),
    ("gen-trace-exists", "eval generate --model {a}/ckpt --trace-out {a}/good.zarr", "already exists"),
    ("cwe-lengths", "eval cwe --lengths 256,abc", "comma-separated integers"),
    ("cwe-int64", f"eval cwe --samples {HUGE}", "64-bit integer"),
    ("diagnose-lengths", "diagnose --lengths x", "comma-separated integers"),
    ("diagnose-int64", f"diagnose --seed {HUGE}", "64-bit integer"),
    ("repair-lengths", "repair --layer 3 --lengths x", "comma-separated integers"),
    ("repair-target", "repair --layer 3 --target 2", "--target in (0, 1]"),
    # ---- adapter export ---------------------------------------------------------------------------------
    ("adapter-no-run", "adapter export {t}/missing {t}/a.safetensors", "does not exist"),
    ("adapter-under-file", "adapter export {a}/old_run {a}/file.txt/a.safetensors", "is a file"),
    ("adapter-exists", "adapter export {a}/old_run {a}/existing.json", "already exists"),
    ("adapter-rank0", "adapter export {a}/old_run {t}/a.safetensors --delta-rank 0", "--delta-rank"),
    # ---- kernels, top level -----------------------------------------------------------------------------
    ("probe-json-under-file", "kernels probe --json {a}/file.txt/x.json", "is a file"),
    ("probe-int64", f"kernels probe --hidden {HUGE}", "64-bit integer"),
    ("probe-json-exists", "kernels probe --json {a}/existing.json", "already exists"),
    ("unknown-command", "frobnicate", "No such command"),
]


def _damage(assets: Path, name: str, how) -> None:
    shutil.copytree(assets / "good.zarr", assets / name)
    how(assets / name)


def _commit_edit(**changes):
    def edit(path: Path) -> None:
        doc = json.loads((path / "commit.json").read_text())
        doc.update(changes)
        (path / "commit.json").write_text(json.dumps(doc))

    return edit


def _checkpoint(path: Path, *, tokenizer: bool = True, cut: int = 0, garble: bool = False) -> None:
    """A checkpoint directory that the checks read (config, safetensors header, file list); never loaded."""
    from safetensors.numpy import save_file

    path.mkdir()
    config = {"model_type": "llama", "hidden_size": 8, "max_position_embeddings": 512, "vocab_size": 16}
    (path / "config.json").write_text(json.dumps(config))
    save_file({"model.embed_tokens.weight": np.zeros((16, 8), np.float32)}, str(path / "model.safetensors"))
    weights = path / "model.safetensors"
    if cut:
        weights.write_bytes(weights.read_bytes()[:-cut])
    if garble:
        weights.write_bytes(b"\xff" * 64)
    (path / "tokenizer_config.json").write_text("{}")
    if tokenizer:
        (path / "tokenizer.json").write_text("{}")


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    from codesign.trace.synth import SynthSpec, write_synthetic

    a = tmp_path_factory.mktemp("corpus") / "a"
    a.mkdir()
    spec = SynthSpec(kind="uniform", hidden=64, intermediate=256, layers=2, decode_tokens=10, sequences=4)
    write_synthetic(spec, a / "good.zarr", with_logits=True, chunk_tokens=16)
    write_synthetic(spec, a / "no_logits.zarr", chunk_tokens=16)
    (a / "link.zarr").symlink_to(a / "good.zarr")
    _damage(a, "lost_chunk.zarr", lambda p: (p / "masks/c/1/0/0").unlink())
    _damage(a, "changed_chunk.zarr", lambda p: shutil.copy(p / "masks/c/1/0/0", p / "masks/c/0/0/0"))
    _damage(a, "negative.zarr", _commit_edit(num_tokens=-3))
    _damage(a, "phantom.zarr", _commit_edit(num_tokens=80))
    _damage(a, "array_meta.zarr", lambda p: (p / "seq_id/zarr.json").write_text('{"zarr_format": 3,'))
    _damage(a, "commit.zarr", lambda p: (p / "commit.json").write_text("{not json"))
    (a / "file.txt").write_text("a plain file")
    (a / "existing.json").write_text("{}")
    (a / "empty_dir").mkdir()
    (a / "old_run").mkdir()
    (a / "old_run" / "metrics.jsonl").write_text("an earlier run\n")
    shutil.copy(REPO / "hwconfigs" / "bank64.yaml", a / "bank64.yaml")
    shutil.copy(REPO / "recipes" / "tiny.yaml", a / "tiny.yaml")
    (a / "binary.yaml").write_bytes(b"name: x\n\x00\x01\x02\xff")
    (a / "latin1.yaml").write_bytes("name: caf\u00e9\n".encode("latin-1"))
    hw = (a / "bank64.yaml").read_text()
    (a / "dup.yaml").write_text(hw.replace("  k: 16", "  k: 16\n  k: 8"))
    (a / "inf.yaml").write_text(hw.replace("frequency_hz: 1.0e9", "frequency_hz: .inf"))
    (a / "huge.yaml").write_text(hw.replace("num_banks: 64", "num_banks: 1.0e+30"))
    (a / "list.yaml").write_text("- a\n- b\n")
    recipe = (a / "tiny.yaml").read_text()
    (a / "dup_recipe.yaml").write_text(recipe.replace("lr: 3.0e-3", "lr: 3.0e-3\n    lr: 1.0e-3"))
    (a / "nan_recipe.yaml").write_text(recipe.replace("lr: 3.0e-3", "lr: .nan"))
    _checkpoint(a / "ckpt")
    _checkpoint(a / "ckpt_no_tokenizer", tokenizer=False)
    _checkpoint(a / "ckpt_truncated", cut=100)
    _checkpoint(a / "ckpt_garbled", garble=True)
    assert "frequency_hz: .inf" in (a / "inf.yaml").read_text()  # the replacements above took effect
    assert "1.0e+30" in (a / "huge.yaml").read_text() and "  k: 8" in (a / "dup.yaml").read_text()
    return a


def snapshot(*roots: Path) -> dict[str, tuple[str, str]]:
    """Every entry under `roots`: kind and, for files, a content hash (symlinks as their target)."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_symlink():
                out[str(p)] = ("link", str(p.readlink()))
            elif p.is_file():
                out[str(p)] = ("file", hashlib.sha1(p.read_bytes()).hexdigest())
            else:
                out[str(p)] = ("dir", "")
    return out


@pytest.mark.parametrize(("argv", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_touches_nothing(argv, needle, assets, tmp_path, capsys, monkeypatch):
    t = tmp_path / "t"
    t.mkdir()
    monkeypatch.chdir(t)  # a default output path (runs/...) would land here and be caught
    args = [part.format(a=assets, t=t) for part in argv.split()]
    before = snapshot(assets, tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code not in (0, None), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert needle.format(a=assets) in lines[0], lines[0]
    assert snapshot(assets, tmp_path) == before


def test_the_corpus_covers_every_command():
    """Each leaf command of the CLI has at least one bad-input case (a new command needs its own)."""
    import click

    from codesign.cli import cli

    def leaves(group, prefix=()):
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                yield from leaves(cmd, (*prefix, name))
            else:
                yield " ".join((*prefix, name))

    covered = {" ".join(c[1].split()[:2]) for c in CASES} | {c[1].split()[0] for c in CASES}
    missing = sorted(set(leaves(cli)) - covered - {"validate", "sweep"})
    assert len(CASES) >= 60 and not missing, missing
