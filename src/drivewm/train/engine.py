"""The one training engine every drivewm model trains with.

A model is any ``nn.Module`` with ``loss(batch) -> dict`` (key ``"loss"`` plus scalar logs) and,
optionally, ``on_step_end(step, total_steps)`` for updates outside the gradient (EMA teachers).
The engine owns everything else: data order, AdamW with warm-up + cosine, clipping, accumulation,
bf16 autocast on GPUs, torch.compile, DDP or FSDP under torchrun, checkpoints that resume step
for step, and logs. Model code never sees distributed code.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.utils.data import DataLoader, Dataset

from drivewm.train.checkpoint import (
    CheckpointError,
    CheckpointManager,
    _load_tensors,
    check_state_dict,
    read_state,
    restore_rng,
    unflatten_optimizer_state,
)
from drivewm.train.config import TrainConfig
from drivewm.train.distributed import DistEnv, all_reduce_max, all_reduce_mean, setup_distributed
from drivewm.train.logging import MetricsLogger, progress_bar
from drivewm.train.sampler import DistributedStepSampler
from drivewm.train.schedule import warmup_cosine

_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped before touching its checkpoints."""


@dataclass
class FitResult:
    steps: int
    last_loss: float
    best_val: float | None
    run_dir: Path


class _LossModule(nn.Module):
    """Gives DDP/FSDP a `forward` to hook: it is the model's `loss`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.model.loss(batch)


def _collate_fn(model: nn.Module, given: Callable | None, batches_done: int) -> Callable | None:
    """A loader's collate_fn: the one given, else the model's ``collate_fn(batches_done)`` when the model builds
    per-batch inputs (masks) in the loader; counting from the batches done keeps a resume exact."""
    make = getattr(model, "collate_fn", None)
    return given or (make(batches_done) if make is not None else None)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            # `_no_weight_decay` on a parameter opts it out (Mamba's mark on A_log and D)
            (decay if p.ndim >= 2 and not getattr(p, "_no_weight_decay", False) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _autocast(device: torch.device, precision: str):
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"train.precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    use_bf16 = precision == "bf16" or (
        precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        train_set: Dataset,
        cfg: TrainConfig,
        run_dir: str | Path,
        *,
        val_set: Dataset | None = None,
        config_yaml: str = "",
        dist_env: DistEnv | None = None,
        collate_fn: Callable | None = None,
    ) -> None:
        if not hasattr(model, "loss"):
            raise TypeError(f"{type(model).__name__} has no loss(batch) method: it cannot be trained")
        if cfg.steps <= 0:
            raise ValueError(f"train.steps must be > 0, got {cfg.steps}")
        self.cfg = cfg
        self.model = model
        self.train_set = train_set
        self.val_set = val_set
        self.run_dir = Path(run_dir)
        self.config_yaml = config_yaml
        self.env = dist_env or setup_distributed(cfg.device)
        self.collate_fn = collate_fn
        self.ckpts = CheckpointManager(self.run_dir, cfg.keep_last)

    # ------------------------------------------------------------------ set-up
    def _parallelize(self) -> nn.Module:
        self.model.to(self.env.device)
        wrapped: nn.Module = _LossModule(self.model)
        if self.env.distributed:
            if self.cfg.parallel == "ddp":
                from torch.nn.parallel import DistributedDataParallel as DDP

                ids = [self.env.device.index] if self.env.device.type == "cuda" else None
                wrapped = DDP(wrapped, device_ids=ids)
            elif self.cfg.parallel == "fsdp":
                from torch.distributed.fsdp import fully_shard

                for child in self.model.children():
                    if any(p.requires_grad for p in child.parameters()):
                        fully_shard(child)
                fully_shard(wrapped)
            else:
                raise ValueError(f"train.parallel must be 'ddp' or 'fsdp', got {self.cfg.parallel!r}")
        if self.cfg.compile:
            wrapped = torch.compile(wrapped)
        return wrapped

    def _restore(self, optimizer: torch.optim.Optimizer) -> int:
        path = self.ckpts.latest()
        if path is None or not path.is_dir():
            raise CheckpointError(f"{self.run_dir}: --resume given but there is no checkpoint to resume from")
        state = read_state(path)
        weights = _load_tensors(path / "model.safetensors")
        check_state_dict(get_model_state_dict(self.model, options=_FULL), weights, path / "model.safetensors")
        set_model_state_dict(self.model, weights, options=StateDictOptions(full_state_dict=True))
        osd = unflatten_optimizer_state(_load_tensors(path / "optim.safetensors"), state["optimizer"])
        set_optimizer_state_dict(self.model, optimizer, osd, options=StateDictOptions(full_state_dict=True))
        restore_rng(_load_tensors(path / "rng.safetensors"), state["rng"])
        return int(state["step"])

    def _save(self, step: int, optimizer: torch.optim.Optimizer, best_value: float | None) -> None:
        # Collectives under FSDP: every rank gathers, rank 0 writes.
        msd = get_model_state_dict(self.model, options=_FULL)
        osd = get_optimizer_state_dict(self.model, optimizer, options=_FULL)
        if self.env.is_main:
            self.ckpts.save(
                step,
                best_value=best_value,
                config_yaml=self.config_yaml,
                model_state=msd,
                optim_state=osd,
                state={
                    "step": step,
                    "schedule": {"kind": "warmup_cosine", "step": step, "lr": optimizer.param_groups[0]["lr"]},
                    "data_position": {"next_step": step, "seed": self.cfg.seed},
                    "best_value": best_value,
                },
            )
        if self.env.distributed:
            torch.distributed.barrier()

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, wrapped: nn.Module) -> float | None:
        if self.val_set is None or len(self.val_set) == 0:
            return None
        micro = self.cfg.batch_size // (self.env.world_size * self.cfg.grad_accum)
        collate = _collate_fn(self.model, self.collate_fn, 0)
        loader = DataLoader(self.val_set, batch_size=max(1, micro), shuffle=False, collate_fn=collate)
        was_training = self.model.training
        self.model.eval()
        total, count = 0.0, 0
        with torch.random.fork_rng(devices=[self.env.device] if self.env.device.type == "cuda" else []):
            torch.manual_seed(self.cfg.seed)
            for i, batch in enumerate(loader):
                if i >= self.cfg.eval_batches:
                    break
                with _autocast(self.env.device, self.cfg.precision):
                    out = wrapped(_to_device(batch, self.env.device))
                total += float(out["loss"])
                count += 1
        self.model.train(was_training)
        return total / max(1, count)

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = False) -> FitResult:
        cfg, env = self.cfg, self.env
        if env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not resume and self.ckpts.latest() is not None:
                raise CheckpointError(
                    f"{self.run_dir} already holds checkpoints: pass --resume to continue it, or choose another run_dir"
                )
            if self.config_yaml:
                (self.run_dir / "config.yaml").write_text(self.config_yaml)
        wrapped = self._parallelize()
        optimizer = torch.optim.AdamW(
            _param_groups(self.model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2)
        )
        start = self._restore(optimizer) if resume else 0
        logger = MetricsLogger(self.run_dir, enabled=env.is_main)
        if resume:
            logger.truncate_after(start)
        if start >= cfg.steps:
            logger.close()
            return FitResult(start, float("nan"), None, self.run_dir)

        sampler = DistributedStepSampler(
            len(self.train_set),
            batch_size=cfg.batch_size,
            grad_accum=cfg.grad_accum,
            rank=env.rank,
            world_size=env.world_size,
            seed=cfg.seed,
            start_step=start,
            total_steps=cfg.steps,
        )
        # A dedicated generator: creating the loader must not draw from the global RNG, or a resumed
        # run's random stream would differ from the uninterrupted run's.
        loader = DataLoader(
            self.train_set,
            batch_sampler=sampler,
            num_workers=cfg.num_workers,
            collate_fn=_collate_fn(self.model, self.collate_fn, start * cfg.grad_accum),
            generator=torch.Generator().manual_seed(cfg.seed),
            pin_memory=env.device.type == "cuda",
        )
        batches = iter(loader)
        self.model.train()
        best_val: float | None = None
        last_loss = float("nan")
        t0, t_last, steps_since = time.perf_counter(), time.perf_counter(), 0
        with progress_bar(cfg.progress and env.is_main) as bar:
            task = bar.add_task("train", total=cfg.steps, completed=start, speed=0.0, loss=float("nan"))
            for step in range(start, cfg.steps):
                lr = cfg.lr * warmup_cosine(step, warmup=cfg.warmup_steps, total=cfg.steps, min_ratio=cfg.min_lr_ratio)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                sums: dict[str, torch.Tensor] = {}
                finite = torch.ones((), device=env.device)
                for micro in range(cfg.grad_accum):
                    batch = _to_device(next(batches), env.device)
                    sync_ctx = (
                        wrapped.no_sync()
                        if env.distributed and cfg.parallel == "ddp" and micro < cfg.grad_accum - 1
                        else contextlib.nullcontext()
                    )
                    with sync_ctx:
                        with _autocast(env.device, cfg.precision):
                            out = wrapped(batch)
                        loss = out["loss"]
                        finite = finite * torch.isfinite(loss.detach()).float()
                        (loss / cfg.grad_accum).backward()
                    for k, v in out.items():
                        v = v.detach().float() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                        sums[k] = sums.get(k, 0.0) + v.to(env.device) / cfg.grad_accum
                if float(all_reduce_max(1.0 - finite)) > 0:
                    bad = {k: float(v) for k, v in sums.items()}
                    last = self.ckpts.latest()
                    raise NonFiniteLossError(
                        f"non-finite loss at step {step} ({bad}); stopped without saving. "
                        f"Last good checkpoint: {last if last else 'none yet'}"
                    )
                grad_norm = None
                if cfg.grad_clip > 0:
                    grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if hasattr(self.model, "on_step_end"):
                    self.model.on_step_end(step, cfg.steps)
                done = step + 1
                steps_since += 1
                is_last = done == cfg.steps
                if done % cfg.log_every == 0 or is_last:
                    names = sorted(sums)
                    values = all_reduce_mean(torch.stack([sums[k] for k in names]))
                    logs = {k: float(v) for k, v in zip(names, values)}
                    now = time.perf_counter()
                    speed = steps_since / max(now - t_last, 1e-9)
                    t_last, steps_since = now, 0
                    logs.update(lr=lr, steps_per_s=speed, time_s=now - t0)
                    if grad_norm is not None:
                        logs["grad_norm"] = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
                    last_loss = logs["loss"]
                    logger.log(done, logs)
                    bar.update(task, completed=done, speed=speed, loss=last_loss)
                else:
                    bar.update(task, completed=done)
                val = None
                if (cfg.eval_every and done % cfg.eval_every == 0) or is_last:
                    val = self.evaluate(wrapped)
                    if val is not None:
                        logger.log(done, {"val_loss": val})
                        best_val = val if best_val is None or val < best_val else best_val
                if done % cfg.ckpt_every == 0 or is_last:
                    self._save(done, optimizer, val if val is not None else (last_loss if is_last else None))
        logger.close()
        if not math.isfinite(last_loss):
            last_loss = float("nan")
        return FitResult(cfg.steps, last_loss, best_val, self.run_dir)
