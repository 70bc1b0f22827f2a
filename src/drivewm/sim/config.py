"""Typed configuration of the procedural driving simulator, its named presets and the ego constants.

Every field is validated in ``__post_init__`` so that a bad value fails at construction with one
message naming the field (``drivewm.errors.ConfigError``), not deep inside a rollout.

Two roadside generators: ``roadside="random"`` (the first one: lots, trees and parked cars drawn at
random along each road; presets ``occ3d``, ``small``, ``tiny``, ``micro``) and ``roadside="street"``
(streets whose structure runs on beyond the view: building rows on one setback with gaps at driveways
and junctions, tree rows at a fixed spacing, parked cars in rows in the parking lanes, barriers along
stretches; with traffic lights at junctions and lane changes; presets ``*_street``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from drivewm.data.spec import GRID_PRESETS, GridSpec, grid_preset
from drivewm.errors import ConfigError

# Ego footprint of the nuScenes data-collection car (Renault Zoe), as used by ST-P3 / UniAD planning
# metrics. The ego pose is the rear-axle centre on the ground (the nuScenes ego frame); the box
# centre sits EGO_BOX_OFFSET_X metres ahead of it.
EGO_LENGTH = 4.084
EGO_WIDTH = 1.85
EGO_HEIGHT = 1.56
EGO_WHEELBASE = 2.588
EGO_BOX_OFFSET_X = 1.342

LAYOUTS = ("straight", "curve", "intersection", "t_junction", "roundabout")
# Drawn by default. The roundabout is opt-in: in long, dense runs its ring can gridlock (see its docs).
DEFAULT_LAYOUTS = ("straight", "curve", "intersection", "t_junction")
ROADSIDES = ("random", "street")
# What fits in 100 m: a lane holds vehicles of the shortest kind (a motorcycle, 2.1 m) at the IDM jam
# distance (2 m) behind each other; a sidewalk holds pedestrians (0.6 m) a step apart, two abreast.
MAX_VEHICLE_DENSITY = 100.0 / (2.1 + 2.0)
MAX_PEDESTRIAN_DENSITY = 2 * 100.0 / (0.6 + 0.4)
CAR_SLOT_MIN = 5.0  # m: the longest parked car (4.8 m) and a hand's width
TREE_SPACING_MIN = 5.0  # m: two crowns of the largest radius (2.5 m) side by side


def _check(cond: bool, name: str, msg: str, value: object) -> None:
    if not cond:
        raise ConfigError(f"SimConfig.{name}: {msg}, got {value!r}")


@dataclass(kw_only=True)
class LidarSpec:
    """A spinning LiDAR on the ego roof, cast against the 3D scene."""

    beams: int = 32
    """Number of laser beams (rows), spread evenly over the elevation range."""
    azimuth_steps: int = 1024
    """Firings per revolution (columns) over 360 degrees."""
    elevation_min: float = -30.0
    """Lowest beam elevation in degrees (nuScenes HDL-32E: about -30.67)."""
    elevation_max: float = 10.0
    """Highest beam elevation in degrees (nuScenes HDL-32E: about +10.67)."""
    max_range: float = 70.0
    """Returns beyond this 3D range (m) are dropped."""
    height: float = 1.84
    """Mounting height of the sensor above the ground (m), in the ego frame."""
    dropout: float = 0.0
    """Probability that a return is randomly dropped."""
    range_noise: float = 0.0
    """Standard deviation (m) of Gaussian noise added to each return's range."""


@dataclass(kw_only=True)
class CameraSpec:
    """A forward pinhole camera, rendered by ray casting, shaded by class and distance."""

    height: int = 64
    """Image height in pixels."""
    width: int = 128
    """Image width in pixels."""
    fov: float = 90.0
    """Horizontal field of view in degrees."""
    mount_height: float = 1.5
    """Camera height above the ground (m)."""
    max_range: float = 80.0
    """Farther surfaces are drawn as sky / fog (m)."""


@dataclass(kw_only=True)
class SimConfig:
    """Everything that defines a simulated episode besides its seed and length."""

    grid: str = "occ3d"
    """Name of the occupancy grid preset (drivewm.data.spec.grid_preset): occ3d, small, tiny, micro."""
    hz: float = 2.0
    """Sensor / episode frame rate (frames per second); nuScenes keyframes and Occ3D use 2 Hz."""
    physics_dt: float = 0.1
    """Largest integration step (s) of ego and traffic between frames."""
    layouts: tuple[str, ...] = DEFAULT_LAYOUTS
    """Road layouts drawn from (uniformly, per seed): straight, curve, intersection, t_junction; roundabout on request."""
    map_resolution: float = 0.0
    """Cell size (m) of the world raster; 0 picks half the grid's voxel size (clipped to 0.1..0.4)."""
    vehicle_density: float = 1.0
    """Other vehicles per 100 m of lane."""
    pedestrian_density: float = 1.0
    """Pedestrians per 100 m of sidewalk."""
    max_vehicles: int = 24
    """Upper bound on the number of other vehicles."""
    max_pedestrians: int = 16
    """Upper bound on the number of pedestrians."""
    target_speed: float = 9.0
    """Desired speed (m/s) of the ego expert; other vehicles draw theirs around it."""
    expert_noise: float = 0.0
    """Scale of the temporally correlated (Ornstein-Uhlenbeck) noise on the expert's actions, 0 = clean."""
    max_accel: float = 4.0
    """Largest ego acceleration (m/s^2)."""
    max_brake: float = 8.0
    """Largest ego deceleration (m/s^2), a positive number."""
    max_steer: float = 0.6
    """Largest steering angle magnitude (rad)."""
    max_speed: float = 20.0
    """Ego speed cap (m/s)."""
    lidar: bool = True
    """Produce LiDAR sweeps."""
    camera: bool = True
    """Produce front-camera images."""
    visibility: bool = True
    """Produce the occupancy visibility mask (like Occ3D mask_lidar)."""
    lidar_spec: LidarSpec = field(default_factory=LidarSpec)
    """The LiDAR's beams, azimuth steps, elevation range, range, dropout and noise."""
    camera_spec: CameraSpec = field(default_factory=CameraSpec)
    """The camera's image size and field of view."""
    camera_calibration: bool = False
    """Record the camera's `camera_intrinsics` / `camera_extrinsics` in each episode (the `*_camera` presets do;
    off elsewhere so that the stores of the older presets keep their bytes)."""
    episode_steps: int = 40
    """Frames per episode of DrivingEnv before truncation (simulate_episode takes its own count)."""
    terminate_on_collision: bool = True
    """DrivingEnv ends the episode at the first collision."""
    roadside: str = "random"
    """Roadside generator: "random" (lots, trees and parked cars drawn at random) or "street" (rows that run on)."""
    tree_spacing: float = 9.0
    """Street roadside: metres between the trees of a row (each side jitters it by at most 10 %)."""
    parking_pitch: float = 6.5
    """Street roadside: metres between the parked-car slots of a parking lane."""
    parked_fraction: float = 0.8
    """Street roadside: share of parking slots that hold a car."""
    traffic_lights: bool = False
    """Junctions (not roundabouts) are signalled: two phases, green for light_green s, then all red light_clear s."""
    light_green: float = 12.0
    """Green time (s) of each signal phase."""
    light_clear: float = 3.0
    """All-red clearance time (s) between the phases."""
    lane_changes: bool = False
    """Vehicles on multi-lane roads change lanes to pass a slower leader when the other lane is free."""

    def __post_init__(self) -> None:
        _check(self.grid in GRID_PRESETS, "grid", f"unknown grid preset (valid: {', '.join(GRID_PRESETS)})", self.grid)
        _check(self.hz > 0 and self.hz <= 100, "hz", "must be in (0, 100]", self.hz)
        _check(0 < self.physics_dt <= 1.0, "physics_dt", "must be in (0, 1]", self.physics_dt)
        self.layouts = tuple(self.layouts)
        _check(len(self.layouts) > 0, "layouts", "needs at least one layout", self.layouts)
        for lay in self.layouts:
            _check(lay in LAYOUTS, "layouts", f"unknown layout (valid: {', '.join(LAYOUTS)})", lay)
        _check(self.map_resolution == 0 or 0.05 <= self.map_resolution <= 1.0, "map_resolution",
               "must be 0 (auto) or in [0.05, 1.0] m", self.map_resolution)
        for name in ("vehicle_density", "pedestrian_density", "expert_noise"):
            v = getattr(self, name)
            _check(v >= 0 and v == v, name, "must be >= 0", v)
        _check(self.vehicle_density <= MAX_VEHICLE_DENSITY, "vehicle_density",
               f"more vehicles per 100 m of lane than fit bumper to bumper ({MAX_VEHICLE_DENSITY:.1f})", self.vehicle_density)
        _check(self.pedestrian_density <= MAX_PEDESTRIAN_DENSITY, "pedestrian_density",
               f"more pedestrians per 100 m of sidewalk than fit ({MAX_PEDESTRIAN_DENSITY:.0f})", self.pedestrian_density)
        _check(self.roadside in ROADSIDES, "roadside", f"unknown roadside (valid: {', '.join(ROADSIDES)})", self.roadside)
        _check(self.tree_spacing >= TREE_SPACING_MIN, "tree_spacing",
               f"must be >= {TREE_SPACING_MIN} m (two crowns side by side)", self.tree_spacing)
        _check(self.parking_pitch >= CAR_SLOT_MIN, "parking_pitch", f"must be >= {CAR_SLOT_MIN} m (one car per slot)",
               self.parking_pitch)
        _check(0 <= self.parked_fraction <= 1, "parked_fraction", "must be in [0, 1]", self.parked_fraction)
        _check(self.light_green > 0, "light_green", "must be > 0 s", self.light_green)
        _check(self.light_clear >= 0, "light_clear", "must be >= 0 s", self.light_clear)
        for name in ("max_vehicles", "max_pedestrians"):
            _check(0 <= getattr(self, name) <= 256, name, "must be in [0, 256]", getattr(self, name))
        for name in ("target_speed", "max_accel", "max_brake", "max_speed"):
            _check(getattr(self, name) > 0, name, "must be > 0", getattr(self, name))
        _check(0 < self.max_steer < 1.2, "max_steer", "must be in (0, 1.2) rad", self.max_steer)
        _check(self.target_speed <= self.max_speed, "target_speed", "must not exceed max_speed", self.target_speed)
        _check(self.episode_steps >= 1, "episode_steps", "must be >= 1", self.episode_steps)
        ls = self.lidar_spec
        _check(ls.beams >= 1, "lidar_spec.beams", "must be >= 1", ls.beams)
        _check(ls.azimuth_steps >= 4, "lidar_spec.azimuth_steps", "must be >= 4", ls.azimuth_steps)
        _check(-89 < ls.elevation_min < ls.elevation_max < 89, "lidar_spec.elevation_min/max",
               "need -89 < elevation_min < elevation_max < 89 degrees", (ls.elevation_min, ls.elevation_max))
        _check(1 <= ls.max_range <= 300, "lidar_spec.max_range", "must be in [1, 300] m", ls.max_range)
        _check(0.2 <= ls.height <= 5, "lidar_spec.height", "must be in [0.2, 5] m", ls.height)
        _check(0 <= ls.dropout < 1, "lidar_spec.dropout", "must be in [0, 1)", ls.dropout)
        _check(ls.range_noise >= 0, "lidar_spec.range_noise", "must be >= 0", ls.range_noise)
        cs = self.camera_spec
        _check(cs.height >= 2 and cs.width >= 2, "camera_spec.height/width", "must be >= 2", (cs.height, cs.width))
        _check(10 <= cs.fov <= 170, "camera_spec.fov", "must be in [10, 170] degrees", cs.fov)
        _check(0.2 <= cs.mount_height <= 5, "camera_spec.mount_height", "must be in [0.2, 5] m", cs.mount_height)
        _check(1 <= cs.max_range <= 300, "camera_spec.max_range", "must be in [1, 300] m", cs.max_range)

    @property
    def grid_spec(self) -> GridSpec:
        return grid_preset(self.grid)

    @property
    def raster_resolution(self) -> float:
        if self.map_resolution > 0:
            return float(self.map_resolution)
        return float(min(0.4, max(0.1, self.grid_spec.voxel_size / 2)))

    @property
    def substeps(self) -> int:
        """Physics steps per frame: the smallest count whose step does not exceed physics_dt."""
        return max(1, int(-(-1.0 / (self.hz * self.physics_dt) // 1)))


SIM_PRESETS: dict[str, SimConfig] = {
    "occ3d": SimConfig(grid="occ3d"),
    "small": SimConfig(grid="small", lidar_spec=LidarSpec(beams=32, azimuth_steps=512)),
    "tiny": SimConfig(
        grid="tiny",
        lidar_spec=LidarSpec(beams=16, azimuth_steps=256, max_range=50.0),
        camera_spec=CameraSpec(height=32, width=64),
    ),
    "micro": SimConfig(
        grid="micro",
        lidar_spec=LidarSpec(beams=8, azimuth_steps=128, max_range=40.0),
        camera_spec=CameraSpec(height=16, width=32),
        max_vehicles=12,
        max_pedestrians=8,
    ),
}
# Camera presets: the front camera at the sizes camera tokenizers and world models train on (64 x 128, 128 x 256,
# 256 x 512), calibration recorded.
SIM_PRESETS.update({
    f"{name}_camera": replace(SIM_PRESETS[name], camera_spec=CameraSpec(height=h, width=2 * h), camera_calibration=True)
    for name, h in (("tiny", 64), ("small", 128), ("occ3d", 256))
})
STREET = dict(roadside="street", traffic_lights=True, lane_changes=True)
SIM_PRESETS.update({f"{name}_street": replace(SIM_PRESETS[name], **STREET) for name in ("tiny", "micro")})


def sim_preset(name: str, **overrides: object) -> SimConfig:
    """A fresh copy of a named preset (occ3d, small, tiny, micro; tiny_street, micro_street; tiny_camera,
    small_camera, occ3d_camera), with optional field overrides."""
    if name not in SIM_PRESETS:
        raise ConfigError(f"unknown sim preset {name!r}; valid: {', '.join(SIM_PRESETS)}")
    base = SIM_PRESETS[name]
    cfg = replace(base, lidar_spec=replace(base.lidar_spec), camera_spec=replace(base.camera_spec))
    unknown = sorted(set(overrides) - {f.name for f in fields(SimConfig)})
    if unknown:
        raise ConfigError(f"unknown SimConfig field(s) {unknown}; valid: {', '.join(f.name for f in fields(SimConfig))}")
    return replace(cfg, **overrides) if overrides else cfg
