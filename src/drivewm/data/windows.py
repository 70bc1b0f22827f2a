"""Window datasets: fixed-length runs of past + future frames cut from the episodes of a store.

A window of episode e starting at frame s covers frames s .. s + T - 1 with T = past + future; the
"current" frame is s + past - 1. Windows never cross episodes: episode e of length L gives the starts
0, stride, ... up to L - T. Each item is a dict of tensors (the DataLoader adds the batch axis):

    <key>      the store's dtype, [T, ...] for every key of cfg.keys (occ uint8 [T, X, Y, Z], ...)
    rel_pose   float32 [T, 3] (when the store has poses): each frame's (x, y, yaw) in the ego frame of the current frame, so
               frame t's ego-frame content maps into the current frame by this rigid transform
    lidar      float32 [T, N, 4] (when 'lidar' is a key): each frame's points, zero-padded to N
               (cfg.lidar_max_points, or the store's largest frame); frames with more points are
               subsampled at evenly spaced indices (deterministic)
    lidar_count int64 [T]: how many rows of each frame's ``lidar`` are real points
    agents     float32 [T, K, 8] and agents_valid bool [T, K] with K the store's largest agent count
               (episodes with fewer slots are padded with invalid zero rows, so batches collate)

Split by episodes: the last ``val_fraction`` of the episodes (in store order; at least one when the
store has more than one) form 'val', the rest 'train'. Zarr groups are opened lazily in each process,
so the dataset works with DataLoader workers and with DistributedSampler (a plain map-style dataset).
"""

from __future__ import annotations

import bisect
import sys

import numpy as np
import torch
from torch.utils.data import Dataset

from drivewm.config import ConfigError
from drivewm.data.config import DataConfig
from drivewm.data.episode import FRAME_KEYS, relative_poses
from drivewm.data.manifest import StoreError, read_manifest
from drivewm.data.spec import GridSpec
from drivewm.data.store import EpisodeStore

SPLITS = ("train", "val")


def split_episodes(n: int, val_fraction: float, split: str) -> range:
    """Episode positions of a split: the last round(n * val_fraction) (>= 1 if n > 1) are 'val'."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
    n_val = 0 if n <= 1 or val_fraction == 0 else min(n - 1, max(1, round(n * val_fraction)))
    return range(0, n - n_val) if split == "train" else range(n - n_val, n)


def _report(msg: str) -> None:
    print(f"drivewm.data: skipping bad episode: {msg}", file=sys.stderr)


class WindowDataset(Dataset):
    """Windows of ``cfg.past + cfg.future`` frames from the ``split`` episodes of the store at ``cfg.path``."""

    def __init__(self, cfg: DataConfig, split: str = "train") -> None:
        if cfg.past < 1 or cfg.future < 0 or cfg.stride < 1:
            raise ConfigError(f"data.past must be >= 1, future >= 0, stride >= 1; got {cfg.past}, {cfg.future}, {cfg.stride}")
        self.cfg, self.split = cfg, split
        self.store = EpisodeStore(cfg.path, skip_bad=cfg.skip_bad, report=_report)
        if len(self.store) == 0:
            raise StoreError(f"{self.store.path / 'manifest.json'}: the store has no episodes")
        self.grid = self.store.grid
        self.window = cfg.past + cfg.future
        self.keys = list(cfg.keys)
        available = self.store.keys()
        for key in self.keys:
            if key not in FRAME_KEYS and key != "lidar":
                raise ConfigError(f"data.keys: {key!r} is not a per-frame key; valid: {', '.join(FRAME_KEYS + ('lidar',))}")
            if key not in available:
                raise StoreError(
                    f"{self.store.path / 'manifest.json'}: data.keys asks for {key!r}, which not every episode has; "
                    f"every episode has {sorted(available)}"
                )
        self.episode_ids = list(split_episodes(len(self.store), cfg.val_fraction, split))
        counts = [max(0, (self.store.episodes[e]["frames"] - self.window) // cfg.stride + 1) for e in self.episode_ids]
        self._cum = np.cumsum([0] + counts).tolist()
        if split == "train" and self._cum[-1] == 0:
            longest = max((self.store.episodes[e]["frames"] for e in self.episode_ids), default=0)
            raise StoreError(
                f"{self.store.path / 'manifest.json'}: no training window of {self.window} frames (past {cfg.past} + future {cfg.future}); "
                f"the longest training episode has {longest} frames"
            )
        self.posed = "ego_pose" in available  # camera-only stores of unposed video have no poses
        self.agent_slots = max((r["arrays"].get("agents", {"shape": [0, 0]})["shape"][1] for r in self.store.episodes), default=0)
        self.lidar_points = cfg.lidar_max_points or max(
            (r.get("lidar_max_points", 0) for r in self.store.episodes), default=0
        )

    def __len__(self) -> int:
        return self._cum[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """(episode position in the store, first frame) of window ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        j = bisect.bisect_right(self._cum, index) - 1
        return self.episode_ids[j], (index - self._cum[j]) * self.cfg.stride

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ep, start = self.locate(int(index))
        stop = start + self.window
        poses = ["ego_pose"] if self.posed else []
        frame_keys = [k for k in dict.fromkeys(self.keys + poses) if k != "lidar"]
        arrays = self.store.read_window(ep, frame_keys, start, stop)
        out: dict[str, torch.Tensor] = {}
        for key in self.keys:
            if key == "lidar":
                points, counts = self._lidar(ep, start, stop)
                out["lidar"], out["lidar_count"] = torch.from_numpy(points), torch.from_numpy(counts)
                continue
            arr = arrays[key]
            if key in ("agents", "agents_valid") and arr.shape[1] < self.agent_slots:  # pad K
                arr = np.pad(arr, [(0, 0), (0, self.agent_slots - arr.shape[1])] + [(0, 0)] * (arr.ndim - 2))
            out[key] = torch.from_numpy(np.ascontiguousarray(arr))
        if self.posed:
            out["rel_pose"] = torch.from_numpy(relative_poses(arrays["ego_pose"], self.cfg.past - 1))
        return out

    def _lidar(self, ep: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        points, off = self.store.read_lidar(ep, start, stop)
        n = self.lidar_points
        padded = np.zeros((stop - start, n, 4), np.float32)  # [T, N, 4]
        counts = np.zeros(stop - start, np.int64)
        for t in range(stop - start):
            frame = points[off[t] : off[t + 1]]
            if len(frame) > n:  # evenly spaced subsample keeps the scan's coverage
                frame = frame[np.linspace(0, len(frame) - 1, n).astype(np.int64)]
            padded[t, : len(frame)] = frame
            counts[t] = len(frame)
        return padded, counts


def build_dataset(cfg: DataConfig, split: str) -> WindowDataset:
    """The dataset the training engine reads: windows of cfg.past + cfg.future frames of one split."""
    return WindowDataset(cfg, split)


def dataset_grid(cfg: DataConfig) -> GridSpec:
    """The grid spec of the store at cfg.path, from its manifest (models size themselves from it)."""
    return GridSpec.from_dict(read_manifest(cfg.path)["grid"])
