"""Two gloo processes, each fed half of the data, report the same totals as one process fed all of it."""

from __future__ import annotations

import json
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from drivewm.metrics import (
    CodebookMetric,
    EmbeddingStats,
    FrechetDistance,
    OccupancyForecastMetric,
    PlanningMetric,
    PointCloudForecastMetric,
    RandomConvFeatures,
)


def make_data() -> dict:
    g = torch.Generator().manual_seed(0)
    gt = torch.randint(0, 18, (4, 3, 6, 6, 2), generator=g, dtype=torch.uint8)
    pred = torch.where(torch.rand(gt.shape, generator=g) < 0.3, torch.randint(0, 18, gt.shape, generator=g, dtype=torch.uint8), gt)
    clouds = [[torch.randn(50 + 10 * b + t, 3, generator=g) * 30 for t in range(2)] for b in range(4)]
    pclouds = [[c + 0.5 for c in f] for f in clouds]
    traj = torch.randn(4, 6, 2, generator=g) * 10
    boxes = torch.cat([traj[:, :, None, :] + 1.0, torch.tensor([4.0, 2.0, 0.2]).expand(4, 6, 1, 3)], -1)
    feats = torch.randn(4, 10, 8, generator=g, dtype=torch.float64)
    codes = torch.randint(0, 32, (4, 4, 4), generator=g)
    return dict(gt=gt, pred=pred, clouds=clouds, pclouds=pclouds, traj=traj, boxes=boxes, feats=feats, codes=codes)


def run_metrics(d: dict, rows: list[int]) -> dict:
    occ = OccupancyForecastMetric(report_steps=(1, 2, 3))
    pc, plan = PointCloudForecastMetric(), PlanningMetric()
    fd, emb, tok = FrechetDistance(RandomConvFeatures()), EmbeddingStats(), CodebookMetric(vocab_size=32)
    for b in rows:
        occ.update(d["pred"][b : b + 1], d["gt"][b : b + 1])
        pc.update(d["pclouds"][b : b + 1], d["clouds"][b : b + 1])
        plan.update(d["traj"][b : b + 1] + 0.5, d["traj"][b : b + 1], obstacles=d["boxes"][b : b + 1])
        fd.update_features(real=d["feats"][b], fake=d["feats"][b] * 1.5 + 0.1)
        emb.update(d["feats"][b])
        tok.update(d["codes"][b])
    return {"occ": occ.compute(), "pc": pc.compute(), "plan": plan.compute(), "fd": fd.compute(), "emb": emb.compute(), "tok": tok.compute()}


def _worker(rank: int, port: int, out_path: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        data = make_data()
        result = run_metrics(data, [rank, rank + 2])  # rank 0: samples 0, 2; rank 1: 1, 3
        # A rank that sees no batch at all still joins the reduction (its state was never sized).
        lonely = OccupancyForecastMetric(report_steps=(1, 2, 3))
        if rank == 0:
            lonely.update(data["pred"], data["gt"])
        result["lonely"] = lonely.compute()
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump(result, f)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return (a != a and b != b) or abs(a - b) <= 1e-9 * max(1.0, abs(a))
    return a == b


def test_two_process_gloo_equals_one_process(tmp_path):
    out = tmp_path / "rank0.json"
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=2, join=True)
    two = json.loads(out.read_text())
    assert _close(two.pop("lonely"), two["occ"])
    one = json.loads(json.dumps(run_metrics(make_data(), [0, 1, 2, 3])))
    assert _close(two, one), (two, one)
    assert one["occ"]["voxels_per_step"][0] == 4 * 6 * 6 * 2
