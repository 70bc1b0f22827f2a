"""The one training engine every drivewm model trains with.

A model is any ``nn.Module`` with ``loss(batch) -> dict`` (key ``"loss"`` plus scalar logs) and,
optionally, ``on_step_end(step, total_steps)`` for updates outside the gradient (EMA teachers).
The engine owns everything else: data order, AdamW with warm-up + cosine, clipping, accumulation,
bf16 autocast on GPUs, torch.compile, DDP or FSDP under torchrun, checkpoints that resume step
for step, and logs. Model code never sees distributed code.
"""

from __future__ import annotations

import base64
import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

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

from drivewm.config import ConfigError, to_yaml
from drivewm.errors import DrivewmError
from drivewm.train.checkpoint import (
    CheckpointError,
    CheckpointManager,
    _load_tensors,
    capture_rng,
    check_state_dict,
    read_state,
    restore_rng,
    unflatten_optimizer_state,
)
from drivewm.train.config import RunConfig, TrainConfig
from drivewm.train.distributed import (
    DistEnv,
    all_reduce_max,
    all_reduce_mean,
    broadcast_object,
    gather_objects,
    setup_distributed,
)
from drivewm.train.logging import MetricsLogger, progress_bar
from drivewm.train.rundir import latest_checkpoint, prepare_run_dir, write_segments
from drivewm.train.sampler import DistributedStepSampler
from drivewm.train.schedule import warmup_cosine

_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)

# Largest |weight| an update may leave before the run counts as diverged. Trained drivewm models
# stay many orders of magnitude below it, and an fp32 weight beyond it overflows within a few
# layers, so a checkpoint of such weights would only look good.
EXPLODED_WEIGHT = 1e8

class NonFiniteError(DrivewmError):
    """The loss, the gradient norm or the weights became NaN, infinite or exploded; nothing of it was saved."""


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


def _encode_rng(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    return {"tensors": {k: base64.b64encode(v.numpy().tobytes()).decode() for k, v in tensors.items()}, "meta": meta}


def _rank_rng(path: Path, state: dict, rank: int) -> tuple[dict[str, torch.Tensor], dict]:
    """Rank `rank`'s saved RNG state (rank 0's for a rank the saving run did not have)."""
    saved = state.get("rng_by_rank", {}).get(str(rank))
    if rank == 0 or saved is None:
        return _load_tensors(path / "rng.safetensors"), state["rng"]
    tensors = {k: torch.frombuffer(bytearray(base64.b64decode(v)), dtype=torch.uint8) for k, v in saved["tensors"].items()}
    return tensors, saved["meta"]


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            # `_no_weight_decay` on a parameter opts it out (Mamba's mark on A_log and D)
            (decay if p.ndim >= 2 and not getattr(p, "_no_weight_decay", False) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _check_settings(cfg: TrainConfig, world_size: int) -> None:
    """Refuse settings the loop cannot run, before anything in the run directory is touched."""
    choices = {"precision": ("auto", "bf16", "fp32"), "parallel": ("ddp", "fsdp")}
    for key, valid in choices.items():
        if getattr(cfg, key) not in valid:
            raise ConfigError(f"train.{key} must be one of {', '.join(map(repr, valid))}, got {getattr(cfg, key)!r}")
    for key in ("steps", "batch_size", "grad_accum", "log_every", "ckpt_every"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"train.{key} must be > 0, got {getattr(cfg, key)}")
    if not math.isfinite(cfg.lr) or cfg.lr < 0:  # torch's optimizer would refuse it only after the run began
        raise ConfigError(f"train.lr must be a finite number >= 0, got {cfg.lr}")
    if cfg.batch_size % (world_size * cfg.grad_accum):
        raise ConfigError(
            f"train.batch_size={cfg.batch_size} must be divisible by processes x grad_accum = "
            f"{world_size} x {cfg.grad_accum}"
        )


def _autocast(device: torch.device, precision: str):
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
        self.cfg = cfg
        self.model = model
        self.train_set = train_set
        self.val_set = val_set
        self.run_dir = Path(run_dir)
        # A run directory always records the config that rebuilds its model; a Trainer built in code from a
        # registered model (no run config given) records the model's own config with these settings.
        if not config_yaml and hasattr(model, "cfg"):
            config_yaml = to_yaml(RunConfig(model=model.cfg, train=cfg, run_dir=str(run_dir)))
        self.config_yaml = config_yaml
        self.env = dist_env or setup_distributed(cfg.device)
        _check_settings(cfg, self.env.world_size)
        self.collate_fn = collate_fn
        self.ckpts = CheckpointManager(self.run_dir, cfg.keep_last)
        self.segments: list[dict] = [{"start_step": 0}]

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
        if self.cfg.compile:
            wrapped = torch.compile(wrapped)
        return wrapped

    def _expected_tensors(self) -> dict[str, torch.Tensor]:
        # Names and global shapes, on every rank and without gathering (FSDP's DTensors report
        # their full shape); get_model_state_dict with cpu_offload fills only rank 0's.
        return dict(self.model.state_dict())

    def _restore(self, path: Path, optimizer: torch.optim.Optimizer) -> int:
        """Restore model, optimizer and this rank's RNG from a full checkpoint; return its step.

        Every rank reads the checkpoint files itself, so DDP replicas and FSDP shards alike are
        set from a full state dict. The ranks first agree that every read worked: a bad file stops
        every rank with the same message before anything has changed.
        """
        error = None
        try:
            state = read_state(path)
            weights = _load_tensors(path / "model.safetensors")
            check_state_dict(self._expected_tensors(), weights, path / "model.safetensors")
            osd = unflatten_optimizer_state(_load_tensors(path / "optim.safetensors"), state["optimizer"])
            rng = _rank_rng(path, state, self.env.rank)
            step = int(state["step"])
        except CheckpointError as e:
            error = str(e)
        except (KeyError, TypeError, ValueError) as e:
            error = f"{path / 'state.json'}: incomplete training state ({type(e).__name__}: {e})"
        errors = [e for e in gather_objects(error) if e]
        if errors:
            raise CheckpointError(errors[0])
        set_model_state_dict(self.model, weights, options=StateDictOptions(full_state_dict=True))
        set_optimizer_state_dict(self.model, optimizer, osd, options=StateDictOptions(full_state_dict=True))
        restore_rng(*rng)
        return step

    def _save(self, step: int, optimizer: torch.optim.Optimizer, best_value: float | None) -> None:
        # Collectives under FSDP: every rank gathers, rank 0 writes.
        msd = get_model_state_dict(self.model, options=_FULL)
        osd = get_optimizer_state_dict(self.model, optimizer, options=_FULL)
        # Each rank's own random stream, so a resumed rank draws what it would have drawn.
        rngs = gather_objects(capture_rng()) if self.env.distributed else []
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
                    "segments": self.segments,
                    "rng_by_rank": {str(r): _encode_rng(*rngs[r]) for r in range(1, len(rngs))},
                },
            )
        if self.env.distributed:
            torch.distributed.barrier()

    def _max_abs_weight(self) -> float:
        """Largest |weight| over every parameter of every rank (NaN counts as infinite)."""
        local = [(p.to_local() if hasattr(p, "to_local") else p).detach() for p in self.model.parameters()]
        local = [t for t in local if t.numel()]
        if not local:
            return 0.0
        top = torch.nn.utils.get_total_norm(local, norm_type=float("inf"))
        return float(all_reduce_max(torch.nan_to_num(top.float(), nan=float("inf"))))

    def _diverged(self, done: int, what: str) -> None:
        """Stop the run: step `done` (counted as completed steps, as checkpoint names are) went wrong."""
        last = latest_checkpoint(self.ckpts)
        saved = f"{last} ({int(read_state(last)['step'])} completed steps)" if last else "none yet"
        raise NonFiniteError(
            f"{self.run_dir}: step {done} of {self.cfg.steps}: {what}; stopped without saving it. "
            f"Last good checkpoint: {saved}"
        )

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
    def fit(self, resume: bool = False, *, overwrite: bool = False, allow_change: Sequence[str] = ()) -> FitResult:
        """Train to `cfg.steps`; with `resume`, continue the run in `run_dir` step for step.

        A fresh run refuses a directory that holds another run unless `overwrite`; a resumed run
        refuses config changes that alter what it computes unless their keys are in `allow_change`.
        """
        cfg, env = self.cfg, self.env
        verdict: tuple[str, Any] | None = None
        if env.is_main:
            try:
                verdict = ("ok", prepare_run_dir(self.ckpts, self.config_yaml, resume, overwrite, allow_change))
            except Exception as e:  # noqa: BLE001 - every rank raises rank 0's error
                verdict = ("error", e)
        verdict = broadcast_object(verdict)
        if verdict[0] == "error":
            raise verdict[1]
        checkpoint, self.segments = verdict[1]
        wrapped = self._parallelize()
        optimizer = torch.optim.AdamW(
            _param_groups(self.model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2)
        )
        start = self._restore(Path(checkpoint), optimizer) if checkpoint else 0
        logger = MetricsLogger(self.run_dir, enabled=env.is_main)
        if start >= cfg.steps:  # a finished run: nothing to redo, nothing to record
            logger.close()
            return FitResult(start, float("nan"), None, self.run_dir)
        if checkpoint:
            # Only now, with every rank restored, drop what the interrupted run logged after its checkpoint.
            logger.truncate_after(start)
            if env.is_main:
                write_segments(self.run_dir, self.segments)

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
                done = step + 1
                if float(all_reduce_max(1.0 - finite)) > 0:
                    self._diverged(done, f"non-finite loss ({ {k: float(v) for k, v in sums.items()} })")
                # clip_grad_norm_ with an infinite bound returns the norm and leaves the gradients as they are.
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    self.model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
                )
                grad_norm_value = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
                if not math.isfinite(grad_norm_value):
                    self._diverged(done, f"non-finite gradient norm {grad_norm_value}")
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if hasattr(self.model, "on_step_end"):
                    self.model.on_step_end(step, cfg.steps)
                steps_since += 1
                is_last = done == cfg.steps
                # Weights are read in full only where it counts: before every checkpoint (no diverged
                # weights are ever saved) and at logged steps. A NaN weight between those makes the
                # next step's loss NaN, which the per-step check catches; a full read every step
                # costs about half an AdamW step.
                if done % cfg.ckpt_every == 0 or done % cfg.log_every == 0 or is_last:
                    weight = self._max_abs_weight()
                    if not weight <= EXPLODED_WEIGHT:
                        self._diverged(
                            done, f"non-finite or exploded weights (max |w| = {weight:.3g} > {EXPLODED_WEIGHT:.0e})"
                        )
                if done % cfg.log_every == 0 or is_last:
                    names = sorted(sums)
                    values = all_reduce_mean(torch.stack([sums[k] for k in names]))
                    logs = {k: float(v) for k, v in zip(names, values)}
                    now = time.perf_counter()
                    speed = steps_since / max(now - t_last, 1e-9)
                    t_last, steps_since = now, 0
                    logs.update(lr=lr, steps_per_s=speed, time_s=now - t0)
                    if cfg.grad_clip > 0:
                        logs["grad_norm"] = grad_norm_value
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
