"""The one strict YAML reader behind every YAML file codesign reads (hwconfigs, recipes, override values).

PyYAML alone accepts what a config must not: a binary or non-UTF-8 file (read as mojibake or a traceback),
a key written twice (the last one silently wins), `.inf` / `.nan` (every cost or size becomes meaningless),
and it reads `1e9` as a string (YAML 1.1 wants `1.0e+9`). Here each is one ConfigError naming the file, the
line or the dotted key, and `1e9` is the float its author meant. Torch-free and pydantic-free.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from codesign.errors import ConfigError


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reads `1e-4` / `1e9` as floats."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[object, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: SafeLoader reports it below
                    continue
                line = key_node.start_mark.line + 1
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {first})", key_node.start_mark
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml_text(path: str | os.PathLike, what: str = "YAML file") -> str:
    """The text of a YAML file: refused if missing, binary or not UTF-8."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} not found: {p}")
    data = p.read_bytes()
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ConfigError(f"{p}: binary file (NUL byte at offset {nul}), not a {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{p}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def loads_yaml(text: str, source: str = "<yaml>", *, finite: bool = True) -> Any:
    """Parse YAML text strictly (see module docstring); `source` names it in errors. `finite=False` leaves
    inf / nan to a caller that checks them with better context (a dotted override key)."""
    try:
        data = yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: not valid YAML{line}: {problem}") from None
    bad = _first_non_finite(data) if finite else None
    if bad is not None:
        key, value = bad
        raise ConfigError(f"{source}: {key or '<top level>'}: {value} is not a finite number")
    return data


def load_yaml(path: str | os.PathLike, what: str = "YAML file") -> Any:
    """Read and parse a YAML file strictly; every problem is one ConfigError naming the file."""
    return loads_yaml(read_yaml_text(path, what), source=str(path))


def _first_non_finite(data: Any, where: str = "") -> tuple[str, float] | None:
    """(dotted key, value) of the first inf / nan in parsed YAML, or None."""
    if isinstance(data, float) and not math.isfinite(data):
        return where, data
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        sub = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else str(key)
        found = _first_non_finite(value, sub)
        if found is not None:
            return found
    return None
