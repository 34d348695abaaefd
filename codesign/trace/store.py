"""The routing-trace store: chunked, compressed, append-only, lazily read, crash-safe. This module holds the
format, the metadata and the writer; the reader is codesign/trace/reader.py (also importable from here).

A store is a zarr v3 group on disk holding, per token (in processing order):

    masks      uint8  (T, L, I/8)   kept-channel mask per layer, packed bits, little bit order
                                    (channel c of a layer is bit c % 8 of byte c // 8) — bank-size agnostic
    seq_id     int32  (T,)          which sequence the token belongs to
    position   int32  (T,)          position within its sequence
    token_id   int32  (T,)          vocabulary id
    is_decode  bool   (T,)          False = prefill, True = decode step
    logits     fp16   (T, L, I)     optional predictor logits, so other (B, k) can be re-applied offline

Crash safety without a home-made container: the arrays are created once with a fixed, very large token
extent (zarr stores no chunk that was never written), the writer buffers tokens and writes whole chunks,
and the number of committed tokens lives in `commit.json`, replaced atomically after the data is on disk.
Readers never look past the committed count, so a writer killed mid-chunk leaves data that is invisible,
and every earlier chunk readable. zarr's local store writes each chunk file to a temporary name and renames
it into place, so even the one chunk that is rewritten (a partial tail chunk after an explicit `flush()`)
is either the old or the new version, never a mix.

The store never hands out data it does not have: zarr reads a missing chunk file as zeros, so each commit
also records a CRC-32 per array per committed chunk (over the committed tokens of that chunk; a partial tail
chunk's CRC is extended as it fills), every chunk is written even when all zeros, and the reader checks on
open that the counts are sane and every committed chunk file exists, and on read that each chunk's data
matches its CRC. Stores written before checksums (no `crc32` in commit.json) are read with the checks that
remain possible: counts, mask chunk files present, no token without a kept channel.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from codesign.atomic import write_text_atomic
from codesign.errors import OutputExistsError, TraceError

SCHEMA_VERSION = 1
COMMIT_FILE = "commit.json"
# Token extent the arrays are created with; only written chunks take space, so this costs nothing.
MAX_TOKENS = 1 << 34
DEFAULT_CHUNK_TOKENS = 1024
PER_TOKEN_FIELDS = {"seq_id": np.int32, "position": np.int32, "token_id": np.int32, "is_decode": np.bool_}


DECODER_KEYS = ("heads", "kv_heads", "head_dim", "vocab")


def check_decoder_shape(decoder: dict, hidden: int) -> None:
    """A trace's decoder shape: positive heads, kv_heads, head_dim, vocab; kv_heads divides heads (GQA)."""
    if not isinstance(decoder, dict):
        raise TraceError(f"trace metadata: decoder must be a mapping, got {type(decoder).__name__}")
    missing = [k for k in DECODER_KEYS if k not in decoder]
    unknown = sorted(set(decoder) - set(DECODER_KEYS) - {"tied_embeddings"})
    if missing or unknown:
        raise TraceError(f"trace metadata: decoder needs {', '.join(DECODER_KEYS)}"
                         + (f" (missing {missing})" if missing else f" (unknown {unknown})"))  # fmt: skip
    for key in DECODER_KEYS:
        value = decoder[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise TraceError(f"trace metadata: decoder.{key} must be a positive integer, got {value!r}")
    if decoder["heads"] % decoder["kv_heads"]:
        raise TraceError(
            f"trace metadata: decoder.kv_heads {decoder['kv_heads']} does not divide heads {decoder['heads']}"
        )


def decoder_shape(config) -> dict | None:
    """The decoder shape of a Hugging Face model config (None when it does not say)."""
    heads = getattr(config, "num_attention_heads", None)
    vocab = getattr(config, "vocab_size", None)
    if not heads or not vocab:
        return None
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    tied = bool(getattr(config, "tie_word_embeddings", False))
    return {"heads": int(heads), "kv_heads": int(kv), "head_dim": int(head_dim), "vocab": int(vocab),
            "tied_embeddings": tied}  # fmt: skip


@dataclass(frozen=True)
class TraceMeta:
    """What a trace was recorded from; stored in the group's attributes and echoed into every report."""

    model_name: str
    hidden: int
    intermediate: int
    layers: int
    bank_size: int
    k: int
    dtype: str = "bfloat16"
    k_per_layer: dict[int, int] | None = None
    predictor_rank: int | None = None
    # The rest of the decoder (attention heads, KV heads, head_dim, vocab, tied embeddings): what the simulator
    # needs to cost a whole decoder step. None on traces recorded before it was stored (→ FFN scope only).
    decoder: dict | None = None
    source: str = "unknown"
    synthetic: bool = False
    extra: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    created_at: str = ""
    codesign_version: str = ""

    def __post_init__(self) -> None:
        for name in ("hidden", "intermediate", "layers", "bank_size", "k"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise TraceError(f"trace metadata: {name} must be a positive integer, got {value!r}")
        if self.intermediate % 8:
            raise TraceError(
                f"trace metadata: intermediate {self.intermediate} must be a multiple of 8 (packed bits)"
            )
        if self.intermediate % self.bank_size:
            raise TraceError(
                f"trace metadata: bank_size {self.bank_size} does not divide intermediate {self.intermediate}"
            )
        if self.k > self.bank_size:
            raise TraceError(f"trace metadata: k {self.k} exceeds bank_size {self.bank_size}")
        if self.decoder is not None:
            check_decoder_shape(self.decoder, self.hidden)

    @property
    def mask_bytes_per_layer(self) -> int:
        return self.intermediate // 8

    def k_of_layer(self, layer: int) -> int:
        return (self.k_per_layer or {}).get(layer, self.k)

    def to_dict(self) -> dict:
        d = asdict(self)
        # JSON object keys are strings; restored to int in from_dict.
        d["k_per_layer"] = (
            None if self.k_per_layer is None else {str(k): v for k, v in self.k_per_layer.items()}
        )
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TraceMeta:
        d = dict(d)
        if d.get("k_per_layer") is not None:
            d["k_per_layer"] = {int(k): int(v) for k, v in d["k_per_layer"].items()}
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise TraceError(
                f"trace metadata has unknown fields {sorted(unknown)} (written by a newer codesign?)"
            )
        return cls(**d)


@dataclass
class TraceChunk:
    """A run of consecutive tokens of a trace; `start` is the index of its first token."""

    start: int
    mask_bits: np.ndarray  # uint8 (T, L, I/8)
    seq_id: np.ndarray
    position: np.ndarray
    token_id: np.ndarray
    is_decode: np.ndarray
    logits: np.ndarray | None = None

    @property
    def num_tokens(self) -> int:
        return self.mask_bits.shape[0]

    def masks(self) -> np.ndarray:
        """Unpacked kept-channel masks, bool (T, L, I)."""
        return np.unpackbits(self.mask_bits, axis=-1, bitorder="little").astype(bool)

    def bank_words(self, bank_size: int = 64) -> np.ndarray:
        """One unsigned word per bank: uint64 (T, L, I/64) for B = 64 (bit j = channel bank·64 + j).

        Also B = 8, 16, 32 (uint8/16/32 words). Little-endian bytes + little bit order make this a view.
        """
        dtypes = {8: "<u1", 16: "<u2", 32: "<u4", 64: "<u8"}
        if bank_size not in dtypes:
            raise TraceError(f"bank_words needs a bank size of 8, 16, 32 or 64 channels, got {bank_size}")
        bits = np.ascontiguousarray(self.mask_bits)
        if bits.shape[-1] % (bank_size // 8):
            raise TraceError(f"intermediate {bits.shape[-1] * 8} is not a multiple of bank size {bank_size}")
        return bits.view(dtypes[bank_size])


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """bool (..., I) → uint8 (..., I/8), little bit order (the store's layout)."""
    return np.packbits(np.asarray(masks, dtype=bool), axis=-1, bitorder="little")


def _atomic_write_json(path: Path, obj: dict) -> None:
    write_text_atomic(path, json.dumps(obj))


def _crc_rows(arr: np.ndarray, value: int = 0) -> int:
    """CRC-32 of an array's bytes in C order, continuing from `value`: consecutive tokens are consecutive
    bytes, so the CRC of a chunk's first n tokens extends to its first n + m without rereading them."""
    return zlib.crc32(np.ascontiguousarray(arr).view(np.uint8).reshape(-1), value)


def _zarr():
    import warnings

    import zarr  # deferred: keeps `codesign --help` fast

    # commit.json sits beside the arrays on purpose; zarr notes it as a foreign object when listing members.
    warnings.filterwarnings("ignore", message=".*commit.json is not recognized", category=UserWarning)
    return zarr


class TraceWriter:
    """Appends tokens to a new store; whole chunks are committed as they fill, the tail on `close()`."""

    def __init__(self, path: Path, meta: TraceMeta, arrays: dict, with_logits: bool, chunk_tokens: int):
        self.path, self.meta, self._arrays = path, meta, arrays
        self.with_logits, self.chunk_tokens = with_logits, chunk_tokens
        self._committed = 0
        self._pending: list[dict[str, np.ndarray]] = []
        self._pending_tokens = 0
        self._closed = False
        names = ["masks", *PER_TOKEN_FIELDS] + (["logits"] if with_logits else [])
        self._crc: dict[str, list[int]] = {name: [] for name in names}  # per array, per committed chunk

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        meta: TraceMeta,
        *,
        with_logits: bool = False,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        force: bool = False,
    ) -> TraceWriter:
        """Create a new store at `path`; an existing path is refused unless `force`."""
        from codesign import __version__

        path = Path(path)
        if chunk_tokens <= 0:
            raise TraceError(f"chunk_tokens must be positive, got {chunk_tokens}")
        if path.exists():
            if not force:
                raise OutputExistsError(path)
            if not path.is_dir() or (not (path / COMMIT_FILE).exists() and any(path.iterdir())):
                raise TraceError(
                    f"{path} exists and is not a trace store; refusing to delete it even with --force"
                )
        # Metadata is validated before anything is deleted or created: a refusal leaves the disk as it was.
        meta = TraceMeta.from_dict(
            {
                **meta.to_dict(),
                "schema_version": SCHEMA_VERSION,
                "created_at": meta.created_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "codesign_version": __version__,
            }
        )
        zarr = _zarr()
        if path.exists():
            shutil.rmtree(path)
        group = zarr.open_group(str(path), mode="w-")
        group.attrs["codesign_trace"] = meta.to_dict()
        L, nbytes = meta.layers, meta.mask_bytes_per_layer
        # Every chunk is written, even an all-zero one (zarr skips those by default), so that a missing
        # chunk file always means lost data and the reader can check for it on open.
        config = {"write_empty_chunks": True}  # a runtime setting: the writer keeps these array handles
        arrays = {}
        arrays["masks"] = group.create_array(
            "masks",
            shape=(MAX_TOKENS, L, nbytes),
            chunks=(chunk_tokens, L, nbytes),
            dtype="uint8",
            config=config,
        )
        for name, dtype in PER_TOKEN_FIELDS.items():
            arrays[name] = group.create_array(
                name, shape=(MAX_TOKENS,), chunks=(chunk_tokens,), dtype=dtype, config=config
            )
        if with_logits:
            arrays["logits"] = group.create_array(
                "logits",
                shape=(MAX_TOKENS, L, meta.intermediate),
                chunks=(chunk_tokens, L, meta.intermediate),
                dtype="float16",
                config=config,
            )
        writer = cls(path, meta, arrays, with_logits, chunk_tokens)
        writer._commit()
        return writer

    @property
    def num_tokens(self) -> int:
        """Tokens appended so far (committed + buffered)."""
        return self._committed + self._pending_tokens

    def append(
        self,
        masks: np.ndarray,
        *,
        seq_id,
        position,
        token_id,
        is_decode,
        logits: np.ndarray | None = None,
    ) -> None:
        """Append T tokens: masks bool (T, L, I) or packed uint8 (T, L, I/8); per-token arrays of length T."""
        if self._closed:
            raise TraceError(f"{self.path}: append after close")
        masks = np.asarray(masks)
        L, I = self.meta.layers, self.meta.intermediate
        if masks.dtype == np.bool_:
            if masks.ndim != 3 or masks.shape[1:] != (L, I):
                raise TraceError(f"masks must be (T, {L}, {I}) bool, got {masks.shape}")
            bits = pack_masks(masks)
        elif masks.dtype == np.uint8 and masks.ndim == 3 and masks.shape[1:] == (L, I // 8):
            bits = masks
        else:
            raise TraceError(
                f"masks must be bool (T, {L}, {I}) or packed uint8 (T, {L}, {I // 8}), got {masks.dtype} {masks.shape}"
            )
        T = bits.shape[0]
        rec = {"masks": bits}
        for name, dtype in PER_TOKEN_FIELDS.items():
            arr = np.broadcast_to(
                np.asarray(
                    {"seq_id": seq_id, "position": position, "token_id": token_id, "is_decode": is_decode}[
                        name
                    ]
                ),
                (T,),
            ).astype(dtype)
            rec[name] = arr
        if self.with_logits:
            if logits is None or np.shape(logits) != (T, L, I):
                raise TraceError(f"this store records logits: pass float16 logits of shape ({T}, {L}, {I})")
            rec["logits"] = np.asarray(logits, dtype=np.float16)
        elif logits is not None:
            raise TraceError("logits given but the store was created with with_logits=False")
        self._pending.append(rec)
        self._pending_tokens += T
        while self._pending_tokens >= self.chunk_tokens:
            self._write(self._take(self.chunk_tokens))

    def _take(self, n: int) -> dict[str, np.ndarray]:
        """Pop the first n buffered tokens as one block."""
        block = {name: np.concatenate([r[name] for r in self._pending]) for name in self._pending[0]}
        head = {name: a[:n] for name, a in block.items()}
        rest = {name: a[n:] for name, a in block.items()}
        self._pending = [rest] if len(rest["masks"]) else []
        self._pending_tokens -= n
        return head

    def _write(self, block: dict[str, np.ndarray]) -> None:
        start, n = self._committed, len(block["masks"])
        for name, arr in block.items():
            self._arrays[name][start : start + n] = arr
            self._extend_crc(name, arr, start)
        self._committed += n
        self._commit()  # only now do readers see these tokens

    def _extend_crc(self, name: str, arr: np.ndarray, start: int) -> None:
        """Fold tokens [start, start + len(arr)) into the CRCs of the chunks they fall in."""
        crcs, pos = self._crc[name], 0
        while pos < len(arr):
            chunk, offset = divmod(start + pos, self.chunk_tokens)
            take = min(self.chunk_tokens - offset, len(arr) - pos)
            if offset:  # the partial tail chunk of an earlier flush() grows
                crcs[chunk] = _crc_rows(arr[pos : pos + take], crcs[chunk])
            else:
                crcs.append(_crc_rows(arr[pos : pos + take]))
            pos += take

    def _commit(self) -> None:
        record = {"num_tokens": self._committed, "chunk_tokens": self.chunk_tokens, "crc32": self._crc}
        _atomic_write_json(self.path / COMMIT_FILE, record)

    def flush(self) -> None:
        """Commit buffered tokens now (a partial tail chunk; later appends complete it)."""
        if self._pending_tokens:
            self._write(self._take(self._pending_tokens))

    def close(self) -> None:
        if not self._closed:
            self.flush()
            self._closed = True

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # On an exception, commit what was appended: a crash must not lose recorded routing.
        self.close()


def __getattr__(name: str):
    """`from codesign.trace.store import TraceReader` keeps working: the reader lives in reader.py."""
    if name == "TraceReader":
        from codesign.trace.reader import TraceReader

        return TraceReader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
