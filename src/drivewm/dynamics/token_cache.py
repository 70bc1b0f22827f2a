"""Pre-tokenized windows: a token world model's frozen tokenizer runs once per frame, not once per step.

The tokenizer is frozen, so a frame's tokens never change during training; encoding every window of
every batch again costs about a third of a tiny world model's step on a CPU (and all of the prior's
decode + warp + encode with `warp_prior`). `TokenizedWindows` encodes each episode of a split once,
keeps its tokens (and, with `warp_prior`, the ids of its `WarpPrior`) in memory, and serves the same
windows as the dataset it wraps, with `tokens` [T, h, w] (and `prior` [T, h, w]) in place of the frames
(`occ`, `camera` for a camera VQ tokenizer, `lidar` for a LiDAR tokenizer: each sweep padded as the windows
serve it). `TokenWorldModel.loss` reads those keys as it would read its own encodings. A camera prior warps
each frame by its episode's calibration, the `camera_intrinsics` / `camera_extrinsics` that data.keys must ask
for (the windows then serve them too, as a forecast's context carries them).

A tokenizer that mixes frames in time (DrivingWorld's temporal VQ) gives a frame tokens that depend on the
frames before it in the clip it is encoded with; a forecast encodes its context as one clip, so the cache
encodes each window as its own clip (the same tokens `loss` would compute from the window), not each episode.
"""

from __future__ import annotations

import dataclasses

import torch
from rich.progress import track
from torch.utils.data import Dataset

from drivewm.data.windows import WindowDataset
from drivewm.dynamics.base import TokenWorldModel
from drivewm.conditions import ego_conditions
from drivewm.forecaster import STATIC_KEYS
from drivewm.tokenizers.temporal_vq import TemporalVQ

CACHED_MODALITIES = ("occ", "camera", "lidar")


class TokenizedWindows(Dataset):
    """The windows of `windows`, with the frames' tokens read from a per-episode (or, for a tokenizer that mixes
    frames in time, per-window) cache."""

    def __init__(self, model: TokenWorldModel, windows: WindowDataset, *, device: torch.device | str = "cpu",
                 chunk: int = 32, progress: bool = True) -> None:
        if model.tokenizer is None or model.modality not in CACHED_MODALITIES:
            raise ValueError("TokenizedWindows needs a world model with an occupancy, camera or LiDAR tokenizer")
        key = model.modality
        if key not in windows.keys:
            raise KeyError(f"data.keys must include {key!r} to tokenize it; got {windows.keys}")
        self.windows = windows
        keys = [k for k in windows.keys if k != key]
        # The same windows without the frame reads: only the small per-frame arrays stay.
        self.rest = WindowDataset(dataclasses.replace(windows.cfg, keys=keys), windows.split) if keys else None
        self.tokens: dict[int, torch.Tensor] = {}
        self.prior: dict[int, torch.Tensor] = {}
        self.per_window = isinstance(model.tokenizer, TemporalVQ)
        store = windows.store
        was_training = model.training
        model.eval()
        episodes = list(windows.episode_ids)
        for ep in track(episodes, description=f"tokenizing {windows.split}", disable=not progress):
            frames = store.episodes[ep]["frames"]
            if self.per_window:
                self.tokens[ep] = self._window_tokens(model, ep, key, device, chunk)
                continue
            tok = []
            for lo in range(0, frames, chunk):
                hi = min(frames, lo + chunk)
                if key == "lidar":
                    points, count = (torch.from_numpy(a)[None].to(device) for a in windows.lidar_frames(ep, lo, hi))
                    codes = model.encode(points, count)
                else:
                    codes = model.encode(torch.from_numpy(store.read_window(ep, [key], lo, hi)[key])[None].to(device))
                tok.append(codes[0].to("cpu", torch.int32))  # [n, h, w]
            self.tokens[ep] = torch.cat(tok)
            if model.cfg.warp_prior:
                arrays = store.read_window(ep, ["action", "ego_pose"], 0, frames)
                cond = ego_conditions({k: torch.from_numpy(v)[None].to(device) for k, v in arrays.items()},
                                      model.cfg.condition)
                # Camera tokens warp by the episode's calibration, which the windows serve when data.keys asks.
                served = {k: torch.from_numpy(store.read(ep, k))[None].to(device) for k in STATIC_KEYS
                          if k in windows.keys}
                calibration = model.prior_calibration(served, "data.keys")
                tokens = self.tokens[ep][None].to(device).long()
                prior = [model.make_prior(tokens[:, lo : lo + chunk], cond[:, lo : lo + chunk], calibration).ids
                         for lo in range(0, frames, chunk)]
                self.prior[ep] = torch.cat(prior, 1)[0].to("cpu", torch.int32)  # [frames, h, w]
        model.train(was_training)

    def _window_tokens(self, model: TokenWorldModel, ep: int, key: str, device, chunk: int) -> torch.Tensor:
        """Tokens [n_windows, T, h, w] of episode `ep`'s windows (window k starts at frame k * stride), each
        encoded as its own clip."""
        store, window, stride = self.windows.store, self.windows.window, self.windows.cfg.stride
        frames = torch.from_numpy(store.read_window(ep, [key], 0, store.episodes[ep]["frames"])[key])
        clips = [frames[s : s + window] for s in range(0, frames.shape[0] - window + 1, stride)]
        per_batch = max(1, chunk // window)
        tok = [model.encode(torch.stack(clips[i : i + per_batch]).to(device)).to("cpu", torch.int32)
               for i in range(0, len(clips), per_batch)]  # [n, T, h, w]
        return torch.cat(tok) if tok else torch.zeros(0, window, *model.token_shape, dtype=torch.int32)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ep, start = self.windows.locate(int(index))
        stop = start + self.windows.window
        item = dict(self.rest[index]) if self.rest is not None else {}
        if self.per_window:
            item["tokens"] = self.tokens[ep][start // self.windows.cfg.stride].long()
        else:
            item["tokens"] = self.tokens[ep][start:stop].long()
        if ep in self.prior:
            item["prior"] = self.prior[ep][start:stop].long()
        return item


def tokenized(model: TokenWorldModel, dataset, device: torch.device | str = "cpu", progress: bool = True):
    """`dataset` pre-tokenized for a token world model with an occupancy, camera or LiDAR tokenizer; anything
    else unchanged."""
    if (model.tokenizer is not None and model.modality in CACHED_MODALITIES
            and isinstance(dataset, WindowDataset) and model.modality in dataset.keys):
        model.to(device)
        return TokenizedWindows(model, dataset, device=device, progress=progress)
    return dataset
