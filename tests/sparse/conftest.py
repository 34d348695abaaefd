"""Tiny random Qwen2 / Llama models for the sparse-module mechanics (built in well under a second)."""

from __future__ import annotations

import pytest
import torch


def _tiny_model(
    arch: str = "qwen2",
    intermediate: int = 320,
    hidden: int = 64,
    layers: int = 2,
    seed: int = 0,
    dtype=torch.float32,
):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    cls = {"qwen2": Qwen2Config, "llama": LlamaConfig}[arch]
    config = cls(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=256,
    )
    torch.manual_seed(seed)
    # Built in `dtype` (not .to(dtype)): buffers such as RoPE's inv_freq stay fp32, as from_pretrained makes them.
    return AutoModelForCausalLM.from_config(config, dtype=dtype).eval()


@pytest.fixture(params=["qwen2", "llama"])
def arch(request) -> str:
    return request.param


@pytest.fixture
def tiny_model():
    """Factory: tiny_model(arch="qwen2"|"llama", intermediate=320, hidden=64, layers=2, seed=0)."""
    return _tiny_model


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These tests run many tiny ops; on a shared 2-core VM, OpenMP wake-ups per op cost more than the ops."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
