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

# Token tile of the decode path: one tile holds up to 16 tokens, the smallest M a tensor-core tl.dot takes.
DECODE_TILE_TOKENS = 16
# Token tile for batches above 16 tokens: a 64-token tile re-reads the union weights 4x less often than 16.
PREFILL_TILE_TOKENS = 64


def default_tile_tokens(tokens: int) -> int:
    return DECODE_TILE_TOKENS if tokens <= DECODE_TILE_TOKENS else PREFILL_TILE_TOKENS


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
    padded = torch.zeros(tokens, -(-intermediate // 8) * 8, dtype=torch.uint8, device=mask.device)
    padded[:, :intermediate] = mask
    weights = (1 << torch.arange(8, device=mask.device, dtype=torch.int32)).to(torch.uint8)
    return (padded.view(tokens, -1, 8) * weights).sum(-1, dtype=torch.uint8)  # (T, I/8, 8) -> (T, I/8)


def unpack_mask_bits(bits: torch.Tensor, intermediate: int) -> torch.Tensor:
    """(T, ceil(I / 8)) uint8 -> (T, I) bool."""
    shifts = torch.arange(8, device=bits.device, dtype=torch.uint8)
    unpacked = (bits.unsqueeze(-1) >> shifts) & 1  # (T, I/8, 8)
    return unpacked.reshape(bits.shape[0], -1)[:, :intermediate].bool()


def union_per_tile(mask: torch.Tensor, bank_size: int, tile_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, I) bool -> union cols (n_tiles, nb, B) int32 and counts (n_tiles, nb) int32 (see Routing)."""
    tokens, intermediate = mask.shape
    n_tiles = -(-tokens // tile_tokens)
    padded = torch.zeros(n_tiles * tile_tokens, intermediate, dtype=torch.bool, device=mask.device)
    padded[:tokens] = mask
    union = padded.view(n_tiles, tile_tokens, intermediate).any(1)  # (n_tiles, I)
    union = union.view(n_tiles, -1, bank_size)  # (n_tiles, nb, B)
    # a stable sort of "not in union" puts the union's channels first, in ascending order
    local = torch.sort((~union).to(torch.uint8), dim=-1, stable=True).indices  # (n_tiles, nb, B)
    offset = torch.arange(0, intermediate, bank_size, device=mask.device).view(1, -1, 1)
    cols = (local + offset).to(torch.int32)
    return cols, union.sum(-1, dtype=torch.int32)


def bank_topk_ref(logits: torch.Tensor, bank_size: int, k: int) -> torch.Tensor:
    """Kept channel ids (T, nb * k) int64 of logits (T, I): k largest per bank, ties to the lower index."""
    tokens, intermediate = logits.shape
    banks = logits.reshape(tokens, intermediate // bank_size, bank_size)  # (T, nb, B)
    # a stable descending sort keeps equal logits in index order, so ties go to the lower channel index
    local = torch.sort(banks, dim=-1, descending=True, stable=True).indices[..., :k].sort(dim=-1).values
    offset = torch.arange(0, intermediate, bank_size, device=logits.device).view(1, -1, 1)
    return (local + offset).reshape(tokens, -1)  # (T, nb * k)


def indices_to_mask(idx: torch.Tensor, intermediate: int) -> torch.Tensor:
    """(T, K) channel ids -> (T, I) bool."""
    mask = torch.zeros(idx.shape[0], intermediate, dtype=torch.bool, device=idx.device)
    return mask.scatter_(1, idx.long(), True)


def routing_from_indices(
    idx: torch.Tensor, intermediate: int, bank_size: int, tile_tokens: int | None = None
) -> Routing:
    """A Routing from kept ids (T, nb * k), as the model's own selection produces them (torch ops)."""
    tokens = idx.shape[0]
    k = idx.shape[1] * bank_size // intermediate
    tile = tile_tokens or default_tile_tokens(tokens)
    mask = indices_to_mask(idx, intermediate)
    cols, counts = union_per_tile(mask, bank_size, tile)
    return Routing(idx.long(), pack_mask_bits(mask), cols, counts, intermediate, bank_size, k, tile)


def bank_topk_routing_ref(
    logits: torch.Tensor, bank_size: int, k: int, tile_tokens: int | None = None
) -> Routing:
    """The torch path of bank_topk: a full Routing from logits (T, I)."""
    return routing_from_indices(bank_topk_ref(logits, bank_size, k), logits.shape[1], bank_size, tile_tokens)
