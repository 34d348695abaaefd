"""What the sparse FFN kernels need to know about a token batch's kept channels, and its torch builders.

A `Routing` is produced by bank_topk (Triton on CUDA / under the interpreter, torch otherwise) or built from
kept indices or a bool mask with the torch helpers below. The forward kernel works on *token tiles* of
`tile_tokens` tokens: for every (tile, bank) it reads the union of the tile's kept channels of that bank once
and masks each token's own channels, so one token (decode) reads exactly its kept bundles and a batch reads the
union (which grows toward dense as masks differ; that cost is real and reported, not hidden).

Packed mask bits follow the trace store: channel c is bit c % 8 (little bit order) of byte c // 8.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from codesign.errors import ConfigError

# Token tile of the decode path: one tile holds up to 16 tokens, the smallest M a tensor-core tl.dot takes.
DECODE_TILE_TOKENS = 16
# Token tile for batches above 16 tokens: a 64-token tile re-reads the union weights 4x less often than 16.
PREFILL_TILE_TOKENS = 64


# Token tiles the kernels accept: exactly those codesign.kernels.aot_check compiles for sm_90 (`--full` loops
# over this tuple). Smaller tiles (4, 8) fail there (the weight-gradient kernel's tl.dot takes the tile as its
# K, >= 16) and non-powers of two fail tl.arange; other powers of two are untested, so refused too.
TILE_TOKENS = (DECODE_TILE_TOKENS, PREFILL_TILE_TOKENS)


def default_tile_tokens(tokens: int) -> int:
    return DECODE_TILE_TOKENS if tokens <= DECODE_TILE_TOKENS else PREFILL_TILE_TOKENS


def resolve_tile_tokens(tokens: int, tile_tokens: int | None) -> int:
    """The token tile for `tokens` tokens: the default, or `tile_tokens` if the kernels compile for it."""
    if tile_tokens is None:
        return default_tile_tokens(tokens)
    if tile_tokens not in TILE_TOKENS:
        raise ConfigError(
            f"tile_tokens={tile_tokens} is not one of {', '.join(map(str, TILE_TOKENS))} "
            f"(the tiles the kernels compile for on sm_90)"
        )
    return tile_tokens


def check_2d(tensor: torch.Tensor, name: str, shape: str, op: str) -> None:
    """ConfigError naming the expected shape unless `tensor` is 2-D."""
    if tensor.dim() != 2:
        raise ConfigError(f"{op}: {name} must be {shape}, got shape {tuple(tensor.shape)}")


@dataclass(frozen=True)
class Routing:
    """Kept channels of T tokens under bank-wise top-k (k of every `bank_size` channels of I).

    idx:          (T, nb * k) int64, kept channel ids, ascending (so bank by bank).
    bits:         (T, ceil(I / 8)) uint8 packed mask, channel c = bit c % 8 of byte c // 8.
    union_cols:   (n_tiles, nb, B) int32; entries [:count] are the union over the tile's tokens of the bank's
                  kept channels, ascending; entries past the count are unspecified.
    union_counts: (n_tiles, nb) int32.
    """

    idx: torch.Tensor
    bits: torch.Tensor
    union_cols: torch.Tensor
    union_counts: torch.Tensor
    intermediate: int
    bank_size: int
    k: int
    tile_tokens: int

    @property
    def tokens(self) -> int:
        return self.idx.shape[0]

    @property
    def banks(self) -> int:
        return self.intermediate // self.bank_size

    @property
    def tiles(self) -> int:
        return self.union_counts.shape[0]

    def mask(self) -> torch.Tensor:
        """(T, I) bool."""
        return unpack_mask_bits(self.bits, self.intermediate)

    def union_channels(self) -> int:
        """Channels read summed over tiles: the forward kernel loads this many bundles."""
        return int(self.union_counts.sum())


def pack_mask_bits(mask: torch.Tensor) -> torch.Tensor:
    """(T, I) bool -> (T, ceil(I / 8)) uint8, channel c = bit c % 8 of byte c // 8."""
    tokens, intermediate = mask.shape
    n_bytes = -(-intermediate // 8)
    padded = torch.zeros(tokens, n_bytes * 8, dtype=torch.uint8, device=mask.device)
    padded[:, :intermediate] = mask
    weights = (1 << torch.arange(8, device=mask.device, dtype=torch.int32)).to(torch.uint8)
    return (padded.view(tokens, n_bytes, 8) * weights).sum(-1, dtype=torch.uint8)  # (T, I/8, 8) -> (T, I/8)


def unpack_mask_bits(bits: torch.Tensor, intermediate: int) -> torch.Tensor:
    """(T, ceil(I / 8)) uint8 -> (T, I) bool."""
    shifts = torch.arange(8, device=bits.device, dtype=torch.uint8)
    unpacked = (bits.unsqueeze(-1) >> shifts) & 1  # (T, I/8, 8)
    return unpacked.reshape(bits.shape[0], bits.shape[1] * 8)[:, :intermediate].bool()


def union_per_tile(mask: torch.Tensor, bank_size: int, tile_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, I) bool -> union cols (n_tiles, nb, B) int32 and counts (n_tiles, nb) int32 (see Routing)."""
    tokens, intermediate = mask.shape
    n_tiles = -(-tokens // tile_tokens)
    padded = torch.zeros(n_tiles * tile_tokens, intermediate, dtype=torch.bool, device=mask.device)
    padded[:tokens] = mask
    union = padded.view(n_tiles, tile_tokens, intermediate).any(1)  # (n_tiles, I)
    union = union.view(n_tiles, intermediate // bank_size, bank_size)  # (n_tiles, nb, B)
    # a stable sort of "not in union" puts the union's channels first, in ascending order
    local = torch.sort((~union).to(torch.uint8), dim=-1, stable=True).indices  # (n_tiles, nb, B)
    offset = torch.arange(0, intermediate, bank_size, device=mask.device).view(1, -1, 1)
    cols = (local + offset).to(torch.int32)
    return cols, union.sum(-1, dtype=torch.int32)


def bank_topk_indices(scores: torch.Tensor, bank_size: int, k: int) -> torch.Tensor:
    """Kept channel ids, (..., I) scores -> (..., (I // bank_size) * k) int64, ascending within each row.

    The k largest scores of every bank, selected on the scores' own dtype; ties go to the lower channel index
    (a stable descending sort), so a selection is a pure function of the scores. The one definition used by the
    model (codesign.sparse.topk re-exports it) and the torch path of the bank_topk kernel.
    """
    *lead, intermediate = scores.shape
    banks = scores.reshape(*lead, intermediate // bank_size, bank_size)  # (..., nb, B)
    if k == bank_size:
        local = torch.arange(bank_size, device=scores.device).expand(banks.shape)
    else:
        local = torch.sort(banks, dim=-1, descending=True, stable=True).indices[..., :k]  # (..., nb, k)
        local = local.sort(dim=-1).values
    offset = torch.arange(0, intermediate, bank_size, device=scores.device).unsqueeze(-1)  # (nb, 1)
    return (local + offset).reshape(*lead, local.shape[-2] * local.shape[-1])  # (..., nb * k)


def indices_to_mask(indices: torch.Tensor, intermediate: int) -> torch.Tensor:
    """(..., K) channel ids -> (..., I) bool mask."""
    mask = torch.zeros(*indices.shape[:-1], intermediate, dtype=torch.bool, device=indices.device)
    return mask.scatter_(-1, indices.long(), True)


def routing_from_indices(
    idx: torch.Tensor, intermediate: int, bank_size: int, tile_tokens: int | None = None
) -> Routing:
    """A Routing from kept ids (T, nb * k), as the model's own selection produces them (torch ops)."""
    check_2d(idx, "kept ids", "(tokens, banks * k)", "routing_from_indices")
    tokens = idx.shape[0]
    k = idx.shape[1] * bank_size // intermediate
    tile = resolve_tile_tokens(tokens, tile_tokens)
    mask = indices_to_mask(idx, intermediate)
    cols, counts = union_per_tile(mask, bank_size, tile)
    return Routing(idx.long(), pack_mask_bits(mask), cols, counts, intermediate, bank_size, k, tile)


def bank_topk_routing_ref(
    logits: torch.Tensor, bank_size: int, k: int, tile_tokens: int | None = None
) -> Routing:
    """The torch path of bank_topk: a full Routing from logits (T, I)."""
    return routing_from_indices(
        bank_topk_indices(logits, bank_size, k), logits.shape[1], bank_size, tile_tokens
    )
