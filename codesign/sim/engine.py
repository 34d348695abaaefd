"""The trace-driven simulator: stream a routing trace, group tokens into steps, replay them on the hardware.

One *variant* is one configuration replayed over the whole trace: the trace's own masks ("sparse"), the dense
baseline (all channels, no predictor), or global top-k at the same density. Each variant streams the trace
once, chunk by chunk (memory bounded by the chunk and `max_steps`), and for every block of steps runs

    token bank words (T, L, nb, W) ─group─▶ need (S, L, nb, W) = OR over a step's tokens
                                    ─residency (numba, parallel over SRAM banks)─▶ miss (S, L, nb, W)
                                    ─time_layer_steps (numba: SRAM ports, DRAM model, stage DAG)─▶ accumulators

With `bank_timing` the timing kernel runs layer-steps in order on one core: the DRAM model's state (open rows)
carries from one layer-step to the next, so its calls cannot be reordered. With `ideal` and `bank_stream`,
whose state does not order their calls, it runs the layers in parallel (layer_step.time_layer_steps_par, same
results bit for bit). The whole job (a hwconfig and a trace store → the
sparse run and its baselines) is codesign.sim.simulation.simulate.

Steps: a decode step is a batch of up to `batch` decode tokens of *distinct* sequences at the same decode
step — consecutive decode tokens in processing order, until a sequence repeats (its next token belongs to the
next decode step), the batch is full, or a prefill token intervenes. Sequences may join and leave between
steps (continuous batching); a trace whose decode steps hold fewer sequences than `batch` gives smaller
batches, and the whole job refuses such a batch (simulation.simulate). Consecutive prefill tokens of one
sequence form chunks of `prefill_chunk_tokens`. A step never straddles a block: the last
(possibly open) step of every block is held back and completed by the next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange

from codesign.layout import BundleLayout
from codesign.sim import pipeline as pl
from codesign.sim.layer_step import (
    PARALLEL_DRAM_KERNELS,
    dram_kernel_id,
    time_layer_steps,
    time_layer_steps_par,
)
from codesign.sim.pipeline import COL, build_pipeline, compile_pipeline
from codesign.sim.residency import Residency, choose_pinned, popcount64
from codesign.trace.steps import decode_concurrency, step_starts  # noqa: F401  (part of the engine's API)

DEFAULT_PREFILL_CHUNK_TOKENS = 256
DEFAULT_MAX_STEPS = 256  # steps per residency/timing call: bounds the need/miss buffers


@dataclass(frozen=True)
class SimParams:
    """Every number the engine uses, flattened from the hwconfig and the trace's model shape."""

    hidden: int
    intermediate: int
    layers: int
    bank_size: int
    k: int
    dtype_bytes: int
    num_sram_banks: int
    bank_size_bytes: int
    line_bytes: int
    ports_per_bank: int
    sram_line_interval_cycles: int  # clock cycles between two line accesses to one port
    macs_per_cycle: int
    topk_cycles_per_bank: int
    frequency_hz: float
    execution: str  # batch_union | per_token_gather
    residency: str
    double_buffer: bool
    predictor_rank: int
    sram_read_energy_pj: float
    sram_write_energy_pj: float
    dram_energy_pj_per_bit: float
    mac_energy_pj: float
    leakage_mw_per_bank: float
    area_mm2_per_bank: float
    layout: BundleLayout = field(init=False)
    placement: str = "stripe"  # stripe | modulo: how bundles map onto SRAM banks (pipeline docstring)
    fill_bypass: bool = False  # misses stream to the lanes; only kept ones are written (pipeline docstring)
    dram_activation_energy_pj: float = 0.0  # per row activation (report: dram_activation_energy_pj)
    topk_energy_pj_per_compare: float = 0.0  # per compare-exchange (topk_cycles_per_bank per token × bank)
    vector_energy_pj_per_op: float = 0.0  # per vector op (SiLU·mul of a kept channel, norms, softmax, RoPE)
    # Whole decoder step (scope "model"): the trace's decoder shape; scope "ffn" leaves the rest out.
    scope: str = "ffn"
    heads: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    vocab: int = 0
    tied_embeddings: bool = False
    predictor_resident: bool = False  # predictor weights held in SRAM (reserved capacity) instead of streamed

    def __post_init__(self) -> None:
        layout = BundleLayout(self.hidden, self.intermediate, self.layers, self.dtype_bytes)
        object.__setattr__(self, "layout", layout)

    @property
    def sparse(self) -> bool:
        """A model with k < B runs the predictor and top-k; k = B is the dense model."""
        return self.k < self.bank_size

    @property
    def bundle_bytes(self) -> int:
        return self.layout.bundle_bytes

    @property
    def lines_per_bundle(self) -> int:
        return -(-self.bundle_bytes // self.line_bytes)

    @property
    def predictor_reserved_bytes_per_bank(self) -> int:
        """SRAM each bank sets aside for the resident predictors (all layers' weights striped over the banks)."""
        if not (self.predictor_resident and self.sparse):
            return 0
        return -(-self.predictor_bytes_per_layer * self.layers // self.num_sram_banks)

    @property
    def capacity_bundles(self) -> int:
        """Channel bundles one SRAM bank holds (after what resident predictors reserve)."""
        return max(0, self.bank_size_bytes - self.predictor_reserved_bytes_per_bank) // self.bundle_bytes

    @property
    def model_scope(self) -> bool:
        return self.scope == "model"

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def attention_macs_per_token(self) -> int:
        """Q, K, V and O projections of one token in one layer."""
        return 2 * self.hidden * self.q_dim + 2 * self.hidden * self.kv_dim

    @property
    def attention_bytes_per_layer(self) -> int:
        return self.attention_macs_per_token * self.dtype_bytes

    @property
    def kv_row_bytes(self) -> int:
        """K and V of one token in one layer."""
        return 2 * self.kv_dim * self.dtype_bytes

    @property
    def head_bytes(self) -> int:
        """The LM head (vocab × hidden), streamed once per step."""
        return self.vocab * self.hidden * self.dtype_bytes

    @property
    def sram_banks_used(self) -> int:
        """SRAM banks that hold weights: all of them when striped, else one per model bank at most."""
        return (
            self.num_sram_banks
            if self.placement == "stripe"
            else min(self.num_sram_banks, self.num_model_banks)
        )

    @property
    def num_model_banks(self) -> int:
        return self.intermediate // self.bank_size

    @property
    def words_per_bank(self) -> int:
        return -(-self.bank_size // 64)

    @property
    def predictor_bytes_per_layer(self) -> int:
        r = self.predictor_rank if self.sparse else 0
        return (self.hidden * r + r * self.intermediate) * self.dtype_bytes

    def with_k(self, k: int) -> SimParams:
        values = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "layout"}
        return SimParams(**{**values, "k": k})

    def kernel_params(self) -> np.ndarray:
        """The int64 parameter vector of layer_step.time_layer_steps."""
        values = {
            pl.IP_NB: self.num_model_banks, pl.IP_W: self.words_per_bank, pl.IP_B: self.bank_size,
            pl.IP_NS: self.num_sram_banks, pl.IP_LINES: self.lines_per_bundle, pl.IP_PORTS: self.ports_per_bank,
            pl.IP_MPC: self.macs_per_cycle, pl.IP_TOPK: self.topk_cycles_per_bank, pl.IP_HIDDEN: self.hidden,
            pl.IP_INTER: self.intermediate, pl.IP_RANK: self.predictor_rank if self.sparse else 0,
            pl.IP_UNION: int(self.execution == "batch_union"), pl.IP_BUNDLE: self.bundle_bytes,
            pl.IP_LAYER_BYTES: self.layout.layer_bytes,
            pl.IP_PRED_BASE: self.layout.total_bytes,  # predictor weights sit after the FFN weights
            pl.IP_PRED_BYTES: self.predictor_bytes_per_layer, pl.IP_SPARSE: int(self.sparse),
            pl.IP_INTERVAL: self.sram_line_interval_cycles, pl.IP_STRIPE: int(self.placement == "stripe"),
            pl.IP_BYPASS: int(self.fill_bypass), pl.IP_KEEP_FILLS: int(self.residency in ("lru", "lfu")),
            pl.IP_LINE_BYTES: self.line_bytes, pl.IP_LAYERS: self.layers,
            pl.IP_DOUBLE_BUFFER: int(self.double_buffer), pl.IP_PRED_RESIDENT: int(self.predictor_resident),
        }  # fmt: skip
        if self.model_scope:  # address map: FFN | predictors | attention | LM head (| embeddings) | KV cache
            attn_base = self.layout.total_bytes + self.layers * self.predictor_bytes_per_layer
            head_base = attn_base + self.layers * self.attention_bytes_per_layer
            values.update({
                pl.IP_MODEL: 1, pl.IP_ATTN_BYTES: self.attention_bytes_per_layer, pl.IP_ATTN_BASE: attn_base,
                pl.IP_KV_ROW: self.kv_row_bytes, pl.IP_PROJ_MACS: self.attention_macs_per_token,
                pl.IP_SCORE_MACS: 2 * self.q_dim,  # q·k and p·v over every context row
                pl.IP_HEAD_BYTES: self.head_bytes, pl.IP_HEAD_BASE: head_base,
                pl.IP_KV_BASE: head_base + 2 * self.head_bytes, pl.IP_EMBED_ROW: self.hidden * self.dtype_bytes,
                pl.IP_HEAD_MACS: self.vocab * self.hidden,
                # vector ops per token: 2 RMSNorms (2 ops/element), 2 residual adds, RoPE on q and k
                pl.IP_VEC_TOKEN: 6 * self.hidden + 2 * (self.q_dim + self.kv_dim),
                pl.IP_VEC_CTX: 3 * self.heads,  # softmax: max, exp-sum, scale per score
            })  # fmt: skip
        ip = np.zeros(pl.NUM_IP, dtype=np.int64)
        for index, value in values.items():
            ip[index] = value
        return ip


@dataclass
class Block:
    """Consecutive tokens of one variant: bank words (T, L, nb, W) uint64, per-token step keys and positions
    (None: unknown, costed as position 0 — only FFN-scope figures are then exact)."""

    words: np.ndarray
    is_decode: np.ndarray
    seq_id: np.ndarray
    position: np.ndarray | None = None

    def slice(self, lo: int, hi: int) -> Block:
        pos = None if self.position is None else self.position[lo:hi]
        return Block(self.words[lo:hi], self.is_decode[lo:hi], self.seq_id[lo:hi], pos)


def concat_blocks(a: Block, b: Block) -> Block:
    pos = None if a.position is None or b.position is None else np.concatenate([a.position, b.position])
    return Block(np.concatenate([a.words, b.words]), np.concatenate([a.is_decode, b.is_decode]),
                 np.concatenate([a.seq_id, b.seq_id]), pos)  # fmt: skip


def attention_steps(
    is_decode: np.ndarray, seq_id: np.ndarray, position: np.ndarray | None, starts: np.ndarray
):
    """Per step, what attention reads and writes: step_ctx (S,) context rows attended, summed over the step's
    tokens (a token at position p attends p + 1 rows); and per (step, sequence) — kv_ptr (S + 1,) into
    kv_seq, kv_before (rows already cached: read from DRAM), kv_new (rows the step appends). A decode step
    holds distinct sequences; a prefill chunk is one sequence."""
    T, S = len(is_decode), len(starts)
    pos = np.zeros(T, dtype=np.int64) if position is None else np.asarray(position, dtype=np.int64)
    sizes = np.diff(np.append(starts, T))
    step_ctx = np.add.reduceat(pos + 1, starts) if S else np.zeros(0, np.int64)
    first = np.asarray(is_decode, dtype=bool).copy()
    first[starts] = True  # a prefill chunk's sequence, at its first token
    idx = np.flatnonzero(first)
    step_of = np.repeat(np.arange(S), sizes)[idx]
    kv_new = np.where(np.asarray(is_decode)[idx], 1, sizes[step_of]).astype(np.int64)
    kv_ptr = np.searchsorted(idx, np.append(starts, T)).astype(np.int64)
    return (step_ctx.astype(np.int64), kv_ptr, np.asarray(seq_id, dtype=np.int64)[idx], pos[idx], kv_new)


# ---- masks → bank words ---------------------------------------------------------------------------------
def words_from_bits(mask_bits: np.ndarray, bank_size: int) -> np.ndarray:
    """Packed masks uint8 (T, L, I/8), little bit order → uint64 (T, L, nb, W), W = ceil(B / 64)."""
    T, L, nbytes = mask_bits.shape
    if bank_size % 8:
        masks = np.unpackbits(mask_bits, axis=-1, bitorder="little").astype(bool)
        return words_from_masks(masks, bank_size)
    per_bank = bank_size // 8
    W = -(-bank_size // 64)
    banks = mask_bits.reshape(T, L, nbytes // per_bank, per_bank)  # (T, L, nb, B/8)
    if per_bank == 8 * W:
        return np.ascontiguousarray(banks).view("<u8").astype(np.uint64, copy=False)
    padded = np.zeros((T, L, nbytes // per_bank, 8 * W), dtype=np.uint8)
    padded[..., :per_bank] = banks
    return padded.view("<u8").astype(np.uint64, copy=False)


def words_from_masks(masks: np.ndarray, bank_size: int) -> np.ndarray:
    """bool (T, L, I) → uint64 (T, L, nb, W)."""
    T, L, I = masks.shape
    W = -(-bank_size // 64)
    banks = np.zeros((T, L, I // bank_size, 64 * W), dtype=bool)
    banks[..., :bank_size] = masks.reshape(T, L, I // bank_size, bank_size)
    packed = np.packbits(banks, axis=-1, bitorder="little")  # (T, L, nb, 8W)
    return packed.view("<u8").astype(np.uint64, copy=False)


def dense_words(tokens: int, layers: int, nb: int, bank_size: int) -> np.ndarray:
    """All channels kept: (T, L, nb, W) uint64 with the low `bank_size` bits of each bank set."""
    W = -(-bank_size // 64)
    row = np.array([(1 << min(64, bank_size - 64 * w)) - 1 for w in range(W)], dtype=np.uint64)
    return np.ascontiguousarray(np.broadcast_to(row, (tokens, layers, nb, W)))


# ---- steps (the grouping lives with the trace: codesign/trace/steps.py) --------------------------------
def group_steps(words: np.ndarray, starts: np.ndarray):
    """need (S, L, nb, W) = OR of each step's tokens; tok_ch (S, L, nb) = kept channels summed over them.

    numpy version: the twin of `group_steps_numba` and the grouping the numpy reference uses.
    """
    need = np.bitwise_or.reduceat(words, starts, axis=0)
    per_token = np.bitwise_count(words).sum(axis=-1, dtype=np.int64)  # (T, L, nb)
    tok_ch = np.add.reduceat(per_token, starts, axis=0)
    step_tokens = np.diff(np.append(starts, len(words))).astype(np.int64)
    return need, tok_ch, step_tokens


@njit(cache=True, parallel=True)
def _group_kernel(words, starts, need, tok_ch):
    T, L, nb, W = words.shape
    S = starts.shape[0]
    for l in prange(L):  # one pass over the tokens' words, layers in parallel
        for s in range(S):
            lo = starts[s]
            hi = starts[s + 1] if s + 1 < S else T
            for j in range(nb):
                count = 0
                for w in range(W):
                    acc = np.uint64(0)
                    for t in range(lo, hi):
                        x = words[t, l, j, w]
                        acc |= x
                        count += popcount64(x)
                    need[s, l, j, w] = acc
                tok_ch[s, l, j] = count


def group_steps_numba(
    words: np.ndarray, starts: np.ndarray, out: tuple[np.ndarray, np.ndarray] | None = None
):
    """Same as `group_steps`, in one parallel pass (the engine's hot path).

    out: optional (need, tok_ch) buffers with ≥ len(starts) rows, reused across calls; the results are views
    of their first len(starts) rows.
    """
    S = len(starts)
    if out is None:
        need = np.empty((S, *words.shape[1:]), dtype=np.uint64)
        tok_ch = np.empty((S, *words.shape[1:3]), dtype=np.int64)
    else:
        need, tok_ch = out[0][:S], out[1][:S]  # leading-axis slices: still C-contiguous
    _group_kernel(words, starts.astype(np.int64), need, tok_ch)
    step_tokens = np.diff(np.append(starts, len(words))).astype(np.int64)
    return need, tok_ch, step_tokens


# ---- one variant ------------------------------------------------------------------------------------------
@dataclass
class VariantResult:
    """Integer accumulators of one variant over the whole trace (energy and ratios are derived in report)."""

    name: str
    params: SimParams
    per_layer: np.ndarray  # (L, len(LAYER_COLUMNS)) int64
    dram_time_ns: np.ndarray  # (L,) float64, the DRAM model's service time per layer
    per_sram_bank: np.ndarray  # (NS, 3) int64: read lines, write lines, port cycles
    bank_load: np.ndarray  # (L, nb, 2) int64: channels read, channels missed per model bank
    pipeline_nodes: tuple[str, ...]
    pipeline_edges: tuple[tuple[str, str], ...]

    def total(self, column: str) -> int:
        return int(self.per_layer[:, COL[column]].sum())


def channel_frequency(blocks: Iterable[Block], layers: int, intermediate: int, bank_size: int) -> np.ndarray:
    """(L, I) use counts of every channel over the blocks (profile for pinned_hot)."""
    freq = np.zeros((layers, intermediate), dtype=np.int64)
    for b in blocks:
        bits = b.words.view(np.uint8).reshape(*b.words.shape[:3], -1)  # (T, L, nb, 8W) little endian
        ch = np.unpackbits(bits, axis=-1, bitorder="little")[..., :bank_size]  # (T, L, nb, B)
        freq += ch.sum(axis=0, dtype=np.int64).reshape(layers, intermediate)
    return freq


class VariantRun:
    """One variant being replayed: feed it the trace's blocks in order (`feed`), then `finish()`.

    Several runs can be fed from one pass over the trace (the sparse run and its baselines share it);
    memory is bounded by one block plus `max_steps` steps of need/miss words.
    """

    def __init__(self, name: str, params: SimParams, dram, batch: int, *, pinned: np.ndarray | None = None,
                 prefill_chunk_tokens: int = DEFAULT_PREFILL_CHUNK_TOKENS, max_steps: int = DEFAULT_MAX_STEPS):  # fmt: skip
        p = self.params = params
        self.name, self.dram, self.batch = name, dram, batch
        self.prefill_chunk_tokens, self.max_steps = prefill_chunk_tokens, max_steps
        L, nb, W, ns = p.layers, p.num_model_banks, p.words_per_bank, p.num_sram_banks
        self.residency = Residency(p.residency, ns, p.capacity_bundles, p.bank_size, L * nb * W * 64, pinned,
                                   placement=p.placement)  # fmt: skip
        self.pipe = compile_pipeline(
            build_pipeline(p.double_buffer, p.sparse, p.model_scope, p.predictor_resident and p.sparse)
        )
        self.ip, self.ghz, self.kernel = p.kernel_params(), p.frequency_hz / 1e9, dram_kernel_id(dram.name)
        self.dram_state = dram.new_state()
        self.parallel = self.kernel in PARALLEL_DRAM_KERNELS
        # request buffers, one per core when the layers run in parallel
        most_tokens = max(batch, prefill_chunk_tokens)  # KV requests: a read and a write per sequence
        width = max(p.intermediate // 2 + 2, 2 * most_tokens + 4)
        self.req_starts = np.zeros((L if self.parallel else 1, width), dtype=np.int64)
        self.req_lengths = np.zeros_like(self.req_starts)
        self.sram_part = np.zeros((L, ns, 3), dtype=np.int64)
        # need / tok_ch / miss of one call, allocated once: max_steps × L × nb × W words each
        self.need_buf = np.empty((max_steps, L, nb, W), dtype=np.uint64)
        self.tok_buf = np.empty((max_steps, L, nb), dtype=np.int64)
        self.miss_buf = np.empty_like(self.need_buf)
        self.stage_buf = np.zeros((max_steps, L, pl.STAGE_BUF_WIDTH), dtype=np.int64)
        self.carry = np.zeros(2, dtype=np.int64)  # idle DRAM cycles the last layer-step left (schedule)
        self.acc_layer = np.zeros((L, len(COL)), dtype=np.int64)
        self.acc_ns = np.zeros(L, dtype=np.float64)
        self.acc_sram = np.zeros((ns, 3), dtype=np.int64)
        self.acc_bank = np.zeros((L, nb, 2), dtype=np.int64)
        self.pending: Block | None = None

    def _run(self, block: Block, starts: np.ndarray) -> None:
        ms = self.max_steps
        words = block.words
        for i in range(0, len(starts), ms):
            lo = starts[i]
            hi = starts[i + ms] if i + ms < len(starts) else len(words)
            local = starts[i : i + ms] - lo
            need, tok_ch, step_tokens = group_steps_numba(words[lo:hi], local, (self.need_buf, self.tok_buf))
            part = block.slice(lo, hi)
            attn = attention_steps(part.is_decode, part.seq_id, part.position, local)
            miss = self.miss_buf[: len(need)]
            self.residency.update(need, miss)
            args = (need, miss, tok_ch, step_tokens, self.ip, self.ghz, self.kernel, self.dram.params,
                    self.dram_state, self.pipe.kinds, self.pipe.preds, *attn)  # fmt: skip
            if self.parallel:
                time_layer_steps_par(*args, self.req_starts, self.req_lengths, self.stage_buf, self.carry,
                                     self.sram_part, self.acc_layer, self.acc_ns, self.acc_sram,
                                     self.acc_bank)  # fmt: skip
            else:
                time_layer_steps(*args, self.req_starts[0], self.req_lengths[0], self.stage_buf, self.carry,
                                 self.acc_layer, self.acc_ns, self.acc_sram, self.acc_bank)  # fmt: skip

    def _starts(self, block: Block) -> np.ndarray:
        return step_starts(block.is_decode, block.seq_id, self.batch, self.prefill_chunk_tokens)

    def feed(self, block: Block) -> None:
        """Replay the complete steps of `block` (after what earlier blocks left open)."""
        if self.pending is not None:
            block = concat_blocks(self.pending, block)
        starts = self._starts(block)
        if len(starts) == 0:
            return
        cut = starts[-1]  # hold back the last (possibly open) step
        self._run(block.slice(0, cut), starts[:-1])
        self.pending = block.slice(cut, len(block.words))

    def set_pinned(self, pinned: np.ndarray) -> None:
        """pinned_hot: replay from here on with another pinned set (the open step is completed first)."""
        if self.pending is not None and len(self.pending.words):
            self._run(self.pending, self._starts(self.pending))
        self.pending = None
        self.residency.pinned = pinned

    def finish(self) -> VariantResult:
        if self.pending is not None and len(self.pending.words):
            self._run(self.pending, self._starts(self.pending))
        self.pending = None
        return VariantResult(self.name, self.params, self.acc_layer, self.acc_ns, self.acc_sram, self.acc_bank,
                             self.pipe.nodes, self.pipe.edges)  # fmt: skip


def profile_pinned(params: SimParams, blocks: Iterable[Block]) -> np.ndarray:
    """The pinned_hot set: each SRAM bank's most used channels over `blocks` (the profiling part)."""
    p = params
    freq = channel_frequency(blocks, p.layers, p.intermediate, p.bank_size)
    return choose_pinned(
        freq, p.num_sram_banks, p.capacity_bundles, p.bank_size, p.words_per_bank, p.placement
    )


def simulate_variant(
    name: str,
    params: SimParams,
    blocks: Callable[[], Iterator[Block]],
    dram,
    batch: int,
    *,
    prefill_chunk_tokens: int = DEFAULT_PREFILL_CHUNK_TOKENS,
    max_steps: int = DEFAULT_MAX_STEPS,
    progress: Callable[[int], None] | None = None,
) -> VariantResult:
    """Replay `blocks()` (called twice for pinned_hot: profile, then replay) on the hardware in `params`."""
    pinned = profile_pinned(params, blocks()) if params.residency == "pinned_hot" else None
    run = VariantRun(name, params, dram, batch, pinned=pinned, prefill_chunk_tokens=prefill_chunk_tokens,
                     max_steps=max_steps)  # fmt: skip
    for block in blocks():
        run.feed(block)
        if progress is not None:
            progress(len(block.words))
    return run.finish()


def union_density_vs_batch(blocks: Iterable[Block], intermediate: int, batches=(1, 2, 4, 8, 16, 32)) -> dict:
    """Mean fraction of channels kept by any token of a batch of b — b distinct sequences at one decode step
    (the engine's batches), over the full batches within each block. Sizes no decode step reaches are left out."""
    sums = dict.fromkeys(batches, 0.0)
    groups = dict.fromkeys(batches, 0)
    for b in blocks:
        for size in batches:
            starts = step_starts(b.is_decode, b.seq_id, size, 1)
            full = starts[(np.diff(np.append(starts, len(b.words))) == size) & b.is_decode[starts]]
            if len(full) == 0:
                continue
            union = np.bitwise_or.reduce(b.words[full[:, None] + np.arange(size)], axis=1)  # (G, L, nb, W)
            kept = np.bitwise_count(union).sum(axis=(1, 2, 3), dtype=np.int64)  # (G,)
            sums[size] += float(kept.sum()) / (intermediate * b.words.shape[1])
            groups[size] += len(full)
    return {size: sums[size] / groups[size] for size in batches if groups[size]}
