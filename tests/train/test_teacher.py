"""Top-k distillation targets and their on-disk cache (codesign/train/teacher.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from codesign.train.optim import kl_loss, lm_loss
from codesign.train.recipe import recipe_from_dict
from codesign.train.teacher import TeacherCache, fused_lm_and_kl, kl_topk, topk_targets
from codesign.train.trainer import Trainer


def _logits(seed, b=2, t=7, v=50, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, v, generator=g) * scale


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_topk_kl_with_k_equal_vocab_is_the_full_kl(temperature):
    s, t = _logits(torch.seed() % 2**31), _logits(torch.seed() % 2**31)
    target = topk_targets(t, t.shape[-1], temperature)
    logp = F.log_softmax(s.reshape(-1, s.shape[-1]).float() / temperature, -1)
    torch.testing.assert_close(
        kl_topk(logp, target, temperature), kl_loss(s, t, temperature), rtol=1e-5, atol=1e-6
    )


def test_topk_kl_error_shrinks_with_k_and_is_nonnegative():
    s, t = (
        _logits(1, scale=1.0),
        _logits(2, scale=6.0),
    )  # a peaked teacher, as an LM's next-token distribution
    full = float(kl_loss(s, t, 1.0))
    logp = F.log_softmax(s.reshape(-1, 50), -1)
    errs = [abs(float(kl_topk(logp, topk_targets(t, k, 1.0), 1.0)) - full) for k in (2, 8, 32)]
    assert errs[0] > errs[2] and errs[2] < 0.05 * full
    assert float(kl_topk(logp, topk_targets(s, 4, 1.0), 1.0)) == pytest.approx(0.0, abs=1e-6)  # KL(p||p)


def test_fused_cross_entropy_equals_lm_loss():
    s, ids = _logits(3), torch.randint(0, 50, (2, 7))
    lm, kl = fused_lm_and_kl(s, ids, None, 1.0, want_lm=True)
    torch.testing.assert_close(lm, lm_loss(s, ids))
    assert kl is None


def test_cache_hits_return_what_was_computed_and_damaged_entries_are_recomputed(tmp_path):
    calls = []

    def teacher(x):
        calls.append(1)
        return _logits(int(x.sum()))

    cache = TeacherCache(tmp_path, "t0", k=4, temperature=1.0, dtype="fp32")
    x = torch.randint(0, 50, (2, 7))
    a = cache.get(x, teacher)
    b = cache.get(x, teacher)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    assert torch.equal(a.values, b.values) and torch.equal(a.indices, b.indices)
    next(cache.dir.glob("*.pt")).write_bytes(b"damaged")
    cache.get(x, teacher)
    assert len(calls) == 2


def test_runs_sharing_a_teacher_share_its_cache_and_train_identically(tiny_recipe_dict, tmp_path):
    stage = dict(
        tiny_recipe_dict["stages"][1], trainable="predictor+ffn", steps=2, warmup_steps=0, kl_weight=1.0
    )
    data = dict(
        tiny_recipe_dict, stages=[dict(tiny_recipe_dict["stages"][0], steps=0, warmup_steps=0), stage]
    )
    data["train"] = dict(data["train"], kl_topk=8)
    data["data"] = dict(data["data"], cache_dir=str(tmp_path / "cache"))
    r = recipe_from_dict(data)
    first = Trainer(r, tmp_path / "a")
    first.run()
    second = Trainer(r, tmp_path / "b")
    second.run()
    micro_batches = r.stages[1].steps * r.stages[1].grad_accum
    assert first.teacher_cache.misses == micro_batches and first.teacher_cache.hits == 0
    assert second.teacher_cache.hits == micro_batches and second.teacher_cache.misses == 0
    for (n, p), q in zip(first.model.state_dict().items(), second.model.state_dict().values(), strict=True):
        assert torch.equal(p, q), n
