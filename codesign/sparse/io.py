"""Loading dense checkpoints (HF directory or the SmolLM2 GGUF) and saving / loading sparse ones.

A sparse checkpoint is an ordinary HF directory (safetensors + config.json + tokenizer) whose config.json
carries the sparsity config under `codesign_sparsity`; `load_sparse` rebuilds the architecture, upcycles it
with that config and loads the state dict strictly, so the round trip is exact.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from codesign.basemodels import smollm2_gguf_path
from codesign.errors import ModelError, OutputExistsError
from codesign.sparse.config import SparsityConfig
from codesign.sparse.upcycle import current_config, sparse_modules, upcycle

SMOLLM2 = "smollm2-135m"
SPARSITY_KEY = "codesign_sparsity"
# Files that carry a vocabulary; a tokenizer_config.json alone makes transformers build an empty tokenizer.
VOCAB_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")


def has_tokenizer(path: str | os.PathLike) -> bool:
    """True when the checkpoint directory holds a vocabulary (not just a tokenizer config)."""
    return any((Path(path) / name).is_file() for name in VOCAB_FILES)


def check_safetensors(file: Path) -> None:
    """Refuse a truncated or garbled .safetensors file from its header alone (no tensor is read).

    Layout: 8-byte little-endian header length N, N bytes of JSON, then the data; each tensor's
    `data_offsets` end must lie inside the data."""
    size = file.stat().st_size
    try:
        with file.open("rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n > size - 8:
                raise ValueError(f"header of {n} bytes")
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ModelError(f"{file}: not a valid safetensors file ({size} bytes; {exc})") from None
    if 8 + n + end > size:
        raise ModelError(f"{file}: truncated safetensors file ({size} bytes, its header needs {8 + n + end})")


def check_checkpoint_dir(path: str | os.PathLike, *, need_tokenizer: bool) -> None:
    """Cheap checks of an HF checkpoint directory before any model is built (weights, tokenizer)."""
    path = Path(path)
    for file in sorted(path.glob("*.safetensors")):
        check_safetensors(file)
    if need_tokenizer and not has_tokenizer(path):
        raise ModelError(
            f"{path} has no tokenizer files ({', '.join(VOCAB_FILES)}): cannot tokenise text with it"
        )


def load_dense(
    spec: str | os.PathLike, dtype: torch.dtype = torch.float32, *, need_tokenizer: bool = True
) -> tuple[nn.Module, object]:
    """(model, tokenizer) from a local HF directory, a .gguf file, or the name "smollm2-135m".

    A directory without vocabulary files is refused before loading when `need_tokenizer`, else its
    tokenizer is None (never the empty tokenizer transformers would build from a config alone)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if str(spec) == SMOLLM2:
        return _load_gguf(smollm2_gguf_path(), dtype)
    path = Path(spec)
    if not path.exists():
        raise ModelError(f"model path {path} does not exist")
    if path.suffix == ".gguf":
        return _load_gguf(path, dtype)
    if not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf")) if path.is_dir() else []
        if ggufs:
            return _load_gguf(ggufs[0], dtype)
        raise ModelError(f"{path} is not a Hugging Face checkpoint directory (no config.json)")
    check_checkpoint_dir(path, need_tokenizer=need_tokenizer)
    try:
        with _quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(path) if has_tokenizer(path) else None
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load {path}: {str(exc).splitlines()[0]}") from exc
    return model.eval(), tokenizer


def _load_gguf(path: Path, dtype: torch.dtype) -> tuple[nn.Module, object]:
    """GGUF -> plain HF model. The GGUF-loaded model carries a quantization config that makes
    save_pretrained refuse it, so its (dequantised) state dict moves into a freshly built plain model."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        with _quiet_transformers():
            loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load GGUF {path}: {str(exc).splitlines()[0]}") from exc
    cfg = loaded.config.to_dict()
    cfg.pop("quantization_config", None)
    model_type = cfg.pop("model_type")
    config = AutoConfig.for_model(model_type, **cfg)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.load_state_dict(loaded.state_dict())
    return model.eval(), tokenizer


@contextmanager
def _quiet_transformers():
    """Library functions never print: silence transformers' progress bars while it loads for us."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def save_sparse(model: nn.Module, out_dir: str | os.PathLike, force: bool = False, tokenizer=None) -> Path:
    """Write `model` (+ tokenizer) as a sparse HF checkpoint; atomic: built in a temp dir, then renamed."""
    out = Path(out_dir)
    if out.exists() and not force:
        raise OutputExistsError(out)
    cfg = current_config(model)  # before any write: ModelError if the model is not sparse
    if not out.parent.exists():
        raise ModelError(f"output parent directory {out.parent} does not exist")
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.config.update({SPARSITY_KEY: cfg.to_dict()})
        with _quiet_transformers():
            model.save_pretrained(tmp)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
        if out.exists():  # force: swap the old directory out only once the new one is complete
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_sparsity_config(model_dir: str | os.PathLike) -> SparsityConfig | None:
    """The sparsity config stored in a checkpoint's config.json, or None for a dense checkpoint."""
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        raise ModelError(f"{model_dir} is not a Hugging Face checkpoint directory (no config.json)")
    data = json.loads(config_path.read_text()).get(SPARSITY_KEY)
    return None if data is None else SparsityConfig.from_dict(data, where=f"{config_path} {SPARSITY_KEY}")


def load_sparse(model_dir: str | os.PathLike) -> tuple[nn.Module, object]:
    """(model, tokenizer) from a directory written by save_sparse; the state dict must match exactly."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(model_dir)
    if not path.exists():
        raise ModelError(f"model path {path} does not exist")
    cfg = read_sparsity_config(path)
    if cfg is None:
        raise ModelError(
            f"{path}/config.json has no {SPARSITY_KEY}: not a sparse checkpoint (use load_dense)"
        )
    check_checkpoint_dir(path, need_tokenizer=False)
    config = AutoConfig.from_pretrained(path)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(config, "dtype", None) or torch.float32)
    upcycle(model, cfg.replace(init="random"))  # structure only: every weight comes from the files below
    for m in sparse_modules(model):
        m.cfg = cfg  # the config as saved (init included), not the structure-only one
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ModelError(f"{path} holds no .safetensors weights")
    state = {}
    for f in files:
        state.update(load_file(f))
    result = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    missing = sorted(set(result.missing_keys) - tied)
    if missing or result.unexpected_keys:
        key = (missing or result.unexpected_keys)[0]
        raise ModelError(
            f"{path}: weights do not match the architecture ({'missing' if missing else 'unexpected'} {key})"
        )
    tokenizer = AutoTokenizer.from_pretrained(path) if has_tokenizer(path) else None
    return model.eval(), tokenizer


def load_model(spec: str | os.PathLike, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, object]:
    """A sparse checkpoint if `spec` is one, else a dense model (HF dir, GGUF, or "smollm2-135m")."""
    path = Path(spec)
    if (
        str(spec) != SMOLLM2
        and path.is_dir()
        and (path / "config.json").is_file()
        and read_sparsity_config(path)
    ):
        return load_sparse(path)
    return load_dense(spec, dtype=dtype)
