"""Open-loop planning metrics: L2 displacement and BEV collision rate, in both published conventions.

Conventions (the field reports both under the same column names; we name them apart):
  * ``stp3`` — ST-P3 (Hu et al., arXiv 2207.07601) and VAD (Jiang et al., arXiv 2303.12077):
    the value "at k s" is the **average over the first k seconds** (steps 1 .. k * hz).
  * ``uniad`` — UniAD (Hu et al., arXiv 2212.10156): the value **at step k * hz** only.
OccWorld (arXiv 2311.16038) reports the ST-P3 convention.

Collision (ST-P3 ``PlanningMetric.evaluate_coll``): obstacles (other road users' boxes) and the
planned ego box (1.85 m wide x 4.084 m long, centred on the planned waypoint, axis-aligned with
the ego frame as in ST-P3 unless ``rotate_ego``) are rasterised on a BEV grid of +-50 m at 0.5 m;
a cell belongs to a box when its centre lies inside it (boundary included); a step collides when
any cell belongs to both. Cells outside the grid are ignored. Only the cells around the ego box
are tested, which is the same answer as intersecting the two full rasters.

Trajectories are ego-frame waypoints [B, T, 2] (x forward, y left, metres) at ``hz``.
"""

from __future__ import annotations

import math

import torch

from drivewm.geometry import world_to_ego
from drivewm.metrics.distributed import StreamingMetric, check_finite

EGO_WIDTH = 1.85
EGO_LENGTH = 4.084


def _inside_boxes(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Whether points [..., P, 2] lie in boxes [..., K, 5] = (x, y, length, width, yaw): [..., P, K]."""
    local = world_to_ego(points[..., :, None, :], boxes[..., None, :, [0, 1, 4]])  # [..., P, K, 2] in each box frame
    return (local[..., 0].abs() <= boxes[..., None, :, 2] / 2) & (local[..., 1].abs() <= boxes[..., None, :, 3] / 2)


class PlanningMetric(StreamingMetric):
    """Streaming L2 (m) and collision rate (%) per future step, reported in both conventions.

    ``update(pred, gt, obstacles=None, obstacle_valid=None, obstacle_bev=None, mask=None)``:
      * ``pred``, ``gt``: waypoints [B, T, 2];
      * ``obstacles``: boxes [B, T, K, 5] (x, y, length, width, yaw) of other road users per step,
        with ``obstacle_valid`` [B, T, K] bool; or ``obstacle_bev``: a rasterised occupancy
        [B, T, G, G] bool on the metric's grid (index [i, j] = cell at x_i, y_j);
      * ``mask``: [B, T] bool, steps with a valid ground-truth waypoint.
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
        rotate_ego: bool = False,
    ) -> None:
        super().__init__()
        self.hz, self.seconds = hz, tuple(seconds)
        self.half_range, self.res = bev_half_range, bev_resolution
        self.grid_size = int(round(2 * bev_half_range / bev_resolution))
        self.ego_length, self.ego_width, self.rotate_ego = ego_length, ego_width, rotate_ego
        for name in ("l2_sum", "l2_n", "coll_sum", "coll_n"):
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
            hit = self.collisions(pred, obstacles, obstacle_valid, obstacle_bev).cpu()  # [B, T]
            self.coll_sum += (hit & m).sum(0)
            self.coll_n += m.sum(0)

    def _ego_cells(self, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Grid indices [B, T, P, 2] of the cells under the ego box, their centres and an in-box mask [B, T, P]."""
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
        return idx, centres, in_ego & in_grid

    def collisions(
        self,
        pred: torch.Tensor,
        obstacles: torch.Tensor | None,
        obstacle_valid: torch.Tensor | None,
        obstacle_bev: torch.Tensor | None,
    ) -> torch.Tensor:
        """Per-step collision flags [B, T] of the planned ego box against obstacles (boxes or a BEV raster)."""
        b, t = pred.shape[:2]
        idx, centres, ego_cell = self._ego_cells(pred)
        if obstacle_bev is not None:
            g = self.grid_size
            if obstacle_bev.shape != (b, t, g, g) or obstacle_bev.dtype != torch.bool:
                raise ValueError(f"obstacle_bev must be bool [B, T, {g}, {g}], got {obstacle_bev.dtype} {tuple(obstacle_bev.shape)}")
            ii, jj = idx[..., 0].clamp(0, g - 1), idx[..., 1].clamp(0, g - 1)
            bi = torch.arange(b, device=pred.device)[:, None, None]
            ti = torch.arange(t, device=pred.device)[None, :, None]
            occupied = obstacle_bev[bi, ti, ii, jj]  # [B, T, P]
        else:
            if obstacles.ndim != 4 or obstacles.shape[:2] != (b, t) or obstacles.shape[-1] != 5:
                raise ValueError(f"obstacles must be boxes [B, T, K, 5] with B, T = {b}, {t}, got {tuple(obstacles.shape)}")
            check_finite("obstacles", obstacles)
            if obstacle_valid is None:
                obstacle_valid = torch.ones(obstacles.shape[:3], dtype=torch.bool, device=obstacles.device)
            elif obstacle_valid.shape != obstacles.shape[:3]:
                raise ValueError(f"obstacle_valid must be [B, T, K] = {tuple(obstacles.shape[:3])}, got {tuple(obstacle_valid.shape)}")
            inside = _inside_boxes(centres, obstacles.double())  # [B, T, P, K]
            occupied = (inside & obstacle_valid[:, :, None, :]).any(-1)
        return (occupied & ego_cell).any(-1)

    def compute(self) -> dict:
        """Per-step values and the ``stp3`` (avg over first k s) and ``uniad`` (at k s) conventions."""
        s = self._reduced()
        if s["l2_sum"].shape[0] == 0:
            raise ValueError("compute() called before any update()")
        t = s["l2_sum"].shape[0]

        def per_step(total: torch.Tensor, n: torch.Tensor, scale: float) -> list[float]:
            return [scale * float(a / c) if c > 0 else float("nan") for a, c in zip(total, n)]

        result: dict = {"units": {"l2": "m", "collision": "%"}}
        for key, total, n, scale in (("l2", s["l2_sum"], s["l2_n"], 1.0), ("collision", s["coll_sum"], s["coll_n"], 100.0)):
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
