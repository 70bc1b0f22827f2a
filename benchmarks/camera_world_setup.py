"""What bench_camera_decoding.py and bench_camera_tokenizers.py share: simulated camera windows, a camera tokenizer
and a token world model trained briefly on them with one seeded recipe, and forecasts scored against the truth.

Data: simulator episodes of the `tiny` world with the front camera at the asked size (training episodes seeded
0.., held-out episodes seeded 100000..: other maps, other traffic), cut into windows of past + future frames.
Training: AdamW at a constant learning rate, random windows, a fixed number of steps (the same for every model
compared); the tokenizer trains without its GAN (a brief budget never reaches its warm-up).
"""

from __future__ import annotations

import numpy as np
import torch

from drivewm.baselines.camera import CopyLastCamera
from drivewm.config import merge_into
from drivewm.forecaster import split_window
from drivewm.hub import config_to_dict
from drivewm.registry import build_model, config_class
from drivewm.sim import CameraSpec, sim_preset, simulate_episode
from drivewm.train.checkpoint import derive_token_fields
from drivewm.train.config import load_run_config

HELD_OUT_SEED = 100_000
KEYS = ("camera", "action", "ego_pose")


def camera_windows(seeds: range, frames: int, hw: tuple[int, int], window: int, stride: int = 1) -> dict[str, torch.Tensor]:
    """Windows {camera uint8 [N, T, H, W, 3], action [N, T, 2], ego_pose [N, T, 3]} of simulated episodes."""
    cfg = sim_preset("tiny", camera_spec=CameraSpec(height=hw[0], width=hw[1]), lidar=False, visibility=False)
    out: dict[str, list] = {k: [] for k in KEYS}
    for seed in seeds:
        ep = simulate_episode(cfg, seed, frames)
        for start in range(0, frames - window + 1, stride):
            for k in KEYS:
                out[k].append(np.asarray(ep[k][start : start + window]))
    return {k: torch.from_numpy(np.stack(v)) for k, v in out.items()}


def tokenizer_config(name: str, hw: tuple[int, int], codebook: int, channels: int = 32):
    """A camera VQ tokenizer at 8x downsampling (the camera world presets' grid), without its GAN."""
    fields = dict(image_size=list(hw), cnn=dict(channels=channels, channel_mult=[1, 2, 2, 4], num_res_blocks=1,
                                                attention=False),
                  z_channels=64, embed_dim=16, quantizer=dict(codebook_size=codebook), gan=dict(enabled=False))
    if name == "camera_temporal_vq":
        fields["heads"] = 4
    return merge_into(config_class(name)(), [("bench", fields)])


def preset_fields(path: str) -> dict:
    """The model fields of a camera world preset, without its tokenizer run (the bench trains its own)."""
    fields = config_to_dict(load_run_config(path).model)
    for key in ("name", "tokenizer_run", "tokenizer", "vocab_size", "token_shape", "max_frames"):
        fields.pop(key, None)
    return fields


def _fit(model: torch.nn.Module, steps: int, batch: int, lr: float, seed: int, draw) -> None:
    """`steps` AdamW steps of model.loss on the batches `draw(index)` returns, random indices from `seed`."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        out = model.loss(draw(g, batch))
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
    model.eval()


def train_tokenizer(name: str, windows: dict[str, torch.Tensor], hw: tuple[int, int], codebook: int, *,
                    steps: int, clip: int, batch: int = 4, lr: float = 1e-3, seed: int = 0, channels: int = 32):
    """A camera tokenizer trained on clips of `clip` frames (the VQ-GAN sees each frame alone): (config, model)."""
    cfg = tokenizer_config(name, hw, codebook, channels)
    torch.manual_seed(seed)
    model = build_model(cfg)
    cams = windows["camera"][:, :clip]

    def draw(g, b):
        return {"camera": cams[torch.randint(0, cams.shape[0], (b,), generator=g)]}

    _fit(model, steps, batch, lr, seed, draw)
    return cfg, model


@torch.no_grad()
def encode_windows(model, camera: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """Tokens [N, T, h, w] of windows camera [N, T, H, W, 3], each window one clip."""
    return torch.cat([model.encode(c) for c in camera.split(chunk)])


def train_world(kind: str, tokenizer_cfg, tokenizer, windows: dict[str, torch.Tensor], *, train_steps: int,
                batch: int = 8, lr: float = 1e-3, seed: int = 0, **fields):
    """A token world model (`kind`: gpt_world, maskgit_world) on the frozen `tokenizer`, trained on the windows'
    tokens (encoded once)."""
    cfg = merge_into(config_class(kind)(), [("bench", dict(tokenizer=config_to_dict(tokenizer_cfg),
                                                            max_frames=windows["camera"].shape[1], **fields))])
    derive_token_fields(cfg)
    torch.manual_seed(seed)
    model = build_model(cfg)
    model.tokenizer.load_state_dict(tokenizer.state_dict())
    tokens = encode_windows(model, windows["camera"])

    def draw(g, b):
        pick = torch.randint(0, tokens.shape[0], (b,), generator=g)
        return {"tokens": tokens[pick], "action": windows["action"][pick], "ego_pose": windows["ego_pose"][pick]}

    _fit(model, train_steps, batch, lr, seed, draw)
    return model


def frame_psnr(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean per-frame PSNR (dB, peak 255) of uint8 frames [..., H, W, 3]."""
    mse = (pred.float() - truth.float()).pow(2).flatten(-3).mean(-1)
    return float((10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))).mean())


@torch.no_grad()
def forecast(forecaster, windows: dict[str, torch.Tensor], past: int, horizon: int, chunk: int = 16,
             seed: int = 0) -> torch.Tensor:
    """uint8 [N, horizon, H, W, 3]: `forecaster` on every window's context, seeded."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for lo in range(0, windows["camera"].shape[0], chunk):
        context, _ = split_window({k: v[lo : lo + chunk] for k, v in windows.items()}, past)
        out.append(forecaster.forecast(context, horizon, generator=g))
    return torch.cat(out)


def copy_last_psnr(windows: dict[str, torch.Tensor], past: int) -> float:
    """PSNR at +1 of the copy-last baseline."""
    return frame_psnr(forecast(CopyLastCamera(), windows, past, 1)[:, 0], windows["camera"][:, past])
