"""Reading hwconfigs: YAML → dotted overrides → validation, every problem one line naming file and key."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from codesign.errors import ConfigError
from codesign.sim.config.hwconfig import HwConfig
from codesign.sim.config.limits import check_memory, check_numbers
from codesign.sim.config.sections import KeyedError
from codesign.yamlio import load_yaml, loads_yaml

# PyYAML (YAML 1.1) reads `1e9` and `1.0e9` as strings (it wants `1.0e+9`); strict fields would reject them.
_SCIENTIFIC = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


def load_hwconfig(path: str | Path, overrides: Sequence[str] = ()) -> HwConfig:
    """Read, override and validate a hwconfig YAML. Every problem is a one-line ConfigError naming file and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: hwconfig not found")
    data = load_yaml(path, "hwconfig")  # binary, non-UTF-8, duplicate keys, inf/nan: one line each
    return parse_hwconfig(data, source=str(path), overrides=overrides)


def parse_hwconfig(data: Any, source: str = "<dict>", overrides: Sequence[str] = ()) -> HwConfig:
    """Validate an already parsed hwconfig mapping (plus overrides); `source` names it in errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: a hwconfig must be a YAML mapping of sections, got {type(data).__name__}"
        )
    raw = _deep_copy(data)
    for item in overrides:
        _apply_override(raw, item, source)
    raw = _deep_copy(raw)  # again: numbers in overrides are normalised the same way
    check_numbers(raw, source)  # inf, nan, absurd magnitudes: before pydantic, so any new field is covered
    try:
        cfg = HwConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    cfg._source = source
    cfg._raw = raw
    check_memory(cfg)  # refuse state that cannot fit rather than attempt a multi-PiB allocation
    return cfg


def _deep_copy(data: Any) -> Any:
    """A copy of parsed YAML with `1e9`-style strings read as the floats their author meant."""
    if isinstance(data, Mapping):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    if isinstance(data, str) and _SCIENTIFIC.match(data):
        return float(data.replace("_", ""))
    return data


def _apply_override(raw: dict, item: str, source: str) -> None:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{source}: {key or item}: override {item!r} is not of the form dotted.key=value")
    parts = key.split(".")
    _check_schema_path(parts, source)
    try:
        value = loads_yaml(text, source=f"--set {key}", finite=False) if text.strip() else None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {key}: cannot parse override value {text!r}") from exc
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {'.'.join(parts[: i + 1])}: is not a section (got {child!r})")
        node = child
    node[parts[-1]] = value


def _section_type(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside an annotation like `X`, `X | None`, or None when it is a leaf."""
    candidates = (
        get_args(annotation) if get_origin(annotation) in (Union, type(int | None)) else (annotation,)
    )
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
    return None


def _check_schema_path(parts: list[str], source: str) -> None:
    model: type[BaseModel] | None = HwConfig
    for i, part in enumerate(parts):
        where = ".".join(parts[: i + 1])
        if model is None:
            raise ConfigError(
                f"{source}: {where}: unknown key ({'.'.join(parts[:i])} is a value, not a section)"
            )
        field = model.model_fields.get(part)
        if field is None:
            valid = ", ".join(model.model_fields)
            raise ConfigError(f"{source}: {where}: unknown key; valid keys here: {valid}")
        model = _section_type(field.annotation)


def _describe(exc: ValidationError, source: str) -> str:
    """One line for the first pydantic error: file, dotted key, what is wrong, the bad value."""
    errors = exc.errors()
    err = errors[0]
    loc = [str(p) for p in err["loc"]]
    original = (err.get("ctx") or {}).get("error")
    if isinstance(original, KeyedError):
        loc.append(original.key)
    key = ".".join(loc) or "<top level>"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    if err["type"] == "extra_forbidden":
        parent: type[BaseModel] | None = HwConfig
        for part in loc[:-1]:
            field = parent.model_fields.get(part) if parent is not None else None
            parent = _section_type(field.annotation) if field is not None else None
        valid = f"; valid keys here: {', '.join(parent.model_fields)}" if parent is not None else ""
        return f"{source}: {key}: unknown key{valid}{more}"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{source}: {key}: required key is missing{more}"
    value = err.get("input")
    shown = "" if isinstance(value, Mapping) else f" (got {value!r})"
    return f"{source}: {key}: {message}{shown}{more}"
