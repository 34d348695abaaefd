"""The whole simulation job: a hwconfig and a trace store → the sparse run, the dense baseline on the same
hardware and, where the trace allows, global top-k at the same density (engine.simulate_variant for each).

How the routing of each variant is obtained:
  masks       the trace's masks, when it was recorded at the config's (B, k);
  reselect    bank top-k re-selected from the trace's logits at the config's (B, k);
  regenerate  a synthetic trace regenerated from its spec and seed at the config's (B, k);
  dense       every channel (the dense baseline, or a config with k = B);
  global_topk top k·I/B per layer from the logits (or the regenerated synthetic scores).
A trace recorded at another (B, k) with neither logits nor a synthetic spec is refused with one line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codesign.sim.engine import (
    DEFAULT_PREFILL_CHUNK_TOKENS,
    Block,
    SimParams,
    VariantResult,
    VariantRun,
    decode_concurrency,
    dense_words,
    profile_pinned,
    union_density_vs_batch,
    words_from_bits,
    words_from_masks,
)


# ---- the whole job: a hwconfig and a trace store → sparse, dense and global top-k variants ---------------
@dataclass
class SimulationResult:
    sparse: VariantResult
    dense: VariantResult
    global_topk: VariantResult | None
    global_topk_note: str
    batch: int
    synthetic: bool
    trace_info: dict
    hwconfig: dict
    model_fit: dict
    union_density: dict
    peak_dram_bandwidth_bytes_per_s: float
    notes: list[str]
    scope: str = "ffn"


def params_from_config(
    cfg, hidden: int, intermediate: int, layers: int, predictor_rank: int | None, decoder: dict | None = None
) -> SimParams:
    """The engine's parameters for a model on `cfg`. scope "model" needs the decoder shape (heads, kv_heads,
    head_dim, vocab); without it the result has FFN scope (`scope_of` says why)."""
    fit = cfg.check_model(
        hidden, intermediate, layers, cfg.compute.dtype_bytes
    )  # ConfigError if it cannot run
    sram, compute = cfg.sram, cfg.compute
    params = SimParams(
        hidden=hidden, intermediate=intermediate, layers=layers, bank_size=cfg.sparsity.bank_size,
        k=cfg.sparsity.k, dtype_bytes=fit.dtype_bytes, num_sram_banks=sram.num_banks,
        bank_size_bytes=sram.bank_size_bytes, line_bytes=sram.line_bytes, ports_per_bank=sram.ports_per_bank,
        sram_line_interval_cycles=cfg.sram_line_interval_cycles, macs_per_cycle=compute.macs_per_cycle,
        topk_cycles_per_bank=compute.topk_cycles_per_bank, frequency_hz=cfg.clock.frequency_hz,
        execution=cfg.sparsity.execution, residency=sram.residency, double_buffer=sram.double_buffer,
        predictor_rank=predictor_rank or cfg.predictor.rank, sram_read_energy_pj=sram.read_energy_pj,
        sram_write_energy_pj=sram.write_energy_pj, dram_energy_pj_per_bit=cfg.dram.read_energy_pj_per_bit,
        mac_energy_pj=compute.mac_energy_pj, leakage_mw_per_bank=sram.leakage_mw_per_bank,
        area_mm2_per_bank=sram.area_mm2_per_bank, placement=sram.placement, fill_bypass=sram.fill_bypass,
        dram_activation_energy_pj=cfg.dram.activation_energy_pj,
        topk_energy_pj_per_compare=compute.topk_energy_pj_per_compare,
        vector_energy_pj_per_op=compute.vector_energy_pj_per_op,
        predictor_resident=cfg.predictor.resident,
        **_decoder_fields(cfg.scope, decoder),
    )  # fmt: skip
    _check_predictor_fits(cfg, params)
    return params


def _decoder_fields(scope: str, decoder: dict | None) -> dict:
    if scope != "model" or decoder is None:
        return {"scope": "ffn"}
    return {"scope": "model", "heads": decoder["heads"], "kv_heads": decoder["kv_heads"],
            "head_dim": decoder["head_dim"], "vocab": decoder["vocab"],
            "tied_embeddings": bool(decoder.get("tied_embeddings", False))}  # fmt: skip


def _check_predictor_fits(cfg, p: SimParams) -> None:
    from codesign.errors import ConfigError

    if p.predictor_resident and p.sparse and p.predictor_reserved_bytes_per_bank > p.bank_size_bytes:
        total = p.predictor_bytes_per_layer * p.layers
        raise ConfigError(
            f"{cfg.source}: predictor.resident: the predictors need {total:,} bytes "
            f"({p.layers} layers × {p.predictor_bytes_per_layer:,}) but the SRAM holds "
            f"{p.bank_size_bytes * p.num_sram_banks:,}; set predictor.resident: false (streamed from DRAM)"
        )


def trace_blocks(reader, p: SimParams, mode: str) -> Iterator[Block]:
    """Blocks of a trace store: its masks, masks re-selected from its logits (bank or global), or dense."""
    from codesign.trace.rebank import reselect

    for chunk in reader.iter_chunks(with_logits=mode in ("reselect", "global_topk")):
        T = chunk.num_tokens
        if mode == "masks":
            words = words_from_bits(chunk.mask_bits, p.bank_size)
        elif mode == "dense":
            words = dense_words(T, p.layers, p.num_model_banks, p.bank_size)
        else:
            masks = reselect(chunk.logits, p.bank_size, p.k, global_topk=mode == "global_topk")
            words = words_from_masks(masks, p.bank_size)
        yield Block(words, np.asarray(chunk.is_decode, dtype=bool), np.asarray(chunk.seq_id), chunk.position)


def synthetic_blocks(spec, tokens: int, p: SimParams, global_topk: bool) -> Iterator[Block]:
    """A synthetic trace regenerated from its spec (same seed) at the config's (B, k): bank top-k masks as
    the generator draws them, or global top-k at the same density over the same scores."""
    for words in _regenerated(spec, tokens, p, sparse=not global_topk, glob=global_topk):
        yield words["global_topk" if global_topk else "sparse"]


def _regenerated(spec, tokens: int, p: SimParams, *, sparse: bool, glob: bool) -> Iterator[dict[str, Block]]:
    """One pass of a regenerated synthetic trace: its scores drawn once, bank and global masks from them."""
    from codesign.trace.synth import iter_synthetic

    done = 0
    for block in iter_synthetic(spec, with_logits=False, with_global=glob):
        n = min(len(block["is_decode"]), tokens - done)
        if n <= 0:
            return
        keys = block["is_decode"][:n], block["seq_id"][:n], block["position"][:n]
        out = {}
        if sparse:
            out["sparse"] = Block(words_from_masks(block["masks"][:n], p.bank_size), *keys)
        if glob:
            out["global_topk"] = Block(words_from_masks(block["global_masks"][:n], p.bank_size), *keys)
        yield out
        done += n


def _shared_pass(reader, p: SimParams, sparse_mode: str, global_mode: str | None, spec, global_reader):
    """One pass over the trace yielding {variant: Block} for the variants that need the trace's routing.

    sparse_mode: masks | reselect | regenerate | dense (no block: the dense run needs no routing);
    global_mode: logits | store (the synthetic trace's global_topk sub-store) | regenerate | None.
    Each chunk is read (or each score drawn) once for all variants.
    """
    from codesign.trace.rebank import reselect

    if sparse_mode == "regenerate" or global_mode == "regenerate":
        yield from _regenerated(spec, reader.num_tokens, p, sparse=sparse_mode != "dense",
                                glob=global_mode is not None)  # fmt: skip
        return
    if sparse_mode == "dense" and global_mode is None:  # nothing to read: only the chunk boundaries
        for start in range(0, reader.num_tokens, reader.chunk_tokens):
            yield {"_keys": reader.read(start, start + reader.chunk_tokens, with_logits=False)}
        return
    step = reader.chunk_tokens
    logits = sparse_mode == "reselect" or global_mode == "logits"
    others = global_reader.iter_chunks(step, with_logits=False) if global_mode == "store" else None
    for chunk in reader.iter_chunks(step, with_logits=logits):
        keys = np.asarray(chunk.is_decode, dtype=bool), np.asarray(chunk.seq_id), np.asarray(chunk.position)
        out = {"_keys": chunk}
        if sparse_mode == "masks":
            out["sparse"] = Block(words_from_bits(chunk.mask_bits, p.bank_size), *keys)
        elif sparse_mode == "reselect":
            out["sparse"] = Block(
                words_from_masks(reselect(chunk.logits, p.bank_size, p.k), p.bank_size), *keys
            )
        if global_mode == "logits":
            masks = reselect(chunk.logits, p.bank_size, p.k, global_topk=True)
            out["global_topk"] = Block(words_from_masks(masks, p.bank_size), *keys)
        elif global_mode == "store":
            out["global_topk"] = Block(words_from_bits(next(others).mask_bits, p.bank_size), *keys)
        yield out


def _token_range(blocks: Iterator[Block], lo: int, hi: int) -> Iterator[Block]:
    """The parts of consecutive blocks that hold tokens [lo, hi) of the trace."""
    done = 0
    for b in blocks:
        n = len(b.words)
        if done + n > lo and done < hi:
            yield b.slice(max(lo - done, 0), min(hi - done, n))
        done += n
        if done >= hi:
            return


def _global_store(trace_path, reader):
    """The synthetic trace's global top-k sub-store (write_synthetic), when it matches the trace."""
    from codesign.trace.store import TraceReader
    from codesign.trace.synth import GLOBAL_TOPK_STORE

    path = Path(trace_path) / GLOBAL_TOPK_STORE
    if not (path / "commit.json").is_file():
        return None
    g = TraceReader(path)
    same = (g.num_tokens, g.chunk_tokens, g.meta.bank_size, g.meta.k) == (
        reader.num_tokens, reader.chunk_tokens, reader.meta.bank_size, reader.meta.k)  # fmt: skip
    return g if same else None


def check_batch(reader, batch: int) -> int:
    """Refuse a batch larger than the number of sequences the trace decodes together (one line, TraceError).

    Reads chunks until some decode step holds `batch` sequences (usually the first chunk); returns the most
    sequences seen decoding together.
    """
    from codesign.errors import TraceError

    is_decode, seq_id, most = [], [], 0
    for chunk in reader.iter_chunks(with_logits=False):
        is_decode.append(np.asarray(chunk.is_decode, dtype=bool))
        seq_id.append(np.asarray(chunk.seq_id))
        most = decode_concurrency(np.concatenate(is_decode), np.concatenate(seq_id))
        if most >= batch:
            return most
    if batch > 1:
        raise TraceError(
            f"{reader.path}: --batch {batch} needs {batch} sequences decoding at the same step, but the trace "
            f"decodes at most {most} together (a batch is tokens of distinct sequences at one decode step); "
            f"use --batch {max(most, 1)} or a trace recorded with more concurrent prompts"
        )
    return most


def simulate(cfg, trace_path, *, batch: int | None = None, progress: Callable[[int, int], None] | None = None,
             prefill_chunk_tokens: int = DEFAULT_PREFILL_CHUNK_TOKENS) -> SimulationResult:  # fmt: skip
    """Replay the trace at `trace_path` on `cfg` (a HwConfig), with its dense and global top-k baselines.

    All variants share one pass over the trace. progress(advance_tokens, total_tokens) is called as tokens
    are simulated (for a progress bar).
    """
    from codesign.errors import TraceError
    from codesign.sim.dram import build_dram
    from codesign.trace.store import TraceReader

    reader = TraceReader(trace_path)
    meta = reader.meta
    if reader.num_tokens == 0:
        raise TraceError(f"{trace_path}: the trace holds no committed tokens")
    batch = int(batch or cfg.batch)
    if batch <= 0:
        raise TraceError(f"batch must be a positive number of decode tokens per step, got {batch}")
    p = params_from_config(
        cfg, meta.hidden, meta.intermediate, meta.layers, meta.predictor_rank, meta.decoder
    )
    scope_note = scope_of(cfg.scope, meta.decoder)
    concurrency = check_batch(reader, batch)
    dense_p = p.with_k(p.bank_size)
    trace_ks = set((meta.k_per_layer or {}).values()) | {meta.k}
    # a per-layer-k trace (eval/layer_k.py) replays its masks as recorded when its nominal k is the config's:
    # each layer's union, misses and MACs come from its own masks, so per-layer k is costed as recorded
    per_layer_k = bool(meta.k_per_layer) and meta.k == p.k
    same_banks = meta.bank_size == p.bank_size and (trace_ks == {p.k} or per_layer_k)
    spec = None  # a synthetic trace can be regenerated at any (B, k) from its spec and seed
    if meta.synthetic and "synth" in meta.extra:
        from codesign.trace.synth import SynthSpec

        spec = SynthSpec(**{**meta.extra["synth"], "bank_size": p.bank_size, "k": p.k})
    if not p.sparse:
        mode = "dense"
    elif same_banks:
        mode = "masks"
    elif reader.has_logits:
        mode = "reselect"
    elif spec is not None:
        mode = "regenerate"
    else:
        raise TraceError(
            f"{trace_path}: trace was recorded at B={meta.bank_size}, k={sorted(trace_ks)} but the hwconfig "
            f"asks for B={p.bank_size}, k={p.k}, and the trace stores no logits to re-select from"
        )
    global_reader = (
        _global_store(trace_path, reader) if (p.sparse and same_banks and spec is not None) else None
    )
    if not p.sparse:
        global_mode, global_note = None, "not simulated: the config is dense"
    elif reader.has_logits:
        global_mode, global_note = (
            "logits",
            "global top-k at the same density, re-selected from the trace's logits",
        )
    elif global_reader is not None:
        global_mode = "store"
        global_note = (
            "global top-k at the same density, selected at synthesis from the synthetic trace's scores"
        )
    elif spec is not None:
        global_mode = "regenerate"
        global_note = (
            "global top-k at the same density over the synthetic trace's regenerated scores (same seed)"
        )
    else:
        global_mode = None
        global_note = "not simulated: the trace has no logits and is not a regenerable synthetic trace"
    dram = build_dram(cfg.dram)
    sources = lambda: _shared_pass(reader, p, mode, global_mode, spec, global_reader)  # noqa: E731

    mid = reader.num_tokens // 2  # pinned_hot: each half is replayed with the set profiled on the other

    def profile(params, name, lo, hi):
        """pinned_hot's set for variant `name`, profiled on tokens [lo, hi) only (a pass of its own)."""
        if name == "dense":  # every channel used equally: the profile is the same on any tokens
            return profile_pinned(params, [Block(dense_words(1, p.layers, p.num_model_banks, p.bank_size),
                                                 np.ones(1, bool), np.zeros(1, np.int32))])  # fmt: skip
        return profile_pinned(params, _token_range((b[name] for b in sources()), lo, hi))

    def run(name, params):
        pinned = for_second = None
        if params.residency == "pinned_hot":  # the first half replayed with the second's profile, and back
            pinned, for_second = profile(params, name, mid, reader.num_tokens), profile(params, name, 0, mid)
        r = VariantRun(name, params, dram, batch, pinned=pinned, prefill_chunk_tokens=prefill_chunk_tokens)
        return r, for_second

    runs = {"dense": run("dense", dense_p)}
    if p.sparse:
        runs["sparse"] = run("sparse", p)
    if global_mode is not None:
        runs["global_topk"] = run("global_topk", p)
    first = None
    done = 0
    dense_cache: dict[int, np.ndarray] = {}
    for blocks in sources():
        keys = blocks.pop("_keys", None)
        any_block = next(iter(blocks.values()), None)
        is_decode = np.asarray(keys.is_decode, dtype=bool) if keys is not None else any_block.is_decode
        seq_id = np.asarray(keys.seq_id) if keys is not None else any_block.seq_id
        position = np.asarray(keys.position) if keys is not None else any_block.position
        T = len(is_decode)
        if T not in dense_cache:  # the same all-ones words for every chunk of this length
            dense_cache = {T: dense_words(T, p.layers, p.num_model_banks, p.bank_size)}
        blocks["dense"] = Block(dense_cache[T], is_decode, seq_id, position)
        if first is None:
            first = blocks.get("sparse", blocks["dense"])
        cut = mid - done if done < mid <= done + T else None  # this chunk holds the half-way token
        for name, (r, second) in runs.items():
            b = blocks[name]
            if cut is None or second is None:
                r.feed(b)
                continue
            r.feed(b.slice(0, cut))
            r.set_pinned(second)  # from here on, replay with the set profiled on the first half
            r.feed(b.slice(cut, T))
        done += T
        if progress is not None:
            progress(T, reader.num_tokens)
    runs = {name: r for name, (r, _) in runs.items()}
    results = {name: r.finish() for name, r in runs.items()}
    dense = results["dense"]
    sparse = results.get("sparse", dense)
    glob = results.get("global_topk")
    hw = cfg.resolved()
    hw["batch"] = batch
    return SimulationResult(
        sparse=sparse, dense=dense, global_topk=glob, global_topk_note=global_note, batch=batch,
        synthetic=bool(meta.synthetic),
        trace_info={"path": str(trace_path), "tokens": reader.num_tokens, "has_logits": reader.has_logits,
                    "decode_concurrency_seen": concurrency,
                    "masks": {"masks": "as recorded", "reselect": "re-selected from logits at the config's (B, k)",
                              "dense": "all channels (dense config)",
                              "regenerate": "synthetic, regenerated from its spec and seed at the config's (B, k)"}[mode], **meta.to_dict()},
        hwconfig=hw, model_fit=cfg.check_model(meta.hidden, meta.intermediate, meta.layers).as_dict(),
        union_density=union_density_vs_batch([first], p.intermediate),
        peak_dram_bandwidth_bytes_per_s=cfg.peak_dram_bandwidth_bytes_per_s,
        notes=NOTES + ([f"per-layer k as recorded in the trace (layer: k): {meta.k_per_layer}; other layers "
                        f"k = {meta.k}"] if per_layer_k and mode == "masks" else []) + [scope_note],
        scope=p.scope,
    )  # fmt: skip


def scope_of(configured: str, decoder: dict | None) -> str:
    """One line on what the figures cover (also the reason a model-scope config runs at FFN scope)."""
    if configured == "model" and decoder is not None:
        return ("scope model: the whole decoder step — QKV/O projections, attention over the KV cache, norms "
                "and RoPE (vector work), predictor, top-k and FFN of every layer, embeddings and the LM head; "
                "FFN-only figures beside (ffn_scope)")  # fmt: skip
    if configured == "model":
        return ("scope ffn: the trace records no decoder shape (heads, kv_heads, head_dim, vocab: traces "
                "recorded before it was stored, or synthetic ones without a preset), so only the FFN part of "
                "each layer is simulated; re-record the trace or synthesise it with --preset for scope model")  # fmt: skip
    return (
        "scope ffn (hwconfig): predictor, top-k and the SwiGLU FFN of every layer only; attention, KV cache, "
        "QKV/O, embeddings and the LM head are left out, so tokens_per_s and speedups are FFN figures"
    )


NOTES = [
    "cycle-approximate: per layer-step stage times combined through the stage DAG; with double_buffer, what "
    "is known before routing (predictor and attention weights, KV cache, LM head) is prefetched during the "
    "previous layer-step's idle DRAM time",
    "energy is estimated from per-event costs (SRAM line read/write, DRAM pJ/bit and per row activation, MAC, "
    "top-k compare-exchange, SiLU·mul vector op) plus SRAM leakage × time",
    "predictor weights: streamed from DRAM every layer-step (prefetchable), or read from SRAM with "
    "predictor.resident (capacity reserved on every bank)",
    "fills: with sram.fill_bypass (default) a missed bundle streams to the lanes and is written into SRAM only "
    "if the residency policy keeps it; without it every miss is written, then read back",
    "pinned_hot pins each SRAM bank's most used channels profiled on the other half of the trace than the one "
    "replayed (first half replayed with the second half's profile and vice versa): not an oracle",
    "union density vs batch is measured on the first chunk's decode steps (b distinct sequences at one step)",
    "a batch is b decode tokens of distinct sequences at the same decode step (continuous batching)",
]
