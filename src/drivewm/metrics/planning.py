"""Open-loop planning metrics: L2 displacement and BEV collision rate, in both published conventions.

Conventions (the field reports both under the same column names; we name them apart):
  * ``stp3`` — ST-P3 (Hu et al., arXiv 2207.07601) and VAD (Jiang et al., arXiv 2303.12077):
    the value "at k s" is the **average over the first k seconds** (steps 1 .. k * hz).
  * ``uniad`` — UniAD (Hu et al., arXiv 2212.10156): the value **at step k * hz** only.
OccWorld (arXiv 2311.16038) reports the ST-P3 convention.

Collision, rule ``stp3`` (the default): ST-P3's and UniAD's ``PlanningMetric.evaluate_coll``, the same
function in both repositories (OpenDriveLab/ST-P3 ``stp3/metrics.py``, commit 6b11e13;
OpenDriveLab/UniAD ``projects/mmdet3d_plugin/uniad/dense_heads/planning_head_plugin/planning_metrics.py``,
commit dd161b2). On the BEV grid of +-50 m at 0.5 m (row = forward cell, column = left cell; cell i
centred at ``-50 + 0.25 + 0.5 i``):
  * the ego box, 4.084 m long and 1.85 m wide, is centred 0.5 m **ahead** of the waypoint along the
    forward axis and never turned; its cells are those skimage's ``draw.polygon`` fills for the box
    corners in grid units (cell (r, c) with ``r0 <= r < r1``, ``c0 <= c < c1``, the corners' rows and
    columns ``(corner - bx) / dx``, bx the first cell's centre), found once at the origin; per step they
    move by ``trunc(waypoint / dx + cell)``, clipped into the grid, as theirs (float32 waypoints);
  * a step collides when any of those cells is occupied (``collision``, their ``obj_box_col``); the
    waypoint's own cell ``trunc((waypoint - bx) / dx)``, when inside the grid, gives ``collision_point``
    (their ``obj_col``);
  * a step where the box at the **logged** waypoint already collides is left out of the numerator of
    both (the denominator still counts it): the data's own overlaps are not the planner's fault.
ST-P3's inputs are nuScenes LiDAR-frame waypoints (x right, y forward) that ``evaluate_coll`` turns into
(left, forward), on labels whose rows run forward and columns left; ours are (forward, left), so
``waypoint`` above is (forward, left) in both. UniAD's ``update`` negates x before calling the same
function, so there the column runs the other way, as its labels do; drivewm follows ST-P3's axes.

Collision, rule ``centred`` (drivewm's own): the box centred on the waypoint, optionally turned to the
direction of travel (``rotate_ego``); a cell belongs to a box when its centre lies inside it (boundary
included); cells outside the grid are ignored; logged collisions are not left out.

Obstacles come as a BEV raster on the metric's grid, or as boxes (x, y, length, width, yaw) of which a
cell is occupied when its centre lies inside one (ST-P3 and UniAD rasterise their labels with OpenCV
polygons; a raster made that way can be passed as ``obstacle_bev``).

Trajectories are ego-frame waypoints [B, T, 2] (x forward, y left, metres) at ``hz``.
"""

from __future__ import annotations

import math

import torch

from drivewm.geometry import world_to_ego
from drivewm.metrics.distributed import StreamingMetric, check_finite

EGO_WIDTH = 1.85
EGO_LENGTH = 4.084
EGO_BOX_AHEAD = 0.5
"""ST-P3 / UniAD: metres from the waypoint forward to the centre of the ego box."""
COLLISION_RULES = ("stp3", "centred")


def _inside_boxes(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Whether points [..., P, 2] lie in boxes [..., K, 5] = (x, y, length, width, yaw): [..., P, K]."""
    local = world_to_ego(points[..., :, None, :], boxes[..., None, :, [0, 1, 4]])  # [..., P, K, 2] in each box frame
    return (local[..., 0].abs() <= boxes[..., None, :, 2] / 2) & (local[..., 1].abs() <= boxes[..., None, :, 3] / 2)


def stp3_ego_cells(half_range: float, resolution: float, length: float, width: float, ahead: float) -> torch.Tensor:
    """[P, 2] (row, column) cells of ST-P3's ego box for a waypoint at the origin (skimage ``polygon`` fill).

    skimage's crossing-number test counts a cell when ``r0 <= r < r1`` and ``c0 <= c < c1`` for an
    axis-aligned rectangle; its scan starts at row and column 0.
    """
    dx = float(torch.tensor(resolution, dtype=torch.float32))
    bx = float(torch.tensor(-half_range + resolution / 2.0, dtype=torch.float32))
    r0, r1 = (-length / 2.0 + ahead - bx) / dx, (length / 2.0 + ahead - bx) / dx
    c0, c1 = (-width / 2.0 - bx) / dx, (width / 2.0 - bx) / dx
    rows = torch.arange(max(0, math.ceil(r0)), math.ceil(r1))
    cols = torch.arange(max(0, math.ceil(c0)), math.ceil(c1))
    rr, cc = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([rr.reshape(-1), cc.reshape(-1)], -1)


class PlanningMetric(StreamingMetric):
    """Streaming L2 (m) and collision rate (%) per future step, reported in both conventions.

    ``update(pred, gt, obstacles=None, obstacle_valid=None, obstacle_bev=None, mask=None)``:
      * ``pred``, ``gt``: waypoints [B, T, 2];
      * ``obstacles``: boxes [B, T, K, 5] (x, y, length, width, yaw) of other road users per step,
        with ``obstacle_valid`` [B, T, K] bool; or ``obstacle_bev``: a rasterised occupancy
        [B, T, G, G] bool on the metric's grid (index [i, j] = cell at x_i, y_j);
      * ``mask``: [B, T] bool, steps with a valid ground-truth waypoint.
    ``collision``: "stp3" (ST-P3 / UniAD ``evaluate_coll``) or "centred" (drivewm's rule; see the module).
    """

    def __init__(
        self,
        *,
        hz: float = 2.0,
        seconds: tuple[float, ...] = (1.0, 2.0, 3.0),
        bev_half_range: float = 50.0,
        bev_resolution: float = 0.5,
        ego_length: float = EGO_LENGTH,
        ego_width: float = EGO_WIDTH,
        collision: str = "stp3",
        rotate_ego: bool = False,
    ) -> None:
        super().__init__()
        if collision not in COLLISION_RULES:
            raise ValueError(f"collision must be one of {COLLISION_RULES}, got {collision!r}")
        if rotate_ego and collision != "centred":
            raise ValueError("rotate_ego applies to the 'centred' collision rule only (ST-P3's box never turns)")
        self.hz, self.seconds = hz, tuple(seconds)
        self.half_range, self.res = bev_half_range, bev_resolution
        self.grid_size = int(round(2 * bev_half_range / bev_resolution))
        self.ego_length, self.ego_width, self.rotate_ego = ego_length, ego_width, rotate_ego
        self.collision_rule = collision
        self.stp3_cells = stp3_ego_cells(bev_half_range, bev_resolution, ego_length, ego_width, EGO_BOX_AHEAD)
        for name in ("l2_sum", "l2_n", "coll_sum", "coll_point_sum", "coll_n"):
            self._add_state(name, torch.zeros(0, dtype=torch.float64))

    def update(
        self,
        pred: torch.Tensor,
        gt: torch.Tensor,
        obstacles: torch.Tensor | None = None,
        obstacle_valid: torch.Tensor | None = None,
        obstacle_bev: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> None:
        if pred.ndim != 3 or pred.shape[-1] != 2:
            raise ValueError(f"pred must be waypoints [B, T, 2], got shape {tuple(pred.shape)}")
        if gt.shape != pred.shape:
            raise ValueError(f"gt shape {tuple(gt.shape)} does not match pred shape {tuple(pred.shape)}")
        check_finite("pred", pred)
        check_finite("gt", gt)
        b, t = pred.shape[:2]
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool)
        elif mask.shape != (b, t):
            raise ValueError(f"mask must be [B, T] = [{b}, {t}], got {tuple(mask.shape)}")
        if self.l2_sum.shape[0] == 0:
            for name in self._state_names:
                setattr(self, name, torch.zeros(t, dtype=torch.float64))
        elif self.l2_sum.shape[0] != t:
            raise ValueError(f"pred has {t} steps but earlier batches had {self.l2_sum.shape[0]}")
        m = mask.cpu()
        l2 = (pred.double() - gt.double()).norm(dim=-1).cpu()  # [B, T]
        self.l2_sum += (l2 * m).sum(0)
        self.l2_n += m.sum(0)
        if obstacles is not None or obstacle_bev is not None:
            occupied = self._occupancy(b, t, obstacles, obstacle_valid, obstacle_bev)
            if self.collision_rule == "stp3":
                box, point = self.stp3_collisions(pred, gt, occupied)
                self.coll_point_sum += (point.cpu() & m).sum(0)
            else:
                box = self.centred_collisions(pred, occupied)
            self.coll_sum += (box.cpu() & m).sum(0)
            self.coll_n += m.sum(0)

    def _occupancy(self, b: int, t: int, obstacles, obstacle_valid, obstacle_bev):
        """A function of grid cells [B, T, P, 2] (inside the grid) -> occupied [B, T, P]."""
        g = self.grid_size
        if obstacle_bev is not None:
            if obstacle_bev.shape != (b, t, g, g) or obstacle_bev.dtype != torch.bool:
                raise ValueError(f"obstacle_bev must be bool [B, T, {g}, {g}], got {obstacle_bev.dtype} {tuple(obstacle_bev.shape)}")

            def from_bev(idx: torch.Tensor) -> torch.Tensor:
                bi = torch.arange(b, device=idx.device)[:, None, None]
                ti = torch.arange(t, device=idx.device)[None, :, None]
                return obstacle_bev.to(idx.device)[bi, ti, idx[..., 0], idx[..., 1]]

            return from_bev
        if obstacles.ndim != 4 or obstacles.shape[:2] != (b, t) or obstacles.shape[-1] != 5:
            raise ValueError(f"obstacles must be boxes [B, T, K, 5] with B, T = {b}, {t}, got {tuple(obstacles.shape)}")
        check_finite("obstacles", obstacles)
        if obstacle_valid is None:
            obstacle_valid = torch.ones(obstacles.shape[:3], dtype=torch.bool, device=obstacles.device)
        elif obstacle_valid.shape != obstacles.shape[:3]:
            raise ValueError(f"obstacle_valid must be [B, T, K] = {tuple(obstacles.shape[:3])}, got {tuple(obstacle_valid.shape)}")

        def from_boxes(idx: torch.Tensor) -> torch.Tensor:
            centres = (idx.double() + 0.5) * self.res - self.half_range  # [B, T, P, 2]
            inside = _inside_boxes(centres, obstacles.double().to(idx.device))  # [B, T, P, K]
            return (inside & obstacle_valid.to(idx.device)[:, :, None, :]).any(-1)

        return from_boxes

    def stp3_box_cells(self, traj: torch.Tensor) -> torch.Tensor:
        """[B, T, P, 2] grid cells of ST-P3's ego box at each waypoint [B, T, 2] (``evaluate_single_coll``)."""
        dx = torch.tensor(self.res, dtype=torch.float32, device=traj.device)
        shift = (traj.float() / dx).double()  # float32 division as theirs, then numpy's float64 sum
        cells = (shift[:, :, None, :] + self.stp3_cells.to(traj.device)).trunc().long()  # astype(int32)
        return cells.clamp(0, self.grid_size - 1)

    def stp3_collisions(self, pred: torch.Tensor, gt: torch.Tensor, occupied) -> tuple[torch.Tensor, torch.Tensor]:
        """(box, point) collision flags [B, T] of ST-P3's ``evaluate_coll``, logged collisions left out."""
        gt_box = occupied(self.stp3_box_cells(gt)).any(-1)  # [B, T]
        box = occupied(self.stp3_box_cells(pred)).any(-1) & ~gt_box
        dx = torch.tensor(self.res, dtype=torch.float32, device=pred.device)
        bx = torch.tensor(-self.half_range + self.res / 2.0, dtype=torch.float32, device=pred.device)
        cell = ((pred.float() - bx) / dx).long()  # [B, T, 2] truncated toward zero, as torch's .long()
        in_grid = ((cell >= 0) & (cell < self.grid_size)).all(-1)
        point = occupied(cell.clamp(0, self.grid_size - 1)[:, :, None, :])[..., 0] & in_grid & ~gt_box
        return box, point

    def _centred_cells(self, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Grid indices [B, T, P, 2] of the cells around the centred ego box and whether each is in it [B, T, P]."""
        r = math.ceil(math.hypot(self.ego_length, self.ego_width) / 2 / self.res) + 1
        off = torch.arange(-r, r + 1, device=pred.device)
        oi, oj = torch.meshgrid(off, off, indexing="ij")
        offsets = torch.stack([oi.reshape(-1), oj.reshape(-1)], -1)  # [P, 2]
        base = torch.floor((pred.double() + self.half_range) / self.res).long()  # [B, T, 2]
        idx = base[:, :, None, :] + offsets  # [B, T, P, 2]
        centres = (idx.double() + 0.5) * self.res - self.half_range
        if self.rotate_ego:
            # Heading from the direction of travel; the first step uses the origin as its predecessor.
            prev = torch.cat([torch.zeros_like(pred[:, :1]), pred[:, :-1]], 1).double()
            delta = pred.double() - prev
            yaw = torch.atan2(delta[..., 1], delta[..., 0])
        else:
            yaw = torch.zeros(pred.shape[:2], dtype=torch.float64, device=pred.device)
        ego = torch.cat(
            [pred.double(), torch.full_like(yaw, self.ego_length)[..., None], torch.full_like(yaw, self.ego_width)[..., None], yaw[..., None]],
            -1,
        )  # [B, T, 5]
        in_ego = _inside_boxes(centres, ego[:, :, None, :])[..., 0]  # [B, T, P]
        in_grid = ((idx >= 0) & (idx < self.grid_size)).all(-1)
        return idx, in_ego & in_grid

    def centred_collisions(self, pred: torch.Tensor, occupied) -> torch.Tensor:
        """Per-step collision flags [B, T] of the box centred on each planned waypoint (drivewm's rule)."""
        idx, ego_cell = self._centred_cells(pred)
        return (occupied(idx.clamp(0, self.grid_size - 1)) & ego_cell).any(-1)

    def collisions(
        self,
        pred: torch.Tensor,
        obstacles: torch.Tensor | None,
        obstacle_valid: torch.Tensor | None,
        obstacle_bev: torch.Tensor | None,
        gt: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-step box collision flags [B, T] under this metric's rule (``stp3`` needs ``gt``)."""
        occupied = self._occupancy(*pred.shape[:2], obstacles, obstacle_valid, obstacle_bev)
        if self.collision_rule == "centred":
            return self.centred_collisions(pred, occupied)
        if gt is None:
            raise ValueError("the stp3 collision rule needs the logged trajectory gt (its own collisions are left out)")
        return self.stp3_collisions(pred, gt, occupied)[0]

    def compute(self) -> dict:
        """Per-step values and the ``stp3`` (avg over first k s) and ``uniad`` (at k s) conventions."""
        s = self._reduced()
        if s["l2_sum"].shape[0] == 0:
            raise ValueError("compute() called before any update()")
        t = s["l2_sum"].shape[0]

        def per_step(total: torch.Tensor, n: torch.Tensor, scale: float) -> list[float]:
            return [scale * float(a / c) if c > 0 else float("nan") for a, c in zip(total, n)]

        result: dict = {"units": {"l2": "m", "collision": "%", "collision_point": "%"}, "collision_rule": self.collision_rule}
        keys = [("l2", s["l2_sum"], s["l2_n"], 1.0), ("collision", s["coll_sum"], s["coll_n"], 100.0)]
        if self.collision_rule == "stp3":
            keys.append(("collision_point", s["coll_point_sum"], s["coll_n"], 100.0))
        for key, total, n, scale in keys:
            steps = per_step(total, n, scale)
            result[f"{key}_per_step"] = steps
            stp3, uniad = {}, {}
            for sec in self.seconds:
                k = int(round(sec * self.hz))
                if k < 1 or k > t:
                    continue
                name = f"{sec:g}s"
                uniad[name] = steps[k - 1]
                stp3[name] = sum(steps[:k]) / k
            if stp3:
                stp3["avg"] = sum(stp3.values()) / len(stp3)
                uniad["avg"] = sum(uniad.values()) / len(uniad)
            result[f"{key}_stp3"] = stp3
            result[f"{key}_uniad"] = uniad
        return result
