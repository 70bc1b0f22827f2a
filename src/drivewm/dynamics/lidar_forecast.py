"""LiDAR forecasting with token world models on Copilot4D's LiDAR tokenizer (arXiv 2311.01017).

Roll the tokens out as for occupancy (`forecast.forecast_tokens`), decode each future frame's tokens
to the tokenizer's neural field and render it along the rays of the true future sweep, as Copilot4D
evaluates (and as `LidarTokenizer.reconstruct` does for one frame): the predicted cloud is
sensor origin + rendered depth x ray direction. Scored with `PointCloudForecastMetric` (4D-Occ
protocol, arXiv 2302.13130): Chamfer distance, NFCD, and per-ray depth L1 / AbsRel at 1 s and 3 s.

Every forecaster is scored against the same ground truth: the future sweep's returns inside the
tokenizer's grid and farther than its near plane (the only returns a token model can render).
Baselines (copy the last sweep; the copy moved by the known ego motion) are cropped the same way
in the future frame; they have no per-ray depth, so their L1 / AbsRel are NaN.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from drivewm.baselines import CopyLastLidar, EgoWarpLidar
from drivewm.dynamics.base import TokenWorldModel
from drivewm.dynamics.forecast import forecast_tokens
from drivewm.metrics import PointCloudForecastMetric
from drivewm.tokenizers.lidar import LidarTokenizer

METRICS = ("cd", "nfcd", "l1", "absrel")


def returns_mask(tokenizer: LidarTokenizer, points: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """[N, P] real returns inside the grid and beyond the near plane: the rays a LiDAR token model renders."""
    valid = tokenizer.valid_points(points, count)  # real rows inside the grid; checks shapes / finiteness
    depth = (points[..., :3].float() - tokenizer.origin.to(points.device)).norm(dim=-1)
    return valid & (depth > tokenizer.cfg.near)


@torch.no_grad()
def render_sweeps(tokenizer: LidarTokenizer, codes: torch.Tensor, points: torch.Tensor,
                  count: torch.Tensor) -> dict[str, torch.Tensor]:
    """Render tokens codes [N, h, w] along the rays of sweeps points [N, P, C] (count [N] real rows).

    Returns ``points`` [N, R, 3] (predicted returns), ``points_gt`` [N, R, 3] (the true returns, same
    order), ``depth`` / ``depth_gt`` [N, R] and ``mask`` [N, R] (False rows are padding).
    """
    dirs, depth_gt, mask = tokenizer.rays(points.float(), tokenizer.valid_points(points, count), None)
    depth, _, _ = tokenizer.render(tokenizer.decode(codes), dirs)  # [N, R]
    origin = tokenizer.origin.to(points.device)
    return {"points": origin + depth[..., None] * dirs, "points_gt": origin + depth_gt[..., None] * dirs,
            "depth": depth, "depth_gt": depth_gt, "mask": mask}


def _render_frames(model: TokenWorldModel, tokens: torch.Tensor, lidar: torch.Tensor,
                   count: torch.Tensor) -> list[list[dict[str, torch.Tensor]]]:
    """tokens [B, H, h, w] rendered along sweeps lidar [B, H, P, C] -> per (sample, frame) the real rays'
    ``points`` / ``points_gt`` [R, 3] and ``depth`` [R]."""
    if model.modality != "lidar":
        raise ValueError(f"model.tokenizer_run {model.cfg.tokenizer_run}: not a LiDAR tokenizer (modality {model.modality!r})")
    per_frame = []
    for t in range(tokens.shape[1]):  # one frame at a time bounds the rendering memory
        out = render_sweeps(model.tokenizer, tokens[:, t], lidar[:, t], count[:, t])
        per_frame.append([{k: out[k][b][out["mask"][b]] for k in ("points", "points_gt", "depth")}
                          for b in range(tokens.shape[0])])
    return [[per_frame[t][b] for t in range(tokens.shape[1])] for b in range(tokens.shape[0])]


@torch.no_grad()
def forecast_lidar(model: TokenWorldModel, batch: dict[str, torch.Tensor], past: int, horizon: int,
                   **rollout_kw) -> list[list[dict[str, torch.Tensor]]]:
    """Forecast the `horizon` sweeps after frame past - 1, rendered along the true future rays: [B][H] of
    ``points`` (predicted) / ``points_gt`` [R, 3] and ``depth`` [R]. The batch must hold those future sweeps."""
    if batch["lidar"].shape[1] < past + horizon:
        raise ValueError(f"batch['lidar'] has {batch['lidar'].shape[1]} frames; past + horizon = {past + horizon}")
    tokens = forecast_tokens(model, batch, past, horizon, **rollout_kw)  # [B, H, h, w]
    future = slice(past, past + horizon)
    return _render_frames(model, tokens, batch["lidar"][:, future], batch["lidar_count"][:, future])


@torch.no_grad()
def reconstruct_lidar(model: TokenWorldModel, lidar: torch.Tensor, count: torch.Tensor) -> list[list[dict[str, torch.Tensor]]]:
    """The tokenizer's own re-rendering of sweeps lidar [B, T, P, C] (count [B, T]): the upper bound of any token model."""
    return _render_frames(model, model.encode(lidar, count), lidar, count)


def report_steps(horizon: int, hz: float) -> dict[str, int]:
    """{'1s': 2, '3s': 6} at 2 Hz: the 1 s / 3 s frames Copilot4D reports, those within the horizon."""
    steps = {f"{sec:g}s": round(sec * hz) for sec in (1.0, 3.0)}
    steps = {k: s for k, s in steps.items() if 1 <= s <= horizon}
    return steps or {f"{horizon / hz:g}s": horizon}


def summarize(metric: PointCloudForecastMetric, steps: dict[str, int]) -> dict:
    """Each metric at the named steps and over all future frames ('all'), plus the pair counts."""
    r = metric.compute()
    out = {m: {**{name: r[f"{m}_per_step"][s - 1] for name, s in steps.items()}, "all": r[m]} for m in METRICS}
    return {**out, **{k: r[k] for k in ("pairs", "skipped_cd", "protocol")},
            "units": {m: r[f"{m}_unit"] for m in METRICS}}


@torch.no_grad()
def evaluate_lidar_runs(models: list[tuple[str, TokenWorldModel]], dataset, *, past: int, horizon: int, hz: float,
                        batch_size: int, device: str, seed: int, rollout_kw: dict | None = None
                        ) -> tuple[dict[str, dict], dict[str, list]]:
    """Score LiDAR world models and the LiDAR baselines on window batches; returns (results by name, example
    clouds of the first window by name at the reported steps, with 'truth')."""
    steps = report_steps(horizon, hz)
    baselines = {f.name: f for f in (CopyLastLidar(), EgoWarpLidar(motion="known"))}
    tokenizers: dict[str, TokenWorldModel] = {}
    for _, model in models:  # one upper-bound row per distinct tokenizer run
        tokenizers.setdefault(f"tokenizer_recon ({Path(model.cfg.tokenizer_run).name})", model)
    names = list(baselines) + list(tokenizers) + [n for n, _ in models]
    metrics = {n: PointCloudForecastMetric() for n in names}
    tok = models[0][1].tokenizer
    origin = tok.origin
    example: dict[str, list] = {}
    gen = torch.Generator(device=device).manual_seed(seed)
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        b = batch["lidar"].shape[0]
        fut_pts = batch["lidar"][:, past : past + horizon]  # [B, H, P, C]
        fut_n = batch["lidar_count"][:, past : past + horizon]
        keep = returns_mask(tok, fut_pts.flatten(0, 1), fut_n.flatten(0, 1)).view(*fut_pts.shape[:3])
        gt = [[fut_pts[i, t][keep[i, t], :3].cpu() for t in range(horizon)] for i in range(b)]
        clouds: dict[str, list] = {}
        context = {"lidar": batch["lidar"][:, :past], "lidar_count": batch["lidar_count"][:, :past],
                   "rel_pose": batch["rel_pose"]}
        for name, f in baselines.items():
            out = f.forecast(context, horizon)
            pts, n = out["lidar"], out["lidar_count"]
            inside = returns_mask(tok, pts.flatten(0, 1), n.flatten(0, 1)).view(*pts.shape[:3])
            clouds[name] = [[pts[i, t][inside[i, t], :3].cpu() for t in range(horizon)] for i in range(b)]
            metrics[name].update(clouds[name], gt)
        rendered = {n: reconstruct_lidar(m, fut_pts, fut_n) for n, m in tokenizers.items()}
        for name, model in models:
            rendered[name] = forecast_lidar(model, batch, past, horizon, generator=gen, **(rollout_kw or {}))
        for name, frames in rendered.items():
            pred = [[f["points"].cpu() for f in fs] for fs in frames]
            # Ground truth in the rays' order, so per-ray depth errors pair up; the same set of returns as `gt`.
            metrics[name].update(pred, [[f["points_gt"].cpu() for f in fs] for fs in frames],
                                 pred_depth=[[f["depth"].cpu() for f in fs] for fs in frames],
                                 origin=origin.expand(b, horizon, 3))
            clouds[name] = pred
        if not example:
            example = {"truth": [gt[0][s - 1].numpy() for s in steps.values()],
                       **{n: [c[0][s - 1].numpy() for s in steps.values()] for n, c in clouds.items()}}
    return {n: summarize(m, steps) for n, m in metrics.items()}, example
