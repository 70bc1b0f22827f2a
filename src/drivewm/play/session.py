"""A drive inside a learned world model, headless: the core both front ends (terminal, web page) and scripts run on.

As DIAMOND's `WorldModelEnv` (eloialonso/diamond @ 5bcd1599755b4f2fae8e5e079e02f0728e174965, `src/envs/world_model_env.py`)
a session starts from a real window of recorded frames and then feeds each generated frame back as context. Each
step appends the chosen action, moves the ego by the simulator's own kinematics (`drivewm.sim.ego.bicycle_step`,
the physics substeps of the simulator that wrote the store), so the poses the world model is conditioned on move
as those it was trained on, and asks the forecaster for one frame: `forecast(context, 1, generator)` with the
context of the evaluation loop (the last `past` frames, and the ego keys of those frames plus the new one).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import torch

from drivewm.data.episode import relative_poses
from drivewm.data.manifest import StoreError
from drivewm.data.spec import bind_model_grids
from drivewm.data.store import EpisodeStore
from drivewm.data.windows import driving_command
from drivewm.config import ConfigError
from drivewm.errors import DrivewmError
from drivewm.forecaster import STATIC_KEYS, Forecaster
from drivewm.play.controls import RESET, STEER_KEYS, Controls, ego_sim_config
from drivewm.play.render import frame_image, save_gif
from drivewm.sim.ego import EgoState, bicycle_step

PLAYABLE = {"occ": "occupancy", "camera": "camera"}


def _episode_index(store: EpisodeStore, episode: int | str) -> int:
    """Position of an episode given by index or by name."""
    names = [r["name"] for r in store.episodes]
    if isinstance(episode, str) and not episode.lstrip("-").isdigit():
        if episode not in names:
            raise ConfigError(f"episode={episode!r}: no such episode in {store.path} (it has {', '.join(names[:5])}"
                              f"{', ...' if len(names) > 5 else ''})")
        return names.index(episode)
    i = int(episode)
    if not 0 <= i < len(names):
        raise ConfigError(f"episode={i}: {store.path} has episodes 0..{len(names) - 1}")
    return i


class Session:
    """One drive: a forecaster, the rolling context, the ego's state and levers, and every frame shown.

    `forecaster`: any world model of modality 'occ' or 'camera' (`drivewm.evaluation.load_forecaster`) or a
    baseline; `data`: the episode store whose window `episode`, frames `start` .. `start + past - 1` starts
    the drive (reset returns there). Sampling draws from one generator seeded with `seed` at each reset, so
    the same keys from the same start give the same frames.
    """

    def __init__(self, forecaster: Forecaster, data: str | Path, *, past: int = 5, episode: int | str = 0,
                 start: int = 0, seed: int = 0, accel_step: float = 1.0, steer_step: float = 0.1,
                 device: str = "cpu") -> None:
        self.forecaster, self.seed, self.device = forecaster, int(seed), torch.device(device)
        name = getattr(forecaster, "name", type(forecaster).__name__)
        self.modality = getattr(forecaster, "modality", None)
        if self.modality not in PLAYABLE:
            raise DrivewmError(f"{name}: play draws occupancy and camera world models; this one forecasts "
                               f"{self.modality!r} frames")
        self.store = EpisodeStore(data)
        keys = self.store.keys()
        if self.modality not in keys:
            raise StoreError(f"{name} forecasts {self.modality!r} frames ({PLAYABLE[self.modality]}), but "
                             f"{self.store.path} holds none (its keys: {', '.join(sorted(keys))})")
        for key in ("ego_pose", "action"):
            if key not in keys:
                raise StoreError(f"{self.store.path}: play moves the ego by its poses and actions; the store has no {key!r}")
        if past < 1:
            raise ConfigError(f"past must be >= 1, got {past}")
        self.past = int(past)
        self.episode = _episode_index(self.store, episode)
        record = self.store.episodes[self.episode]
        if list(record["arrays"]["action"]["shape"][1:]) != [2]:
            raise StoreError(f"{self.store.path / 'episodes' / record['name']}: action has shape "
                             f"{record['arrays']['action']['shape']}; the data contract's is [T, 2] (accel, steer)")
        if not 0 <= start <= record["frames"] - self.past:
            raise ConfigError(f"start={start}: episode {record['name']} has {record['frames']} frames, so a context of "
                              f"past={self.past} frames starts at 0..{record['frames'] - self.past}")
        self.start = int(start)
        if self.modality == "occ" and hasattr(forecaster, "cfg"):  # a model of another grid is refused here
            bind_model_grids(forecaster.cfg, self.store.grid, str(self.store.path))
        self.grid = self.store.grid if self.modality == "occ" else None
        self.limits = ego_sim_config(self.store.manifest)
        self.controls = Controls(limits=self.limits, accel_step=accel_step, steer_step=steer_step)
        self.calibration = {k: torch.from_numpy(self.store.read(self.episode, k))[None].to(self.device)
                            for k in STATIC_KEYS if self.modality == "camera" and k in keys}
        self.images: list[np.ndarray] = []
        """Every frame shown since the session began, as RGB (resets included): what a recording holds."""
        self.reset()

    # ----- the drive ---------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        """Back to the recorded start window, levers released, sampler reseeded; returns its last frame."""
        stop = self.start + self.past
        keys = [self.modality, "ego_pose", "action", *(["ego_speed"] if "ego_speed" in self.store.keys() else [])]
        arrays = self.store.read_window(self.episode, keys, self.start, stop)
        self.frames = deque((torch.from_numpy(f) for f in arrays[self.modality]), maxlen=self.past)
        self.poses = [p.astype(np.float64) for p in arrays["ego_pose"]]
        self.actions = [a.astype(np.float64) for a in arrays["action"]]
        if "ego_speed" in arrays:
            self.speed = float(arrays["ego_speed"][-1])
        elif self.past > 1:  # finite difference of the last two poses
            self.speed = float(np.hypot(*(self.poses[-1][:2] - self.poses[-2][:2])) * self.limits.hz)
        else:
            self.speed = 0.0
        self.controls.release()
        self.generator = torch.Generator(self.device).manual_seed(self.seed)
        self.steps = 0
        self.distance = 0.0
        self.images.append(self.image())
        return self.frame

    def press(self, key: str) -> np.ndarray:
        """One key of the key map (`drivewm.play.controls`): a driving key moves a lever and steps, 'r' resets.
        Returns the frame now shown."""
        if key == RESET:
            return self.reset()
        if key not in STEER_KEYS:
            raise ConfigError(f"key {key!r} is not a driving key ({', '.join(STEER_KEYS)}) nor {RESET!r}")
        return self.step(self.controls.press(key))

    @torch.no_grad()
    def step(self, action: tuple[float, float]) -> np.ndarray:
        """Apply action (accel m/s^2, steer rad; clipped to the store's limits) from the current frame to the
        next, move the ego, forecast the next frame and return it ([X, Y, Z] class ids or [H, W, 3] uint8)."""
        accel, steer = self.controls.clip(*action)
        self.actions[-1] = np.array([accel, steer])  # the current frame's action is the one now taken
        state = EgoState(*self.poses[-1].tolist(), v=self.speed)
        dt = 1.0 / self.limits.hz / self.limits.substeps
        for _ in range(self.limits.substeps):  # the simulator's own integration of one frame
            state = bicycle_step(state, accel, steer, dt, self.limits.max_speed)
        pose = state.pose()
        context = self.context(pose)
        try:
            out = self.forecaster.forecast(context, 1, generator=self.generator)
        except (KeyError, ValueError) as err:  # the model's own check of its inputs: frames, keys, sizes
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            raise DrivewmError(f"{self.forecaster.name} cannot forecast from {self.store.path}: {message}") from err
        if not isinstance(out, torch.Tensor):
            raise DrivewmError(f"{self.forecaster.name}: forecast returned {type(out).__name__}, not frames")
        frame = out[0, 0].to("cpu", self.frames[-1].dtype)
        if frame.shape != self.frames[-1].shape:
            raise DrivewmError(f"{self.forecaster.name}: forecast a frame of shape {tuple(frame.shape)}; the store's "
                               f"{self.modality} frames are {tuple(self.frames[-1].shape)}")
        self.distance += float(np.hypot(*(pose[:2] - self.poses[-1][:2])))
        self.frames.append(frame)
        self.poses.append(pose)
        self.actions.append(np.array([accel, steer]))  # held until the next step chooses its own
        self.speed = state.v
        self.steps += 1
        self.images.append(self.image())
        return self.frame

    def context(self, pose: np.ndarray) -> dict[str, torch.Tensor]:
        """The forecaster's context for the frame after the current one, reached at world pose `pose`: the last
        `past` frames [1, past, ...], the ego keys of those frames plus the next [1, past + 1, ...] and the
        episode's camera calibration (`STATIC_KEYS`, when the store has it)."""
        poses = np.stack(self.poses[-self.past:] + [pose])  # [past + 1, 3]
        actions = np.stack(self.actions[-self.past:] + [self.actions[-1]])
        tensors = {
            self.modality: torch.stack(list(self.frames)),
            "ego_pose": torch.from_numpy(poses.astype(np.float32)),
            "rel_pose": torch.from_numpy(relative_poses(poses, self.past - 1)),
            "action": torch.from_numpy(actions.astype(np.float32)),
            "command": torch.from_numpy(driving_command(poses)),
        }
        return {**{k: v[None].to(self.device) for k, v in tensors.items()}, **self.calibration}

    # ----- what is shown -----------------------------------------------------------------------
    @property
    def frame(self) -> np.ndarray:
        """The current frame, as the store holds it."""
        return self.frames[-1].numpy()

    @property
    def pose(self) -> np.ndarray:
        """The ego's world pose (x, y, yaw) at the current frame."""
        return self.poses[-1].copy()

    def image(self) -> np.ndarray:
        """RGB uint8 [H, W, 3] of the current frame."""
        return frame_image(self.frame, self.modality, self.grid)

    def status(self) -> str:
        return (f"step {self.steps}  t={self.steps / self.limits.hz:.1f}s  speed {self.speed:.1f} m/s  "
                f"pedal {self.controls.accel:+.1f} m/s^2  wheel {self.controls.steer:+.2f} rad  "
                f"{self.distance:.1f} m driven")

    def save_gif(self, path: str | Path) -> Path:
        """Every frame shown so far as a GIF at the store's frame rate."""
        return save_gif(self.images, path, self.limits.hz)
