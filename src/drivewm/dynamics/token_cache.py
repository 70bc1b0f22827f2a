"""Pre-tokenized windows: a token world model's frozen tokenizer runs once per frame, not once per step.

The tokenizer is frozen, so a frame's tokens never change during training; encoding every window of
every batch again costs about a third of a tiny world model's step on a CPU (and all of the prior's
decode + warp + encode with `warp_prior`). `TokenizedWindows` encodes each episode of a split once,
keeps its tokens (and, with `warp_prior`, the ids of its `WarpPrior`) in memory, and serves the same
windows as the dataset it wraps, with `tokens` [T, h, w] (and `prior` [T, h, w]) in place of `occ`. `TokenWorldModel.loss` reads those keys as it would read its own encodings.
"""

from __future__ import annotations

import dataclasses

import torch
from rich.progress import track
from torch.utils.data import Dataset

from drivewm.data.windows import WindowDataset
from drivewm.dynamics.base import TokenWorldModel
from drivewm.conditions import ego_conditions


class TokenizedWindows(Dataset):
    """The windows of `windows`, with the frames' tokens read from a per-episode cache."""

    def __init__(self, model: TokenWorldModel, windows: WindowDataset, *, device: torch.device | str = "cpu",
                 chunk: int = 32, progress: bool = True) -> None:
        if model.tokenizer is None or model.modality != "occ":
            raise ValueError("TokenizedWindows needs a world model with an occupancy tokenizer")
        if "occ" not in windows.keys:
            raise KeyError(f"data.keys must include 'occ' to tokenize it; got {windows.keys}")
        self.windows = windows
        keys = [k for k in windows.keys if k != "occ"]
        # The same windows without the occupancy reads: only the small per-frame arrays stay.
        self.rest = WindowDataset(dataclasses.replace(windows.cfg, keys=keys), windows.split) if keys else None
        self.tokens: dict[int, torch.Tensor] = {}
        self.prior: dict[int, torch.Tensor] = {}
        store = windows.store
        was_training = model.training
        model.eval()
        episodes = list(windows.episode_ids)
        for ep in track(episodes, description=f"tokenizing {windows.split}", disable=not progress):
            frames = store.episodes[ep]["frames"]
            tok = []
            for lo in range(0, frames, chunk):
                occ = torch.from_numpy(store.read_window(ep, ["occ"], lo, min(frames, lo + chunk))["occ"])
                tok.append(model.encode(occ[None].to(device))[0].to("cpu", torch.int32))  # [n, h, w]
            self.tokens[ep] = torch.cat(tok)
            if model.cfg.warp_prior:
                arrays = store.read_window(ep, ["action", "ego_pose"], 0, frames)
                cond = ego_conditions({k: torch.from_numpy(v)[None].to(device) for k, v in arrays.items()},
                                      model.cfg.condition)
                tokens = self.tokens[ep][None].to(device).long()
                prior = [model.make_prior(tokens[:, lo : lo + chunk], cond[:, lo : lo + chunk]).ids
                         for lo in range(0, frames, chunk)]
                self.prior[ep] = torch.cat(prior, 1)[0].to("cpu", torch.int32)  # [frames, h, w]
        model.train(was_training)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ep, start = self.windows.locate(int(index))
        stop = start + self.windows.window
        item = dict(self.rest[index]) if self.rest is not None else {}
        item["tokens"] = self.tokens[ep][start:stop].long()
        if ep in self.prior:
            item["prior"] = self.prior[ep][start:stop].long()
        return item


def tokenized(model: TokenWorldModel, dataset, device: torch.device | str = "cpu", progress: bool = True):
    """`dataset` pre-tokenized for a token world model with an occupancy tokenizer; anything else unchanged."""
    if (model.tokenizer is not None and model.modality == "occ"
            and isinstance(dataset, WindowDataset) and "occ" in dataset.keys):
        model.to(device)
        return TokenizedWindows(model, dataset, device=device, progress=progress)
    return dataset
