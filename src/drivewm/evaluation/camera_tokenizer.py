"""`evaluate_camera_tokenizer`: a camera tokenizer's reconstructions scored as the camera tables score forecasts.

Clips of `clip_frames` consecutive frames (non-overlapping, from the store's `split`) go through the tokens
(`encode` then `decode`; a temporal tokenizer takes each clip whole, causally) and are scored against the truth
by the one evaluation loop (`evaluate_forecasters` with `CameraScoring`): PSNR and SSIM per frame of the clip,
and, with the user's extractor file and a protocol name, that protocol's Frechet distance with its bootstrap
interval and sample-count curve. The codes give codebook usage, perplexity and bits per frame
(`CodebookMetric`; VQ-VAE-2 per level; a continuous tokenizer has none). A picture shows one clip's inputs
over its reconstructions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from drivewm.data.config import DataConfig
from drivewm.data.windows import WindowDataset
from drivewm.errors import DrivewmError
from drivewm.evaluation.camera import frechet_setup
from drivewm.evaluation.loop import CameraScoring, evaluate_forecasters
from drivewm.metrics import CodebookMetric
from drivewm.tokenizers.camera import CAMERA_KEY, to_uint8
from drivewm.tokenizers.evaluate_run import TokenizerEvaluation
from drivewm.tokenizers.vqvae2 import VQVAE2


class CameraReconstruction:
    """A camera tokenizer as a forecaster that sees the future: it returns the frames as the tokens keep them,
    and counts the codes it used."""

    sees_future = True
    modality = "camera"

    def __init__(self, tokenizer: torch.nn.Module, name: str) -> None:
        self.tokenizer, self.name = tokenizer, name
        if isinstance(tokenizer, VQVAE2):
            sizes = {"top": tokenizer.quantize_t.codebook_size, "bottom": tokenizer.quantize_b.codebook_size}
        elif hasattr(tokenizer, "vocab_size"):
            sizes = {"": tokenizer.vocab_size}
        else:  # a continuous tokenizer (KL autoencoder): latents, no codebook
            sizes = {}
        self.codes = {level: CodebookMetric(vocab_size=v) for level, v in sizes.items()}

    @torch.no_grad()
    def forecast(self, future: dict[str, torch.Tensor], horizon: int, *,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        codes = self.tokenizer.encode(future[CAMERA_KEY][:, :horizon])
        levels = codes if isinstance(codes, tuple) else (codes,)
        for metric, ids in zip(self.codes.values(), levels):
            metric.update(ids.cpu())
        return to_uint8(self.tokenizer.decode(*levels))

    def code_statistics(self) -> dict:
        """usage, perplexity, bits per frame ... of each codebook (VQ-VAE-2: 'top_' / 'bottom_' prefixes, and
        their sum as bits_per_frame)."""
        out: dict = {}
        for level, metric in self.codes.items():
            c = metric.compute()
            prefix = f"{level}_" if level else ""
            out.update({prefix + k: c[k] for k in ("usage", "codes_used", "vocab_size", "perplexity",
                                                    "tokens_per_frame", "bits_per_frame", "entropy_bits_per_frame")})
        if len(self.codes) > 1:
            out["bits_per_frame"] = sum(out[f"{level}_bits_per_frame"] for level in self.codes)
        return out


def clip_dataset(data: str | Path, split: str, clip_frames: int, max_clips: int):
    """Non-overlapping clips of `clip_frames` camera frames of the store's `split` (each a window with one
    past frame, which the evaluation loop needs, and `clip_frames` future ones); an evenly spaced subset of
    `max_clips` (0: all)."""
    if clip_frames < 1:
        raise DrivewmError(f"--clip-frames must be >= 1, got {clip_frames}")
    cfg = DataConfig(path=str(data), past=1, future=clip_frames, keys=[CAMERA_KEY], stride=clip_frames)
    ds = WindowDataset(cfg, split)
    if len(ds) == 0:
        raise DrivewmError(f"{data}: the {split!r} split has no clip of {clip_frames + 1} camera frames "
                           f"(lower --clip-frames)")
    if max_clips and len(ds) > max_clips:
        return Subset(ds, np.linspace(0, len(ds) - 1, max_clips).round().astype(np.int64).tolist())
    return ds


def save_reconstruction_picture(path: Path, truth: torch.Tensor, reconstruction: torch.Tensor, *,
                                title: str) -> Path:
    """One clip: inputs [T, H, W, 3] uint8 on the top row, reconstructions under them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = min(truth.shape[0], 8)
    fig, axes = plt.subplots(2, t, figsize=(1.9 * t, 2.4), squeeze=False)
    for j in range(t):
        for i, (row, label) in enumerate(((truth, "input"), (reconstruction, "reconstruction"))):
            axes[i, j].imshow(row[j].numpy())
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if j == 0:
                axes[i, j].set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def evaluate_camera_tokenizer(model: torch.nn.Module, name: str, data: str | Path, out_dir: str | Path, *,
                              split: str = "val", batch_size: int = 8, clip_frames: int = 8, max_clips: int = 0,
                              device: str = "cpu", extractor: str = "", fd_protocol: str = "",
                              seed: int = 0) -> TokenizerEvaluation:
    """Reconstruct clips of the store `data` through the camera tokenizer `model` (module docstring); with
    `extractor` (a feature network file) and `fd_protocol` (a protocol name) also the Frechet distance of the
    reconstructed clips to the true ones, whose sample count is the number of clips."""
    ds = clip_dataset(data, split, clip_frames, max_clips)
    frechet = frechet_setup(extractor, fd_protocol, len(ds), clip_frames, device=device) if extractor else None
    rec = CameraReconstruction(model, name)
    ev = evaluate_forecasters([rec], DataLoader(ds, batch_size=batch_size, shuffle=False),
                              CameraScoring(clip_frames, frechet), past=1, horizon=clip_frames, device=device,
                              seed=seed)
    m = ev.metrics[name].compute()
    result = {"psnr": float(np.mean(m["psnr_per_step"])), "ssim": float(np.mean(m["ssim_per_step"])),
              "psnr_per_frame": list(m["psnr_per_step"]), "ssim_per_frame": list(m["ssim_per_step"])}
    if "fd" in m:
        fd = m["fd"]
        result.update({"fd_name": fd["name"], "fd": fd["value"], "fd_interval": fd["interval"],
                       "fd_curve": fd["curve"]})
    result.update(rec.code_statistics())
    result.update({"clips": ev.windows, "clip_frames": clip_frames, "frames": ev.windows * clip_frames})
    png = save_reconstruction_picture(Path(out_dir) / "results" / "tokenizer.png", ev.example["truth"],
                                      ev.example[name], title=f"{name}: inputs and reconstructions ({split})")
    return TokenizerEvaluation(result=result, modality="camera", picture=png, images=[png.name])

