"""Window datasets: fixed-length runs of past + future frames cut from the episodes of a store.

A window of episode e starting at frame s covers frames s .. s + T - 1 with T = past + future; the
"current" frame is s + past - 1. Windows never cross episodes: episode e of length L gives the starts
0, stride, ... up to L - T - cfg.end_margin. Each item is a dict of tensors (the DataLoader adds the batch axis):

    <key>      the store's dtype, [T, ...] for every key of cfg.keys (occ uint8 [T, X, Y, Z], ...)
    rel_pose   float32 [T, 3] (when the store has poses): each frame's (x, y, yaw) in the ego frame of the current frame, so
               frame t's ego-frame content maps into the current frame by this rigid transform
    command    float32 [T, 3] (when the store has poses): each frame's driving command, one-hot (right, left,
               straight), from the episode's trajectory up to COMMAND_STEPS frames on (`driving_command`)
    lidar      float32 [T, N, 4] (when 'lidar' is a key): each frame's points, zero-padded to N
               (cfg.lidar_max_points, or the store's largest frame); frames with more points are
               subsampled at evenly spaced indices (deterministic)
    lidar_count int64 [T]: how many rows of each frame's ``lidar`` are real points
    agents     float32 [T, K, 8] and agents_valid bool [T, K] with K the store's largest agent count
               (episodes with fewer slots are padded with invalid zero rows, so batches collate)
    camera_intrinsics float32 [3, 3], camera_extrinsics float32 [4, 4] (when asked for in cfg.keys): the
               episode's camera calibration, once per window (no frame axis; `drivewm.forecaster.STATIC_KEYS`,
               which `split_window` hands whole to the context)

Split by episodes: with ``cfg.splits`` (a file of episode names per split, or the names themselves) each
split is the episodes it names, in the listed order; without, the last ``val_fraction`` of the episodes
(in store order; at least one when the store has more than one) form 'val', the rest 'train'. Zarr groups are opened lazily in each process,
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
from drivewm.forecaster import STATIC_KEYS
from drivewm.geometry import world_to_ego

SPLITS = ("train", "val")
COMMAND_STEPS = 6
"""Frames ahead (3 s at 2 Hz) whose lateral offset sets a frame's driving command (VAD's `fut_ts`)."""
COMMAND_THRESHOLD = 2.0
"""Metres of lateral offset that make a turn command (VAD)."""


def driving_command(ego_pose: np.ndarray, steps: int = COMMAND_STEPS, threshold: float = COMMAND_THRESHOLD) -> np.ndarray:
    """Per-frame driving commands [L, 3] one-hot (right, left, straight) of a trajectory ego_pose [L, 3] (x, y, yaw).

    VAD's rule (hustvl/VAD `tools/data_converter/vad_nuscenes_converter.py`, the commands OccWorld's `gt_mode`
    carries): the ego position `steps` frames on, in the frame's own ego frame; right when it lies >= threshold
    to the right, left when >= threshold to the left, else straight. VAD's LiDAR frame has x to the right,
    ours y to the left, so VAD's ``x >= 2`` (right) is our ``y <= -2``. Near the episode's end the last frame
    stands in for the missing ones (the last frame itself: straight)."""
    pose = np.asarray(ego_pose, dtype=np.float64)
    ahead = np.minimum(np.arange(len(pose)) + steps, len(pose) - 1)
    lateral = world_to_ego(pose[ahead, :2], pose)[:, 1]  # [L] metres to the left
    command = np.zeros((len(pose), 3), np.float32)
    command[lateral <= -threshold, 0] = 1.0
    command[lateral >= threshold, 1] = 1.0
    command[np.abs(lateral) < threshold, 2] = 1.0
    return command


def read_splits(splits: str | dict) -> dict[str, list[str]]:
    """Episode names by split from `data.splits`: a YAML/JSON file (or the mapping itself) of {split: [names] or
    a name file}; a name file holds one episode name a line (blank lines and '#' comments ignored) and a
    relative one lies beside the mapping's file."""
    from pathlib import Path

    import yaml

    base = Path(".")
    if isinstance(splits, str):
        path = Path(splits)
        if not path.is_file():
            raise ConfigError(f"data.splits: {splits} is not a file")
        splits = yaml.safe_load(path.read_text())
        if not isinstance(splits, dict):
            raise ConfigError(f"data.splits: {path} must map split names to episode-name lists or files")
        base = path.parent
    out = {}
    for split, names in splits.items():
        if split not in SPLITS:
            raise ConfigError(f"data.splits: unknown split {split!r}; valid: {', '.join(SPLITS)}")
        if isinstance(names, str):
            path = Path(names) if Path(names).is_absolute() else base / names
            if not path.is_file():
                raise ConfigError(f"data.splits.{split}: {names} is not a file")
            names = [ln.split("#")[0].strip() for ln in path.read_text().splitlines()]
            names = [n for n in names if n]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"data.splits.{split}: expected a list of episode names or a file of them")
        out[split] = names
    return out


def split_by_names(store_names: list[str], splits: str | dict, split: str) -> list[int]:
    """Store positions of the episodes `data.splits` lists for `split`, in the listed order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    names = read_splits(splits).get(split)
    if names is None:
        raise ConfigError(f"data.splits lists no {split!r} episodes")
    where = {n: i for i, n in enumerate(store_names)}
    missing = [n for n in names if n not in where]
    if missing:
        raise ConfigError(f"data.splits.{split}: episodes not in the store: {', '.join(missing[:5])}"
                          f"{' ...' if len(missing) > 5 else ''}")
    if len(set(names)) != len(names):
        raise ConfigError(f"data.splits.{split}: an episode is listed twice")
    return [where[n] for n in names]


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
        if cfg.past < 1 or cfg.future < 0 or cfg.stride < 1 or cfg.end_margin < 0:
            raise ConfigError(f"data.past must be >= 1, future >= 0, stride >= 1, end_margin >= 0; got {cfg.past}, "
                              f"{cfg.future}, {cfg.stride}, {cfg.end_margin}")
        self.cfg, self.split = cfg, split
        self.store = EpisodeStore(cfg.path, skip_bad=cfg.skip_bad, report=_report)
        if len(self.store) == 0:
            raise StoreError(f"{self.store.path / 'manifest.json'}: the store has no episodes")
        self.grid = self.store.grid
        self.window = cfg.past + cfg.future
        self.keys = list(cfg.keys)
        available = self.store.keys()
        for key in self.keys:
            if key not in FRAME_KEYS + STATIC_KEYS and key != "lidar":
                valid = FRAME_KEYS + ("lidar",) + STATIC_KEYS
                raise ConfigError(f"data.keys: {key!r} is not a per-frame key (nor a per-window one); valid: {', '.join(valid)}")
            if key not in available:
                raise StoreError(
                    f"{self.store.path / 'manifest.json'}: data.keys asks for {key!r}, which not every episode has; "
                    f"every episode has {sorted(available)}"
                )
        if cfg.splits:
            self.episode_ids = split_by_names([r["name"] for r in self.store.episodes], cfg.splits, split)
        else:
            self.episode_ids = list(split_episodes(len(self.store), cfg.val_fraction, split))
        reach = self.window + cfg.end_margin
        counts = [max(0, (self.store.episodes[e]["frames"] - reach) // cfg.stride + 1) for e in self.episode_ids]
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
        frame_keys = [k for k in dict.fromkeys(self.keys + poses) if k != "lidar" and k not in STATIC_KEYS]
        arrays = self.store.read_window(ep, frame_keys, start, stop)
        out: dict[str, torch.Tensor] = {}
        for key in self.keys:
            if key in STATIC_KEYS:
                out[key] = torch.from_numpy(np.ascontiguousarray(self.store.read(ep, key)))
                continue
            if key == "lidar":
                points, counts = self.lidar_frames(ep, start, stop)
                out["lidar"], out["lidar_count"] = torch.from_numpy(points), torch.from_numpy(counts)
                continue
            arr = arrays[key]
            if key in ("agents", "agents_valid", "agents_velocity") and arr.shape[1] < self.agent_slots:  # pad K
                arr = np.pad(arr, [(0, 0), (0, self.agent_slots - arr.shape[1])] + [(0, 0)] * (arr.ndim - 2))
            out[key] = torch.from_numpy(np.ascontiguousarray(arr))
        if self.posed:
            out["rel_pose"] = torch.from_numpy(relative_poses(arrays["ego_pose"], self.cfg.past - 1))
            out["command"] = torch.from_numpy(self._command(ep, start, arrays["ego_pose"]))
        return out

    def _command(self, ep: int, start: int, window_pose: np.ndarray) -> np.ndarray:
        """Driving commands [T, 3] of the window's frames, from the episode's trajectory past the window's end."""
        stop = start + self.window
        end = min(stop + COMMAND_STEPS, self.store.episodes[ep]["frames"])
        after = self.store.read(ep, "ego_pose", stop, end) if end > stop else window_pose[:0]
        return driving_command(np.concatenate([window_pose, after]))[: self.window]

    def lidar_frames(self, ep: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Sweeps start..stop of episode `ep` as a window serves them: points [T, N, 4] zero-padded (or evenly
        subsampled) to N rows, and counts [T] of real rows."""
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
