"""The Trainer: runs a recipe's stages, and is itself checkpointable state.

One global step = `grad_accum` micro-batches of `batch_size` x `seq_len` tokens per process, then one
optimizer step. The checkpoint holds everything the next step depends on (model, optimizer, scheduler, step,
tokens seen, RNGs, data position, recipe, and the frozen teacher if the stage has one), so N steps straight
equal N/2 + save + load + N/2 bit for bit on CPU. The data position is the step itself: batches are a pure
function of (seed, stage, step) (see data.packed_batches).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from codesign.data.corpus import load_corpus, packed_batches, windows_for_eval
from codesign.errors import ConfigError, OutputExistsError
from codesign.train import distributed as D
from codesign.train.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from codesign.train.models import build_model, max_context, model_name
from codesign.train.optim import (
    kl_loss,
    lm_loss,
    make_optimizer,
    make_scheduler,
    select_trainable,
)
from codesign.train.recipe import Recipe, Stage, sparsity_config
from codesign.train.rundir import (
    ADAPTER_NAME,
    EVALS_NAME,
    METRICS_NAME,
    SUMMARY_NAME,
    atomic_json,
    first_difference,
    truncate_metrics,
)
from codesign.train.teacher import TeacherCache, fused_lm_and_kl


class Trainer:
    """Train `recipe` into `out_dir`. `on_step(metrics)` is called on the main process after every step
    (the CLI renders progress from it); `capture` (a RoutingCapture) records routing of sampled steps."""

    def __init__(
        self,
        recipe: Recipe,
        out_dir: str | os.PathLike,
        *,
        resume: bool = False,
        force: bool = False,
        capture=None,
        on_step: Callable[[dict], None] | None = None,
    ):
        self.recipe, self.out = recipe, Path(out_dir)
        self.resume, self.force, self.capture, self.on_step = resume, force, capture, on_step
        self.dist = D.init_from_env()
        self.step = 0  # global steps completed
        self.tokens_seen = 0
        self.model: nn.Module | None = None
        self.teacher: nn.Module | None = None
        self.opt = self.sched = None
        self.stage_idx = -1
        self._ddp: nn.Module | None = None
        self._checkpointing = False

    # ---------------------------------------------------------------- set-up

    def _prepare_out(self) -> dict | None:
        """The checkpoint to resume from (or None); refuses to clobber an earlier run without force."""
        ckpt_path = self.out / CHECKPOINT_NAME
        if self.resume:
            return load_checkpoint(ckpt_path)  # ModelError if missing / corrupt
        if self.out.exists() and any(self.out.iterdir()) and not self.force:
            raise OutputExistsError(self.out)
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            for name in (CHECKPOINT_NAME, METRICS_NAME, SUMMARY_NAME, ADAPTER_NAME, EVALS_NAME):
                (self.out / name).unlink(missing_ok=True)
        D.barrier(self.dist)
        return None

    def setup(self) -> dict | None:
        state = self._prepare_out()
        r = self.recipe
        saved = None if state is None else _with_defaults(state["recipe"])
        if saved is not None and saved != r.to_dict():
            diff = first_difference(saved, r.to_dict())
            raise ConfigError(f"cannot resume {self.out}: the recipe changed since the checkpoint ({diff})")
        self.model, self.tokenizer = build_model(r.model, r.seed)
        r.check_model_limits(max_context(self.model))
        self.model.to(self.dist.device)
        self.corpus = load_corpus(r.data.corpus, self.tokenizer, cache_dir=r.data.cache_dir)
        self.train_tokens = self.corpus.tokens("train")
        if state is None:
            torch.manual_seed(r.seed)
            np.random.seed(r.seed % 2**32)
            return None
        if state["sparse"]:
            from codesign.sparse.upcycle import upcycle

            upcycle(self.model, sparsity_config(r).replace(init="random"))  # structure; weights come next
        self.model.load_state_dict(state["model"])
        self.step, self.tokens_seen = state["step"], state["tokens_seen"]
        if self.dist.is_main:
            truncate_metrics(self.out / METRICS_NAME, self.step)
            truncate_metrics(self.out / EVALS_NAME, self.step)
        return state

    def _fit_predictors(self) -> None:
        """Closed-form predictor init from the dense model's own activations on the first `fit_tokens`
        training tokens (codesign.sparse.fit); deterministic, so a resumed run refits identically."""
        from codesign.sparse.fit import collect_mlp_inputs, fit_predictors

        sp = self.recipe.sparsity
        ids = torch.from_numpy(windows_for_eval(self.train_tokens, sp.fit_seq_len, sp.fit_tokens))
        fit_predictors(self.model, collect_mlp_inputs(self.model, ids.to(self.dist.device)), target="log")

    def _enter_stage(self, idx: int, state: dict | None) -> None:
        """Upcycle if this is the first sparse stage, pick trainable parameters, build optimizer and teacher."""
        stage = self.recipe.stages[idx]
        self.stage_idx = idx
        from codesign.sparse.upcycle import sparse_modules, upcycle

        if stage.sparse and not sparse_modules(self.model):
            upcycle(self.model, sparsity_config(self.recipe))
            self.model.to(self.dist.device)
            if self.recipe.sparsity.init == "fit":
                self._fit_predictors()
        select_trainable(self.model, stage.trainable)
        self.teacher = None
        self.teacher_cache = None
        if stage.kl_weight > 0 and not _only_predictor(stage):
            # The dense teacher is the model as it entered the stage, frozen; kept in checkpoints.
            self.teacher = copy.deepcopy(self.model).eval().requires_grad_(False)
            if sparse_modules(self.teacher):
                from codesign.sparse.upcycle import set_mode

                set_mode(self.teacher, "dense")
            if state is not None and state.get("teacher") is not None:
                self.teacher.load_state_dict(state["teacher"])
        if stage.kl_weight > 0 and self.recipe.train.kl_topk > 0:
            self.teacher_cache = self._make_teacher_cache(stage)
        if stage.grad_checkpointing != self._checkpointing:
            if stage.grad_checkpointing:
                self.model.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False}
                )
            else:
                self.model.gradient_checkpointing_disable()
            self._checkpointing = stage.grad_checkpointing
        self.opt = make_optimizer(self.model, stage)
        self.sched = make_scheduler(self.opt, stage)
        if state is not None:
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
        self._ddp = D.wrap(self.model, self.dist)
        if self.capture is not None and stage.sparse and self.dist.is_main:
            self.capture.attach(self.model)

    # ---------------------------------------------------------------- the loop

    def run(self, stop_after: int | None = None) -> dict:
        """Train every remaining step of the recipe (or up to global step `stop_after`, checkpointing there:
        what a preempted job leaves); returns the run summary (also written to summary.json)."""
        state = self.setup()
        r = self.recipe
        start_step, t0 = self.step, time.perf_counter()
        self._t_start = t0
        first_idx, first_stage_step = r.stage_at(self.step)
        # Resuming exactly at a stage boundary starts the next stage fresh, as an uninterrupted run does.
        resume_state = state if (state is not None and first_stage_step > 0) else None
        evals = {}
        for idx in range(first_idx, len(r.stages)):
            stage = r.stages[idx]
            if state is not None and idx == first_idx:
                # After the model is built (its init draws random numbers), before the stage is entered
                # (a random predictor init at a stage boundary must draw what the uninterrupted run drew).
                set_rng_state(state["rng"])
            self._enter_stage(idx, resume_state if idx == first_idx else None)
            stage_start = r.first_step_of(idx)
            batches = packed_batches(
                self.train_tokens,
                stage.seq_len,
                stage.batch_size * stage.grad_accum,
                seed=r.seed * 1000 + idx,
                start_step=self.step - stage_start,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
            )
            stage_end = stage_start + stage.steps
            while self.step < stage_end and (stop_after is None or self.step < stop_after):
                _, batch = next(batches)
                t_step = time.perf_counter()
                losses = self._train_step(stage, torch.from_numpy(batch).to(self.dist.device))
                self.step += 1
                self.tokens_seen += stage.tokens_per_step * self.dist.world_size
                step_s = time.perf_counter() - t_step
                self._log(stage, losses, step_s, t0, start_step)
                every = r.train.eval_every
                if every and self.step % every == 0 and self.step < stage_end:
                    self._record_eval(self.evaluate(stage))
                if self.step % r.train.checkpoint_every == 0 or self.step in (stage_end, stop_after):
                    self.save()
            if stop_after is not None and self.step >= stop_after and self.step < stage_end:
                break
            if stage.steps > 0:
                evals[stage.name] = self.evaluate(stage)
                self._record_eval(evals[stage.name])
        summary = self._summary(evals, time.perf_counter() - t0)
        if self.dist.is_main:
            summary["adapter"] = self._write_adapter(summary)
            atomic_json(self.out / SUMMARY_NAME, summary)
        D.barrier(self.dist)
        return summary

    def _train_step(self, stage: Stage, batch: torch.Tensor) -> dict[str, float]:
        """One optimizer step over `grad_accum` micro-batches of batch (grad_accum * batch_size, seq_len)."""
        model, micro = self._ddp, batch.split(stage.batch_size)
        model.train()
        self.opt.zero_grad(set_to_none=True)
        totals = {"loss": 0.0, "lm_loss": 0.0, "kl_loss": 0.0, "aux_loss": 0.0}
        for i, x in enumerate(micro):
            record = (
                i == 0
                and self.capture is not None
                and stage.sparse
                and self.dist.is_main
                and self.step % self.recipe.train.trace_every == 0
            )
            if record:
                self.capture.arm(x, phase="train", step=self.step, split="train")
            sync = i == len(micro) - 1 or not self.dist.enabled
            with contextlib.nullcontext() if sync else model.no_sync():
                with self._autocast():
                    logits = model(input_ids=x).logits  # (b, T, V)
                if record:
                    self.capture.disarm()
                parts = self._losses(stage, x, logits)
                loss = sum(w * v for w, v in parts.values() if v is not None)
                (loss / len(micro)).backward()
            totals["loss"] += float(loss.detach()) / len(micro)
            for name, (_, v) in parts.items():
                if v is not None:
                    totals[name] += float(v.detach()) / len(micro)
        if stage.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], stage.grad_clip
            )
        self.opt.step()
        self.sched.step()
        return totals

    def _losses(self, stage: Stage, x: torch.Tensor, logits: torch.Tensor) -> dict:
        """{name: (weight, value or None)} of this micro-batch."""
        from codesign.sparse.upcycle import collect_aux_loss

        # The aux losses first: the teacher forward below (same modules, routing off) resets them.
        aux = collect_aux_loss(self.model) if stage.sparse and stage.aux_weight > 0 else None
        if self.teacher_cache is not None:
            target = self.teacher_cache.get(x, self._teacher_logits)
            lm, kl = fused_lm_and_kl(logits, x, target, stage.kl_temperature, want_lm=stage.lm_weight > 0)
        else:
            kl = (
                kl_loss(logits, self._teacher_logits(x), stage.kl_temperature)
                if stage.kl_weight > 0
                else None
            )
            lm = lm_loss(logits, x) if stage.lm_weight > 0 else None
        return {
            "lm_loss": (stage.lm_weight, lm),
            "kl_loss": (stage.kl_weight, kl),
            "aux_loss": (stage.aux_weight, aux),
        }

    def _make_teacher_cache(self, stage: Stage):
        """The on-disk top-k cache of this stage's teacher, keyed by the teacher's own weights: the dense
        weights it computes with (predictors excluded: the teacher runs with routing off)."""
        import hashlib

        teacher = self.teacher if self.teacher is not None else self.model
        h = hashlib.sha256()
        for name, t in sorted(teacher.state_dict().items()):
            if ".predictor." in name:
                continue
            h.update(name.encode() + str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().float().contiguous().numpy().tobytes())
        root = (
            self.recipe.data.cache_dir or os.environ.get("CODESIGN_CACHE") or Path.home() / ".cache/codesign"
        )
        return TeacherCache(
            root, h.hexdigest()[:20], self.recipe.train.kl_topk, stage.kl_temperature, self.recipe.train.dtype
        )

    @torch.no_grad()
    def _teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.teacher is not None:
            with self._autocast():
                return self.teacher(input_ids=x).logits
        # Predictor-only stage: the FFN weights are the dense teacher's, so the teacher is this very
        # model with routing off (no second copy in memory). Hooks must not record this forward.
        from codesign.sparse.upcycle import set_mode

        mode = self._sparse_mode()
        set_mode(self.model, "dense")
        try:
            with self._autocast():
                return self.model(input_ids=x).logits
        finally:
            set_mode(self.model, mode)

    def _sparse_mode(self) -> str:
        from codesign.sparse.upcycle import sparse_modules

        return sparse_modules(self.model)[0].mode

    def _autocast(self):
        enabled = self.recipe.train.dtype == "bf16"
        return torch.autocast(
            device_type=self.dist.device.split(":")[0], dtype=torch.bfloat16, enabled=enabled
        )

    # ---------------------------------------------------------------- eval, logging, checkpoints

    @torch.no_grad()
    def evaluate(self, stage: Stage) -> dict:
        """Validation loss / perplexity on the first `eval_tokens` validation tokens (inference path: the
        sparse model computes only kept channels); routing recorded as phase "eval" when capturing."""
        r = self.recipe
        seq_len = r.train.eval_seq_len or stage.seq_len
        windows = windows_for_eval(self.corpus.tokens("validation"), seq_len, r.train.eval_tokens)
        self.model.eval()
        total, count = 0.0, 0
        for i, row in enumerate(windows):
            x = torch.from_numpy(row[None]).to(self.dist.device)
            record = self.capture is not None and stage.sparse and self.dist.is_main
            if record:
                self.capture.arm(x, phase="eval", step=self.step, split="validation")
            with self._autocast():
                logits = self.model(input_ids=x).logits
            if record:
                self.capture.disarm()
            total += float(lm_loss(logits, x)) * (seq_len - 1)
            count += seq_len - 1
            del i
        loss = total / count
        return {
            "stage": stage.name,
            "step": self.step,
            "val_loss": loss,
            "val_ppl": float(np.exp(loss)),
            "val_tokens": int(windows.size),
            "seq_len": seq_len,
        }

    def _record_eval(self, ev: dict) -> None:
        """Append one validation point (a learning-curve row) to evals.jsonl, keyed by step and tokens."""
        if self.dist.is_main:
            row = {**ev, "tokens_seen": self.tokens_seen, "wall_s": time.perf_counter() - self._t_start}
            with open(self.out / EVALS_NAME, "a") as f:
                f.write(json.dumps(row) + "\n")

    def _log(self, stage: Stage, losses: dict, step_s: float, t0: float, start_step: int) -> None:
        vals = D.mean_across(list(losses.values()), self.dist)
        if not self.dist.is_main:
            return
        elapsed = time.perf_counter() - t0
        done = self.step - start_step
        remaining = self.recipe.total_steps - self.step
        row = {
            "step": self.step,
            "stage": stage.name,
            **{k: round(v, 6) for k, v in zip(losses, vals, strict=True)},
            "lr": self.sched.get_last_lr()[0],
            "tokens_seen": self.tokens_seen,
            "tokens_per_s": stage.tokens_per_step * self.dist.world_size / step_s,
            "step_time_s": step_s,
            "elapsed_s": elapsed,
            "eta_s": elapsed / done * remaining,
            "total_steps": self.recipe.total_steps,
        }
        if self.step % self.recipe.train.log_every == 0 or remaining == 0:
            with open(self.out / METRICS_NAME, "a") as f:
                f.write(json.dumps(row) + "\n")
        if self.on_step is not None:
            self.on_step(row)

    def _write_adapter(self, summary: dict) -> str | None:
        from codesign.train.adapter import save_run_adapter

        provenance = {k: summary[k] for k in ("recipe", "recipe_path", "steps", "tokens_seen", "evals")}
        path = save_run_adapter(self.model, self.recipe, self.out / ADAPTER_NAME, provenance)
        return None if path is None else str(path)

    def state_dict(self) -> dict:
        from codesign.sparse.upcycle import sparse_modules

        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "teacher": None if self.teacher is None else self.teacher.state_dict(),
            "step": self.step,
            "stage": self.stage_idx,
            "tokens_seen": self.tokens_seen,
            "sparse": bool(sparse_modules(self.model)),
            "rng": rng_state(),
            "recipe": self.recipe.to_dict(),
        }

    def save(self) -> None:
        if self.dist.is_main:
            save_checkpoint(self.state_dict(), self.out / CHECKPOINT_NAME)
        D.barrier(self.dist)

    def _summary(self, evals: dict, wall_s: float) -> dict:
        return {
            "recipe": self.recipe.name,
            "recipe_path": self.recipe.path,
            "model": model_name(self.recipe.model),
            "steps": self.step,
            "tokens_seen": self.tokens_seen,
            "world_size": self.dist.world_size,
            "wall_s": wall_s,
            "evals": evals,
            "corpus": self.corpus.describe(),
        }


def _with_defaults(saved: dict) -> dict:
    """A checkpoint's recipe with keys added to the schema since then at their defaults, so that a new
    optional setting does not make older runs unresumable (a changed value still does)."""
    from codesign.train.recipe import recipe_from_dict

    data = {k: v for k, v in saved.items() if k != "path"}
    try:
        return {**recipe_from_dict(data).to_dict(), "path": saved.get("path", "")}
    except ConfigError:
        return saved  # not valid under today's schema: compared as saved, and reported as a difference


def _only_predictor(stage: Stage) -> bool:
    return stage.sparse and stage.trainable == "predictor"
