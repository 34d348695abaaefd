"""The model a recipe starts from: a tiny random Qwen2 (tests, seconds) or a real dense checkpoint."""

from __future__ import annotations

import torch
from torch import nn

from codesign.train.recipe import ModelSpec, TinyModel


class ByteTokenizer:
    """UTF-8 bytes as token ids (0..255) plus EOS = 256: the tiny model needs no downloaded vocabulary."""

    name_or_path = "bytes"
    eos_token_id = 256
    vocab_size = 257

    def get_vocab(self) -> dict[str, int]:
        return {f"<{i}>": i for i in range(self.vocab_size)}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode("utf-8"))

    def __call__(self, texts, add_special_tokens: bool = False, **_) -> dict:
        if isinstance(texts, str):
            return {"input_ids": self.encode(texts)}
        return {"input_ids": [self.encode(t) for t in texts]}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return bytes(int(i) for i in ids if int(i) < 256).decode("utf-8", errors="replace")


def build_tiny(spec: TinyModel, seed: int) -> nn.Module:
    """A random-initialised Qwen2ForCausalLM; the same seed gives the same weights."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=ByteTokenizer.vocab_size,
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=spec.max_position,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    with torch.random.fork_rng():  # the build must not advance the training RNG
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    return model


def build_model(spec: ModelSpec, seed: int) -> tuple[nn.Module, object]:
    """(dense model in fp32, tokenizer) named by the recipe's `model` section."""
    if spec.source == "tiny":
        return build_tiny(spec.tiny, seed), ByteTokenizer()
    from codesign.sparse.io import load_dense

    return load_dense(spec.source, dtype=torch.float32)


def max_context(model: nn.Module) -> int:
    """The longest sequence the model's position embeddings support."""
    return int(getattr(model.config, "max_position_embeddings", 0) or 0)


def model_name(spec: ModelSpec) -> str:
    return "tiny-qwen2" if spec.source == "tiny" else str(spec.source)
