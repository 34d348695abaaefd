"""Click parameter types shared by every command: bounded integers, finite floats, writable output paths.

Each refuses bad input while the command line is parsed, before any work: an integer beyond int64 would
overflow numpy / numba / torch silently or with a traceback; `inf` / `nan` make every derived number
meaningless; an output path under an existing *file* only fails at the end of a long run.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class Int64(click.ParamType):
    """An integer that fits a signed 64-bit word."""

    name = "integer"

    def convert(self, value, param, ctx):
        number = click.INT.convert(value, param, ctx)
        if not INT64_MIN <= number <= INT64_MAX:
            self.fail(f"{value} does not fit a 64-bit integer", param, ctx)
        return number


class FiniteFloat(click.ParamType):
    """A float that is neither inf nor nan."""

    name = "float"

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite number", param, ctx)
        return number


INT64 = Int64()
FINITE_FLOAT = FiniteFloat()


class Int64Range(click.IntRange):
    """An integer range whose open ends are the int64 limits; errors show only the bounds the command set."""

    def __init__(self, min: int | None = None, max: int | None = None, **kwargs):
        self._shown = (min, max)
        super().__init__(INT64_MIN if min is None else min, INT64_MAX if max is None else max, **kwargs)

    def convert(self, value, param, ctx):
        return super().convert(INT64.convert(value, param, ctx), param, ctx)

    def _describe_range(self) -> str:
        low, high = self._shown
        if high is None:
            return f"x{'>' if self.min_open else '>='}{low}"
        if low is None:
            return f"x{'<' if self.max_open else '<='}{high}"
        return super()._describe_range()


def unwritable_reason(path: str | Path) -> str | None:
    """Why `path` cannot be created as an output (an ancestor is a file), or None if it can."""
    for parent in Path(path).absolute().parents:
        if parent.exists():
            return None if parent.is_dir() else f"{parent} is a file, not a directory"
        if parent.is_symlink():  # a dangling link: mkdir would fail on it
            return f"{parent} is a broken symbolic link"
    return None


class OutputPath(click.Path):
    """A path the command will write: refused at parse time when it cannot be created."""

    def __init__(self, *, file_okay: bool = True, dir_okay: bool = True, path_type=None):
        super().__init__(file_okay=file_okay, dir_okay=dir_okay, path_type=path_type)

    def convert(self, value, param, ctx):
        path = super().convert(value, param, ctx)
        reason = unwritable_reason(path)
        if reason is not None:
            self.fail(f"cannot write {value}: {reason}", param, ctx)
        return path


def bound_numbers(command: click.Command) -> None:
    """Give every plain int / float parameter of `command` (and its sub-commands) the bounded types above.

    Applied once to the whole CLI in codesign/cli/__init__.py, so a command added later is covered too.
    """
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            bound_numbers(sub)
    for param in command.params:
        if type(param.type) is click.types.IntParamType:
            param.type = INT64
        elif type(param.type) is click.types.FloatParamType:
            param.type = FINITE_FLOAT
        elif type(param.type) is click.IntRange and None in (param.type.min, param.type.max):
            t = param.type  # an open end is bounded by int64
            param.type = Int64Range(t.min, t.max, min_open=t.min_open, max_open=t.max_open, clamp=t.clamp)


def at_least(low: int) -> Int64Range:
    """An integer ≥ `low` that fits int64."""
    return Int64Range(low)
