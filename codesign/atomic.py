"""Atomic writes: the one mechanism behind every output that matters (traces, reports, checkpoints, results).

A file is written under a temporary name beside its destination, flushed to disk, then renamed into place, so
a reader sees the old file or the new one, never half of either, and a killed writer leaves no partial file.
Torch-free: the simulator and the trace store use it too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from codesign.errors import OutputExistsError


@contextmanager
def atomic_path(path: str | os.PathLike, *, force: bool = True, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces `path`, on an exception it is deleted.

    `force=False` refuses an existing `path` (OutputExistsError) before anything is written. `suffix` keeps an
    extension on the temporary name for writers that infer the format from it (matplotlib).
    """
    path = Path(path)
    if not force and path.exists():
        raise OutputExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}{suffix}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data is on disk before the rename makes it visible
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str, *, force: bool = True) -> Path:
    """Write `text` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(text)
    return Path(path)
