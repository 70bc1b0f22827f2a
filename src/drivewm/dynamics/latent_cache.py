"""Pre-encoded camera windows: a latent world model's frozen KL autoencoder runs once per frame, not once per step.

As `token_cache.TokenizedWindows` does for token world models: `LatentWindows` encodes every frame of each
episode of a split once (the posterior mean, `KLAutoencoder.encode`), keeps the latents [T, C, h, w] in
memory, and serves the same windows as the dataset it wraps with `latents` in place of `camera`. Given a
`base` function (a residual flow's base of each frame, e.g. the Epona model's ego-warped latents), it also
caches each frame's base, made from the episode's ego motion and camera calibration, and serves it as
`base_latents`.
"""

from __future__ import annotations

import dataclasses

import torch
from rich.progress import track
from torch.utils.data import Dataset

from drivewm.conditions import relative_motion
from drivewm.data.manifest import StoreError
from drivewm.data.windows import WindowDataset
from drivewm.tokenizers.camera import CAMERA_KEY

BASE_KEYS = ("ego_pose", "camera_intrinsics", "camera_extrinsics")
"""What a cached base reads of each episode: the poses (the ego motion of each frame to the next) and the calibration."""


class LatentWindows(Dataset):
    """The windows of `windows`, with each frame's latent read from a per-episode cache."""

    def __init__(self, encode, windows: WindowDataset, *, device: torch.device | str = "cpu", chunk: int = 32,
                 progress: bool = True, base=None) -> None:
        """`encode`: uint8 frames [n, H, W, 3] on `device` -> latents [n, C, h, w]. `base` (optional): (latents
        [n, C, h, w], the ego motion of each frame to the next [n, 3], intrinsics [n, 3, 3], extrinsics
        [n, 4, 4]) -> the frames' bases [n, C, h, w]."""
        if CAMERA_KEY not in windows.keys:
            raise KeyError(f"data.keys must include {CAMERA_KEY!r} to encode it; got {windows.keys}")
        if base is not None:
            missing = [k for k in BASE_KEYS if k not in windows.store.keys()]
            if missing:
                raise StoreError(f"{windows.store.path / 'manifest.json'}: the residual base warps each frame by the "
                                 f"ego motion and the camera calibration; not every episode has {missing[0]!r}")
        self.windows = windows
        keys = [k for k in windows.keys if k != CAMERA_KEY]
        # The same windows without the image reads: only the small per-frame arrays stay.
        self.rest = WindowDataset(dataclasses.replace(windows.cfg, keys=keys), windows.split) if keys else None
        self.latents: dict[int, torch.Tensor] = {}
        self.bases: dict[int, torch.Tensor] = {}
        store = windows.store
        for ep in track(list(windows.episode_ids), description=f"encoding {windows.split}", disable=not progress):
            frames = store.episodes[ep]["frames"]
            parts = []
            for lo in range(0, frames, chunk):
                images = torch.from_numpy(store.read_window(ep, [CAMERA_KEY], lo, min(frames, lo + chunk))[CAMERA_KEY])
                parts.append(encode(images.to(device)).to("cpu", torch.float32))
            self.latents[ep] = torch.cat(parts)  # [frames, C, h, w]
            if base is not None:
                self.bases[ep] = self._bases(base, ep, chunk, device)

    def _bases(self, base, ep: int, chunk: int, device) -> torch.Tensor:
        """The bases [frames, C, h, w] of one episode's cached latents."""
        store, latents = self.windows.store, self.latents[ep]
        pose = torch.from_numpy(store.read(ep, "ego_pose")).float()
        motion = relative_motion(pose[None])[0]  # [frames, 3]; the last frame's successor is unknown: 0
        K, E = (torch.from_numpy(store.read(ep, key)).float() for key in BASE_KEYS[1:])
        parts = []
        for lo in range(0, latents.shape[0], chunk):
            z = latents[lo : lo + chunk].to(device)
            n = z.shape[0]
            parts.append(base(z, motion[lo : lo + n].to(device), K.expand(n, 3, 3).to(device),
                              E.expand(n, 4, 4).to(device)).to("cpu", torch.float32))
        return torch.cat(parts)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ep, start = self.windows.locate(int(index))
        item = dict(self.rest[index]) if self.rest is not None else {}
        item["latents"] = self.latents[ep][start : start + self.windows.window]
        if self.bases:
            item["base_latents"] = self.bases[ep][start : start + self.windows.window]
        return item

    def channel_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and standard deviation [C] of every cached latent."""
        flat = torch.cat([z.transpose(0, 1).flatten(1) for z in self.latents.values()], 1)  # [C, all positions]
        return flat.mean(1), flat.std(1)
