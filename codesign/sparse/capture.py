"""Routing-trace capture: a sink fed by forward hooks on the model's SparseSwiGLU modules.

The model's forward knows nothing about tracing. `RoutingCapture.attach(model)` registers one forward hook per
sparse layer; the hook only keeps a reference to the module's `last_mask` (already a fresh, detached tensor)
while the capture is *armed* for the current forward. `disarm()` hands the references to a background thread,
which stacks, packs bits and appends them to the trace store, so the training step never waits on packing or
disk. Sampling (every N steps) is the caller's choice of when to arm.

Each armed forward becomes one *segment* of the store (phase train/eval/generate, step, split, first token,
token count, first sequence id); the segment table lands in the store's metadata (`meta.extra["segments"]`)
when the capture closes.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from codesign.errors import TraceError

_STOP = object()


@dataclass
class _Armed:
    token_ids: np.ndarray  # (B, T)
    positions: np.ndarray  # (B, T)
    seq_ids: np.ndarray  # (B,)
    is_decode: bool
    segment: dict
    masks: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> bool (B, T, I)
    logits: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> float (B, T, I)


class RoutingCapture:
    """Record kept-channel masks (and optionally predictor logits) of every sparse layer into a trace store.

    `meta` holds the TraceMeta fields other than the model shapes, which are read from the model on `attach`
    (model_name, source, dtype, extra...). The store is created at `attach`, so a path that exists fails
    before any training time is spent (OutputExistsError unless force).
    """

    def __init__(self, path: str | os.PathLike, *, with_logits: bool = False, force: bool = False, **meta):
        self.path, self.with_logits, self.force = path, with_logits, force
        self._meta_fields = meta
        self._writer = None
        self._decoder: dict | None = None
        self._hooks: list = []
        self._layers: list[int] = []
        self._armed: _Armed | None = None
        self._next_seq = 0
        self._tokens = 0
        self._segments: list[dict] = []
        self._queue: queue.Queue = queue.Queue(maxsize=8)  # bounded: a slow disk backs up, memory does not
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        # Cost accounting (bench/train_capture_overhead.py): seconds spent in arm/disarm on the training
        # thread, and CPU seconds the writer thread spent stacking, packing and appending.
        self.critical_s = 0.0
        self.writer_cpu_s = 0.0

    # ------------------------------------------------------------------ wiring

    def attach(self, model: nn.Module) -> None:
        """Hook every SparseSwiGLU of `model` (replacing earlier hooks); create the store on first attach."""
        from codesign.sparse.upcycle import sparse_modules

        self.detach()
        mods = sparse_modules(model)
        if not mods:
            raise TraceError("trace capture needs a sparse model (no SparseSwiGLU module found)")
        from codesign.trace.store import decoder_shape

        config = getattr(model, "config", None)
        self._decoder = decoder_shape(config) if config is not None else None
        self._layers = [m.layer_idx for m in mods]
        for m in mods:
            self._hooks.append(m.register_forward_hook(self._hook))
        if self._writer is None:
            self._writer = self._create_writer(mods)
            self._thread = threading.Thread(target=self._work, name="trace-capture", daemon=True)
            self._thread.start()

    def detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def _create_writer(self, mods):
        from codesign.trace.store import TraceMeta, TraceWriter

        first = mods[0]
        k_per_layer = {m.layer_idx: m.k for m in mods if m.k != first.k} or None
        fields = dict(self._meta_fields)
        meta = TraceMeta(
            hidden=first.hidden,
            intermediate=first.intermediate,
            layers=len(mods),
            bank_size=first.bank_size,
            k=first.k,
            k_per_layer=k_per_layer,
            predictor_rank=first.predictor.rank,
            **{"decoder": self._decoder, **fields},
        )
        return TraceWriter.create(self.path, meta, with_logits=self.with_logits, force=self.force)

    # ------------------------------------------------------------------ recording

    def arm(
        self,
        token_ids,
        *,
        phase: str,
        step: int | None = None,
        split: str | None = None,
        is_decode: bool = False,
        positions=None,
        seq_ids=None,
    ) -> None:
        """Record the next forward of the hooked model. token_ids (B, T); positions default 0..T-1;
        seq_ids (B,) default fresh ids (pass the same ids again to continue sequences while decoding)."""
        t0 = time.perf_counter()
        self._raise_worker_error()
        if self._writer is None:
            raise TraceError("trace capture is not attached to a sparse model")
        tok = np.asarray(token_ids.cpu() if torch.is_tensor(token_ids) else token_ids, dtype=np.int64)
        if tok.ndim == 1:
            tok = tok[None]
        b, t = tok.shape
        pos = (
            np.broadcast_to(np.arange(t), (b, t))
            if positions is None
            else np.asarray(positions).reshape(b, t)
        )
        if seq_ids is None:
            seq = np.arange(self._next_seq, self._next_seq + b)
            self._next_seq += b
        else:
            seq = np.asarray(seq_ids).reshape(b)
            self._next_seq = max(self._next_seq, int(seq.max()) + 1)
        segment = {
            "phase": phase,
            "step": step,
            "split": split,
            "decode": bool(is_decode),
            "first_token": self._tokens,
            "num_tokens": b * t,
            "first_seq_id": int(seq.min()),
        }
        self._tokens += b * t
        self._armed = _Armed(tok, pos, seq, is_decode, segment)
        self.critical_s += time.perf_counter() - t0

    def new_seq_ids(self, n: int) -> np.ndarray:
        """Reserve `n` fresh sequence ids (for decoding loops that arm one token at a time)."""
        ids = np.arange(self._next_seq, self._next_seq + n)
        self._next_seq += n
        return ids

    def _hook(self, module, inputs, output) -> None:
        armed = self._armed
        # First call per layer only: gradient checkpointing re-runs forwards during backward.
        if armed is None or module.layer_idx in armed.masks:
            return
        armed.masks[module.layer_idx] = module.last_mask
        if self.with_logits:
            if module.last_logits is None:
                raise TraceError(
                    f"layer {module.layer_idx} produced no predictor logits to record (mode {module.mode})"
                )
            armed.logits[module.layer_idx] = module.last_logits

    def disarm(self) -> None:
        """Hand what the armed forward recorded to the writer thread (returns at once)."""
        t0 = time.perf_counter()
        armed, self._armed = self._armed, None
        if armed is None:
            return
        missing = [layer for layer in self._layers if layer not in armed.masks]
        if missing:
            raise TraceError(f"armed forward did not run sparse layers {missing[:4]} (was the model called?)")
        self._segments.append(armed.segment)
        self._queue.put(armed)
        self.critical_s += time.perf_counter() - t0

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                if self._error is None:  # after a failure, drop items; the error surfaces on the next call
                    t0 = time.thread_time()
                    self._write(item)
                    self.writer_cpu_s += time.thread_time() - t0
            except BaseException as exc:  # surfaced to the training thread on the next arm/close
                self._error = exc
            finally:
                self._queue.task_done()

    def drain(self) -> None:
        """Block until every handed-over forward is packed and appended (benchmarks; close() implies it)."""
        self._queue.join()
        self._raise_worker_error()

    def _write(self, a: _Armed) -> None:
        from codesign.trace.store import pack_masks

        b, t = a.token_ids.shape
        # (L, B, T, I) -> (B*T, L, I): tokens in processing order, sequence-major within a batch.
        masks = torch.stack([a.masks[layer] for layer in self._layers]).reshape(len(self._layers), b * t, -1)
        bits = pack_masks(masks.transpose(0, 1).numpy())
        logits = None
        if self.with_logits:
            lg = torch.stack([a.logits[layer] for layer in self._layers]).reshape(
                len(self._layers), b * t, -1
            )
            logits = lg.transpose(0, 1).to(torch.float16).numpy()
        self._writer.append(
            bits,
            seq_id=np.repeat(a.seq_ids, t),
            position=a.positions.reshape(-1),
            token_id=a.token_ids.reshape(-1),
            is_decode=np.full(b * t, a.is_decode),
            logits=logits,
        )

    def _raise_worker_error(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise TraceError(f"trace capture to {self.path} failed: {err}") from err

    # ------------------------------------------------------------------ finishing

    @property
    def num_tokens(self) -> int:
        return self._tokens

    def close(self) -> None:
        """Wait for pending writes, commit the tail and store the segment table in the metadata."""
        self.detach()
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if self._writer is not None:
            self._writer.close()
            _store_segments(self.path, self._segments)
            self._writer = None
        self._raise_worker_error()

    def __enter__(self) -> RoutingCapture:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _store_segments(path, segments: list[dict]) -> None:
    """Add the segment table to the store's metadata (`extra.segments`), readable via TraceReader.meta."""
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    meta = dict(group.attrs["codesign_trace"])
    meta["extra"] = {**meta.get("extra", {}), "segments": segments}
    group.attrs["codesign_trace"] = meta
