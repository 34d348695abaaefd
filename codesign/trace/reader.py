"""Reading a routing-trace store: lazy, streaming, and only data that checks out.

The format and the commit protocol are described in store.py. The reader stops at the committed count and
refuses, in one line naming the store and the chunk, anything it cannot vouch for: a count that is negative
or does not match the checksums, a missing or empty committed chunk file (checked on open), garbled array
metadata, and a chunk whose data does not match its CRC-32 (checked on read, one chunk at a time; the last
chunk read is kept, so streaming in steps smaller than a chunk reads and checks each chunk once).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from codesign.errors import TraceError
from codesign.trace.store import (
    COMMIT_FILE,
    MAX_TOKENS,
    PER_TOKEN_FIELDS,
    SCHEMA_VERSION,
    TraceChunk,
    TraceMeta,
    _crc_rows,
    _zarr,
)


class TraceReader:
    """Lazy, streaming reader of a trace store; sees only committed tokens, and only data that checks out."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise TraceError(f"trace {self.path} does not exist")
        commit_path = self.path / COMMIT_FILE
        if not commit_path.is_file():
            raise TraceError(f"{self.path} is not a codesign trace store (no {COMMIT_FILE})")
        try:
            commit = json.loads(commit_path.read_text())
            num_tokens, chunk_tokens = commit["num_tokens"], commit["chunk_tokens"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise TraceError(f"{commit_path} is corrupt ({exc.__class__.__name__})") from None
        for key, value, low in (("num_tokens", num_tokens, 0), ("chunk_tokens", chunk_tokens, 1)):
            if type(value) is not int or not low <= value <= MAX_TOKENS:
                raise TraceError(f"{commit_path} is corrupt: {key} {value!r} is not an integer ≥ {low}")
        self.num_tokens, self.chunk_tokens = num_tokens, chunk_tokens
        zarr = _zarr()
        try:
            self._group = zarr.open_group(str(self.path), mode="r")
            raw_meta = dict(self._group.attrs["codesign_trace"])
        except Exception as exc:  # zarr raises several types for missing/garbled metadata
            raise TraceError(
                f"{self.path}: unreadable store metadata ({exc.__class__.__name__}: {_first_line(exc)})"
            ) from None
        if raw_meta.get("schema_version") != SCHEMA_VERSION:
            raise TraceError(
                f"{self.path}: trace schema version {raw_meta.get('schema_version')} is not supported "
                f"(this codesign reads version {SCHEMA_VERSION})"
            )
        try:
            self.meta = TraceMeta.from_dict(raw_meta)
        except TypeError as exc:
            raise TraceError(f"{self.path}: unreadable trace metadata ({_first_line(exc)})") from None
        self._arrays = self._open_arrays()
        self.has_logits = "logits" in self._arrays
        expected = (self.meta.layers, self.meta.mask_bytes_per_layer)
        if tuple(self._arrays["masks"].shape[1:]) != expected:
            raise TraceError(
                f"{self.path}: masks have shape {self._arrays['masks'].shape[1:]} per token but the metadata "
                f"says {expected} (layers, intermediate/8)"
            )
        self._crc = self._check_commit(commit.get("crc32"))
        self._check_chunk_files()
        self._cached: tuple[int, bool, dict[str, np.ndarray]] | None = None

    @property
    def verified(self) -> bool:
        """True when every chunk carries a checksum (stores written before checksums get weaker checks)."""
        return self._crc is not None

    def _open_arrays(self) -> dict:
        arrays = {}
        for name in ("masks", *PER_TOKEN_FIELDS, "logits"):
            if not (self.path / name / "zarr.json").is_file():
                continue
            try:  # one array at a time, so that a garbled zarr.json is named
                arrays[name] = self._group[name]
            except Exception as exc:  # JSON, KeyError, ValueError, ... from zarr's metadata parsing
                raise TraceError(
                    f"{self.path}: unreadable metadata of array {name} "
                    f"({exc.__class__.__name__}: {_first_line(exc)})"
                ) from None
        missing = {"masks", *PER_TOKEN_FIELDS} - set(arrays)
        if missing:
            raise TraceError(f"{self.path}: store is missing arrays {sorted(missing)}")
        for name, arr in arrays.items():
            if arr.chunks[0] != self.chunk_tokens or arr.shape[0] < self.num_tokens:
                raise TraceError(
                    f"{self.path}: array {name} (extent {arr.shape[0]}, chunks of {arr.chunks[0]} tokens) does "
                    f"not hold the {self.num_tokens} committed tokens in chunks of {self.chunk_tokens}"
                )
        return arrays

    @property
    def num_chunks(self) -> int:
        return -(-self.num_tokens // self.chunk_tokens)

    def _check_commit(self, crc) -> dict[str, list[int]] | None:
        """The per-chunk CRCs of commit.json, checked against the arrays and the committed count."""
        if crc is None:
            return None  # written before checksums: see the module docstring
        where = f"{self.path / COMMIT_FILE} is corrupt"
        if not isinstance(crc, dict) or set(crc) != set(self._arrays):
            raise TraceError(f"{where}: its checksums do not cover the arrays {sorted(self._arrays)}")
        for name, values in crc.items():
            if not isinstance(values, list) or not all(type(v) is int for v in values):
                raise TraceError(f"{where}: checksums of {name} are not a list of integers")
            if len(values) != self.num_chunks:
                raise TraceError(
                    f"{where}: {self.num_tokens} committed tokens make {self.num_chunks} chunks of "
                    f"{self.chunk_tokens}, but {name} has checksums for {len(values)}"
                )
        return crc

    def _check_chunk_files(self) -> None:
        """Every committed chunk's file exists and is not empty (zarr would read a missing one as zeros).
        Stores without checksums may legitimately lack all-zero per-token chunks; masks never are all zero."""
        for name in self._arrays if self._crc is not None else ("masks",):
            arr = self._arrays[name]
            try:
                encode = arr.metadata.chunk_key_encoding.encode_chunk_key
            except AttributeError:
                return  # not a layout this codesign wrote; the per-chunk checks on read still apply
            rest = (0,) * (len(arr.shape) - 1)
            for chunk in range(self.num_chunks):
                file = self.path / name / encode((chunk, *rest))
                if not file.is_file() or file.stat().st_size == 0:
                    raise TraceError(
                        f"{self.path}: chunk {chunk} of {name} ({self._span(chunk)}) is missing: "
                        f"{file.relative_to(self.path)} {'is empty' if file.is_file() else 'not found'}"
                    )

    def _span(self, chunk: int) -> str:
        first = chunk * self.chunk_tokens
        return f"tokens {first}..{min(first + self.chunk_tokens, self.num_tokens) - 1}"

    def __len__(self) -> int:
        return self.num_tokens

    def _chunk(self, chunk: int, with_logits: bool) -> dict[str, np.ndarray]:
        """The committed tokens of one store chunk, checked against its CRCs (the last one is kept)."""
        if self._cached is not None and self._cached[0] == chunk and (self._cached[1] or not with_logits):
            data = self._cached[2]
            return data if with_logits else {k: v for k, v in data.items() if k != "logits"}
        lo = chunk * self.chunk_tokens
        hi = min(lo + self.chunk_tokens, self.num_tokens)
        names = ["masks", *PER_TOKEN_FIELDS] + (["logits"] if with_logits else [])
        data = {}
        for name in names:
            try:
                data[name] = self._arrays[name][lo:hi]
            except Exception as exc:
                raise TraceError(
                    f"{self.path}: chunk {chunk} of {name} ({self._span(chunk)}) is unreadable (truncated "
                    f"or corrupt chunk: {exc.__class__.__name__})"
                ) from None
            if self._crc is not None and _crc_rows(data[name]) != self._crc[name][chunk]:
                raise TraceError(
                    f"{self.path}: chunk {chunk} of {name} ({self._span(chunk)}) does not match its "
                    "checksum (changed, truncated or replaced after it was committed)"
                )
        if self._crc is None:
            empty = ~data["masks"].any(axis=-1)  # (T, L): no kept channel at all, i.e. data never written
            if empty.any():
                t, layer = np.argwhere(empty)[0]
                raise TraceError(
                    f"{self.path}: chunk {chunk} of masks ({self._span(chunk)}): token {lo + t} layer {layer} "
                    "keeps no channel (missing or zeroed data)"
                )
        self._cached = (chunk, with_logits, data)
        return data

    def read(self, start: int, stop: int, *, with_logits: bool = True) -> TraceChunk:
        """Tokens [start, stop) as one chunk (clipped to the committed tokens)."""
        stop = min(stop, self.num_tokens)
        if not 0 <= start <= stop:
            raise TraceError(f"{self.path}: token range [{start}, {stop}) outside 0..{self.num_tokens}")
        with_logits = self.has_logits and with_logits
        C = self.chunk_tokens
        parts = []
        for chunk in range(start // C, -(-stop // C)):
            data, base = self._chunk(chunk, with_logits), chunk * C
            parts.append({k: v[max(start - base, 0) : stop - base] for k, v in data.items()})
        if len(parts) == 1:
            fields = parts[0]
        elif parts:
            fields = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        else:  # an empty range
            fields = {k: self._arrays[k][start:start] for k in ("masks", *PER_TOKEN_FIELDS)}
            fields["logits"] = self._arrays["logits"][start:start] if with_logits else None
        logits = fields.pop("logits", None)
        return TraceChunk(start=start, mask_bits=fields.pop("masks"), logits=logits, **fields)

    def iter_chunks(self, tokens: int | None = None, *, with_logits: bool = True) -> Iterator[TraceChunk]:
        """Stream the trace in chunks of `tokens` tokens (default: the store's chunk size)."""
        step = tokens or self.chunk_tokens
        if step <= 0:
            raise TraceError(f"chunk size must be positive, got {step}")
        for start in range(0, self.num_tokens, step):
            yield self.read(start, start + step, with_logits=with_logits)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
