"""Typed config of the training engine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class TrainConfig:
    steps: int = 1000
    """Optimizer steps to run in total."""
    batch_size: int = 8
    """Global batch size per optimizer step (split over processes and accumulation micro-steps)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step."""
    lr: float = 3e-4
    """Peak learning rate of AdamW."""
    min_lr_ratio: float = 0.1
    """Final learning rate of the cosine schedule as a fraction of the peak."""
    warmup_steps: int = 100
    """Linear warm-up steps before the cosine decay."""
    weight_decay: float = 0.05
    """AdamW weight decay (applied to matrices only, not to biases, norms or embeddings' gains)."""
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    """Max global gradient norm (0 disables clipping)."""
    precision: str = "auto"
    """'auto' (bf16 autocast on a GPU that supports it, fp32 elsewhere), 'bf16' or 'fp32'."""
    compile: bool = False
    """Wrap the model in torch.compile."""
    parallel: str = "ddp"
    """Under torchrun: 'ddp' (DistributedDataParallel) or 'fsdp' (fully_shard, for models that do not fit a device)."""
    device: str = "auto"
    """'auto' (cuda if present, else cpu), 'cpu' or 'cuda'."""
    seed: int = 0
    """Fixes data order, initialisation and sampling."""
    log_every: int = 10
    """Steps between lines of metrics.jsonl."""
    eval_every: int = 0
    """Steps between validation passes (0: only at the end)."""
    eval_batches: int = 8
    """Validation batches per pass."""
    ckpt_every: int = 200
    """Steps between checkpoints (the last step is always saved)."""
    keep_last: int = 2
    """Checkpoints kept besides the best one."""
    num_workers: int = 0
    """DataLoader workers (0: load in the training process)."""
    progress: bool = True
    """Show a progress bar."""
