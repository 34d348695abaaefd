"""Validation cases: which FFN launches `codesign validate` runs, and the routing masks each one reads.

A case is `launches` consecutive kernel launches of `tokens` tokens each, over `layers` FFN layers of shape
hidden × intermediate at bank size B and k kept per bank. Its masks come from

  recorded   the trace shipped in the package (codesign/trace/default/smollm2-trained.zarr) or any store
             given with --trace: its own masks at its recorded (B, k), or the same masks read at a bank size
             that is a multiple of it (B' = m·B keeps exactly m·k per bank: the same mask, still balanced),
             or masks re-selected from its logits, or a synthetic store regenerated from its spec;
  synthetic  codesign.trace.synth drawn in memory at the case's shape, (B, k) and seed.

Torch-free: the simulator side imports this without the model stack.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from codesign.errors import ConfigError, TraceError

RECORDED, SYNTHETIC = "recorded", "synthetic"
MAX_TILE_TOKENS = 64  # one routing tile per launch: the simulator's step is the kernel's union tile
MIN_TRITON_BANK = 16  # smaller banks take the torch path (no Triton loads to measure)

# Aligned synthetic shape of the grid: 3 × 256 × 2 B = 1536 B bundles (whole 32 B sectors), I = 512; the quick
# subset halves I (fewer banks, fewer interpreted programs).
GRID_HIDDEN, GRID_INTERMEDIATE, QUICK_INTERMEDIATE = 256, 512, 256
# A layer that is not a multiple of the kernel block: d = 200 (BLOCK_D 128: a masked tail block; d-chunk 128:
# two chunks), bundles of 1200 B that straddle 32 B sectors and 128 B lines, I = 320 (not a multiple of 128).
ODD_HIDDEN, ODD_INTERMEDIATE = 200, 320
TOKENS = (1, 4, 16)
BANKS = (32, 64, 128)


@dataclass(frozen=True)
class Case:
    """One validation case (see module docstring). `trace` is RECORDED, SYNTHETIC or a store path."""

    trace: str
    tokens: int
    bank_size: int
    k: int
    hidden: int
    intermediate: int
    layers: int = 2
    launches: int = 2
    seed: int = 0

    @property
    def name(self) -> str:
        src = "rec" if self.trace == RECORDED else "syn" if self.trace == SYNTHETIC else Path(self.trace).name
        return f"{src} T{self.tokens} B{self.bank_size} k{self.k} d{self.hidden} I{self.intermediate}"

    @property
    def total_tokens(self) -> int:
        return self.tokens * self.launches

    def as_dict(self) -> dict:
        return {"name": self.name, **asdict(self)}


def check_case(case: Case) -> None:
    """ConfigError (one line) unless the Triton kernels can run this case as one routing tile per launch."""
    b, k, i = case.bank_size, case.k, case.intermediate
    if b < MIN_TRITON_BANK or b & (b - 1):
        raise ConfigError(
            f"{case.name}: bank size {b} cannot run on the Triton kernels (a power of two >= {MIN_TRITON_BANK})"
        )
    if i <= 0 or i % b or i % 8:
        raise ConfigError(
            f"{case.name}: intermediate {i} must be a positive multiple of the bank size {b} and of 8"
        )
    if not 0 < k <= b:
        raise ConfigError(f"{case.name}: k={k} must be in 1..{b} (the bank size)")
    if case.hidden <= 0:
        raise ConfigError(f"{case.name}: hidden {case.hidden} must be positive")
    if not 1 <= case.tokens <= MAX_TILE_TOKENS:
        raise ConfigError(
            f"{case.name}: {case.tokens} tokens per launch; validate runs 1..{MAX_TILE_TOKENS} "
            "(one routing tile per launch, so that a launch is one simulator step)"
        )
    if case.layers <= 0 or case.launches <= 0:
        raise ConfigError(f"{case.name}: layers and launches must be positive")


def grid(recorded_trace: str | None = None, quick: bool = False) -> list[Case]:
    """The cases of `codesign validate`: the (tokens, B, k) grid on synthetic masks, odd layer sizes, and the
    recorded trace at the (B, k) its masks give. `quick`: the small subset CI runs in seconds."""
    if quick:  # the elementwise (1 token) and tl.dot (16) decode paths, 2 launches, and the odd layer size
        return [
            Case(SYNTHETIC, 1, 64, 8, GRID_HIDDEN, QUICK_INTERMEDIATE, layers=1, seed=1),
            Case(SYNTHETIC, 16, 64, 16, GRID_HIDDEN, QUICK_INTERMEDIATE, layers=1, seed=2),
            Case(SYNTHETIC, 4, 64, 16, ODD_HIDDEN, ODD_INTERMEDIATE, layers=2, launches=1, seed=3),
        ]
    # one layer, two launches (reuse across launches would show); the odd size runs two layers (offsets)
    cases = [
        Case(SYNTHETIC, t, b, k, GRID_HIDDEN, GRID_INTERMEDIATE, layers=1, seed=t * 1000 + b + k)
        for t in TOKENS
        for b in BANKS
        for k in (b // 8, b // 4, b // 2)
    ]
    cases += [
        Case(SYNTHETIC, t, b, b // 4, ODD_HIDDEN, ODD_INTERMEDIATE, launches=1, seed=7 + t)
        for t in TOKENS
        for b in (32, 64)
    ]
    if recorded_trace is not None:
        cases += recorded_cases(recorded_trace)
    return cases


def recorded_cases(path: str | Path, layers: int = 2, launches: int = 1) -> list[Case]:
    """Cases for a trace store: tokens 1/4/16 at its own (B, k) and at 2·B (the same masks, 2·k per bank)."""
    from codesign.trace.store import TraceReader

    meta = TraceReader(path).meta
    trace = RECORDED if Path(path) == default_recorded_path() else str(path)
    shapes = [(meta.bank_size, meta.k)]
    if meta.intermediate % (2 * meta.bank_size) == 0 and meta.k_per_layer is None:
        shapes.append((2 * meta.bank_size, 2 * meta.k))
    return [
        Case(
            trace, t, b, k, meta.hidden, meta.intermediate, layers=min(layers, meta.layers), launches=launches
        )
        for b, k in shapes
        for t in TOKENS
    ]


def default_recorded_path() -> Path:
    from codesign.trace import DEFAULT_DIR

    return DEFAULT_DIR / "smollm2-trained.zarr"


def trace_path(case: Case) -> Path:
    return default_recorded_path() if case.trace == RECORDED else Path(case.trace)


def case_masks(case: Case) -> np.ndarray:
    """bool (launches·tokens, layers, I): the kept channels of every token of the case, every layer."""
    check_case(case)
    if case.trace == SYNTHETIC:
        from codesign.trace.synth import SynthSpec, iter_synthetic

        spec = SynthSpec(
            kind="correlated", hidden=case.hidden, intermediate=case.intermediate, layers=case.layers,
            bank_size=case.bank_size, k=case.k, sequences=1, decode_tokens=case.total_tokens, seed=case.seed,
        )  # fmt: skip
        masks = np.concatenate([b["masks"] for b in iter_synthetic(spec, with_logits=False)])
        return masks[: case.total_tokens]
    return _trace_masks(case)


def _trace_masks(case: Case) -> np.ndarray:
    from codesign.trace.store import TraceReader

    path = trace_path(case)
    reader = TraceReader(path)
    meta = reader.meta
    if (meta.hidden, meta.intermediate) != (case.hidden, case.intermediate):
        raise TraceError(
            f"{path}: trace is of a {meta.hidden} x {meta.intermediate} FFN, the case asks for "
            f"{case.hidden} x {case.intermediate}"
        )
    if meta.layers < case.layers:
        raise TraceError(f"{path}: trace has {meta.layers} layers, the case needs {case.layers}")
    if reader.num_tokens < case.total_tokens:
        raise TraceError(
            f"{path}: trace holds {reader.num_tokens} tokens, the case needs {case.total_tokens} "
            f"({case.launches} launches of {case.tokens})"
        )
    chunk = reader.read(0, case.total_tokens, with_logits=reader.has_logits)
    trace_ks = set((meta.k_per_layer or {}).values()) | {meta.k}
    b, k = case.bank_size, case.k
    ratio = b // meta.bank_size if b % meta.bank_size == 0 else 0
    if ratio and trace_ks == {meta.k} and k == ratio * meta.k:
        masks = chunk.masks()  # the recorded masks; at B = m·B_trace every bank keeps exactly m·k_trace
    elif chunk.logits is not None:
        from codesign.trace.rebank import reselect

        masks = reselect(chunk.logits, b, k)
    elif meta.synthetic and "synth" in meta.extra:
        from codesign.trace.synth import SynthSpec, iter_synthetic

        spec = SynthSpec(**{**meta.extra["synth"], "bank_size": b, "k": k})
        masks = np.concatenate([blk["masks"] for blk in iter_synthetic(spec, with_logits=False)])
    else:
        raise TraceError(
            f"{path}: trace was recorded at B={meta.bank_size}, k={sorted(trace_ks)} and stores no logits; "
            f"B={b}, k={k} cannot be derived from it (use B={meta.bank_size}·m with k={meta.k}·m)"
        )
    return masks[: case.total_tokens, : case.layers]


SOURCES = ("all", SYNTHETIC, RECORDED)


def select_cases(
    source: str = "all",
    trace: str | Path | None = None,
    quick: bool = False,
    tokens: tuple[int, ...] = (),
    banks: tuple[int, ...] = (),
    ks: tuple[int, ...] = (),
    hidden: int | None = None,
    intermediate: int | None = None,
    layers: int | None = None,
    launches: int | None = None,
) -> list[Case]:
    """The cases the CLI asked for. With no shape option: the grid (or its quick subset). With any of tokens /
    banks / ks / hidden / intermediate: their cross product (k defaults to B/8, B/4, B/2), on synthetic masks
    at hidden × intermediate and on the trace at its own shape. Shapes the kernels cannot run are errors."""
    if source not in SOURCES:
        raise ConfigError(f"source {source!r} is not one of {', '.join(SOURCES)}")
    recorded = str(trace) if trace is not None else str(default_recorded_path())
    if trace is not None and not Path(trace).exists():
        raise TraceError(f"trace {trace} does not exist")
    explicit = bool(tokens or banks or ks or hidden or intermediate)
    if not explicit:
        cases = grid(recorded if source != SYNTHETIC and not quick else None, quick=quick)
        if quick and source == RECORDED:
            cases = recorded_cases(recorded)[:1]
        elif source == RECORDED:
            cases = [c for c in cases if c.trace != SYNTHETIC]
    else:
        cases = []
        if source in ("all", SYNTHETIC):
            d, i = hidden or GRID_HIDDEN, intermediate or GRID_INTERMEDIATE
            cases += _product(SYNTHETIC, d, i, tokens, banks or BANKS, ks)
        if source in ("all", RECORDED):
            from codesign.trace.store import TraceReader

            meta = TraceReader(recorded).meta
            name = RECORDED if Path(recorded) == default_recorded_path() else recorded
            for b in banks or (meta.bank_size,):
                # the k the recorded masks give at B (m·k at m·B); other B need logits (an error if absent)
                derived = (b // meta.bank_size * meta.k,) if b % meta.bank_size == 0 else (max(1, b // 4),)
                cases += _product(name, meta.hidden, meta.intermediate, tokens, (b,), ks or derived)
    replace = {key: v for key, v in (("layers", layers), ("launches", launches)) if v is not None}
    if replace:
        import dataclasses

        cases = [dataclasses.replace(c, **replace) for c in cases]
    for case in cases:
        check_case(case)
    return cases


def _product(trace, hidden, intermediate, tokens, banks, ks) -> list[Case]:
    return [
        Case(trace, t, b, k, hidden, intermediate, seed=t * 1000 + b + k)
        for t in tokens or TOKENS
        for b in banks
        for k in (ks or (max(1, b // 8), max(1, b // 4), max(1, b // 2)))
    ]
