"""Tables and pictures of the forecasting tables: rows of results/forecast.json (LiDAR:
forecast_lidar.json, camera: forecast_camera.json), a rich table, forecast.png + forecast.gif (LiDAR:
forecast_lidar.png, camera: forecast_camera.png + forecast_camera.gif)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from drivewm.data.render import bev_image
from drivewm.data.spec import GridSpec

REFERENCE = "ego_warp_copy_last"
LIDAR_REFERENCE = "ego_warp_copy_last_lidar"
CAMERA_REFERENCE = "copy_last_camera"


def is_lidar(results: dict[str, dict]) -> bool:
    return "cd" in next(iter(results.values()))


def is_camera(results: dict[str, dict]) -> bool:
    return "psnr_per_step" in next(iter(results.values()))


def table_rows(results: dict[str, dict]) -> tuple[list[str], list[list]]:
    """Columns and rows of any modality's table."""
    if is_camera(results):
        return camera_table_rows(results)
    return lidar_table_rows(results) if is_lidar(results) else occupancy_table_rows(results)


def camera_report_steps(horizon: int) -> list[int]:
    """The steps a camera table shows: +1, +2 (1 s at 2 Hz) and the last, those within the horizon."""
    return sorted({s for s in (1, 2, horizon) if s <= horizon})


def camera_table_rows(results: dict[str, dict]) -> tuple[list[str], list[list]]:
    """Columns and rows: PSNR (dB) and SSIM at +1, +2 and the last step, PSNR at +2 (or the last step within the
    horizon) vs copy-last in dB (positive: better), and the Frechet distance under its protocol's name when
    measured. An exact copy's PSNR reads 'inf'."""
    first = next(iter(results.values()))
    steps = camera_report_steps(len(first["psnr_per_step"]))
    vs = min(2, steps[-1])
    fd = first.get("fd", {}).get("name")
    columns = (["forecaster"] + [f"PSNR +{s}" for s in steps] + [f"SSIM +{s}" for s in steps]
               + [f"PSNR +{vs} vs copy-last"] + ([fd] if fd else []))
    ref = results.get(CAMERA_REFERENCE, first)["psnr_per_step"][vs - 1]
    rows = []
    for name, r in results.items():
        psnr = r["psnr_per_step"]
        rows.append([name] + [round(psnr[s - 1], 2) for s in steps] + [round(r["ssim_per_step"][s - 1], 4) for s in steps]
                    + [f"{psnr[vs - 1] - ref:+.2f}"] + ([round(r["fd"]["value"], 3)] if fd else []))
    return columns, rows


def lidar_table_rows(results: dict[str, dict]) -> tuple[list[str], list[list]]:
    """Columns and rows: CD, NFCD, depth L1 and AbsRel at each reported step, plus CD at the last step vs the
    ego-warped sweep (positive: lower, i.e. better, Chamfer than the baseline). NaN cells (no depth) read '-'."""
    first = next(iter(results.values()))
    steps = [k for k in first["cd"] if k != "all"]  # e.g. 1s, 3s
    last = steps[-1]
    names = {"cd": "CD", "nfcd": "NFCD", "l1": "L1", "absrel": "AbsRel"}
    columns = ["forecaster"] + [f"{names[m]} {s}" for m in names for s in steps] + [f"CD {last} vs ego-warp"]
    ref = results.get(LIDAR_REFERENCE, first)["cd"][last]

    def cell(v: float):
        return round(v, 3) if v == v else "-"

    rows = []
    for name, r in results.items():
        rel = (1.0 - r["cd"][last] / ref) * 100 if ref > 0 else float("nan")
        rows.append([name] + [cell(r[m][s]) for m in names for s in steps] + [f"{rel:+.1f}%"])
    return columns, rows


def occupancy_table_rows(results: dict[str, dict]) -> tuple[list[str], list[list]]:
    """Columns and rows: mIoU and IoU per named horizon and avg, plus mIoU at the last horizon vs the ego-warp copy,
    then at the last horizon the mIoU over the classes present in the ground truth and the share of the class
    table that is absent (the protocol's mIoU scores those 100: on a sparse class table it says little)."""
    first = next(iter(results.values()))
    horizons = list(first["miou"])  # e.g. 1s, 2s, 3s, avg
    last = horizons[-2] if len(horizons) > 1 else horizons[0]
    columns = ["forecaster"] + [f"mIoU {h}" for h in horizons] + [f"IoU {h}" for h in horizons]
    dynamic = [h for h in horizons if h != "avg"] if "dynamic_miou" in first else []
    columns += [f"dyn mIoU {h}" for h in dynamic]
    columns += [f"mIoU {last} vs ego-warp", f"mIoU present {last}", f"classes absent {last} (%)"]
    ref = results.get(REFERENCE, first)["miou"][last]
    rows = []
    for name, r in results.items():
        rel = (r["miou"][last] / ref - 1.0) * 100 if ref > 0 else float("nan")
        rows.append([name] + [round(r["miou"][h], 2) for h in horizons] + [round(r["iou"][h], 2) for h in horizons]
                    + [_cell(r["dynamic_miou"][h]) for h in dynamic] + [f"{rel:+.1f}%"]
                    + [round(r[k][last], 2) if k in r else "-" for k in ("miou_present", "classes_absent")])
    return columns, rows


def _cell(v: float):
    return round(v, 2) if v == v else "-"  # NaN: no road user in the truth at that step


def per_class_rows(results: dict[str, dict]) -> tuple[list[str], list[list]]:
    """Columns and rows of the per-class IoU table: one row per class and horizon (1 s, 2 s, 3 s), one column per
    forecaster."""
    names = list(results)
    first = results[names[0]]["per_class_iou"]
    rows = [[cls, h] + [_cell(results[n]["per_class_iou"][h][cls]) for n in names]
            for cls in next(iter(first.values())) for h in first]
    return ["class", "at"] + names, rows


def print_table(results: dict[str, dict], title: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    columns, rows = table_rows(results)
    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="left" if c == "forecaster" else "right")
    for r in rows:
        table.add_row(*(escape(str(v)) for v in r))  # names hold "[attention]", not rich markup
    console = Console()
    if not console.is_terminal:  # logs and pipes: wide enough that no forecaster name is cut
        console = Console(width=220)
    console.print(table)
    if not is_lidar(results) and not is_camera(results) and "per_class_iou" in next(iter(results.values())):
        columns, rows = per_class_rows(results)
        table = Table(title="per-class IoU")
        for c in columns:
            table.add_column(escape(c), justify="left" if c in ("class", "at") else "right")
        for r in rows:
            table.add_row(*(escape(str(v)) for v in r))
        console.print(table)


def _tile(occ: torch.Tensor, grid: GridSpec, scale: int) -> np.ndarray:
    img = bev_image(occ.numpy().astype(np.uint8), grid)
    return img.repeat(scale, 0).repeat(scale, 1)


def save_forecast_pictures(example: dict[str, torch.Tensor], grid: GridSpec, out: Path, scale: int = 4) -> list[str]:
    """forecast.png (rows: truth and each forecaster, columns: context + horizon) and forecast.gif (one
    frame per time step, panels side by side in the PNG's row order). Returns names relative to out."""
    import imageio.v2 as imageio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    context, truth = example["context"], example["truth"]
    rows = ["truth"] + [k for k in example if k not in ("context", "truth")]
    past, horizon = context.shape[0], truth.shape[0]
    fig, axes = plt.subplots(len(rows), past + horizon, figsize=(1.6 * (past + horizon), 1.7 * len(rows)), squeeze=False)
    for i, name in enumerate(rows):
        for j in range(past + horizon):
            ax = axes[i, j]
            ax.axis("off")
            if j < past:
                ax.imshow(bev_image(context[j].numpy().astype(np.uint8), grid))
                if i == 0:
                    ax.set_title(f"{(j - past + 1) / 2:+g} s", fontsize=7)
            else:
                ax.imshow(bev_image(example[name][j - past].numpy().astype(np.uint8), grid))
                if i == 0:
                    ax.set_title(f"+{(j - past + 1) / 2:g} s", fontsize=7)
        axes[i, 0].text(-0.1, 0.5, name, transform=axes[i, 0].transAxes, ha="right", va="center", fontsize=6)
    fig.tight_layout(rect=(0.1, 0, 1, 1))  # room for the row names on the left
    fig.savefig(out / "forecast.png", dpi=110)
    plt.close(fig)
    frames = []
    gap = np.full((grid.shape[0] * scale, 4, 3), 255, np.uint8)
    for j in range(past + horizon):
        panels = []
        for name in rows:
            occ = context[j] if j < past else example[name][j - past]
            panels += [_tile(occ, grid, scale), gap]
        frames.append(np.concatenate(panels[:-1], 1))
    imageio.mimsave(out / "forecast.gif", frames, duration=0.5, loop=0)
    (out / "forecast_gif_panels.txt").write_text("left to right: " + ", ".join(rows) + "\n")
    return ["forecast.png", "forecast.gif"]


def save_lidar_forecast_picture(example: dict[str, list], steps: list[str], out: Path) -> list[str]:
    """forecast_lidar.png: rows truth and each forecaster, columns the reported steps; BEV scatter coloured by
    height. `example` maps names to clouds [N, 3] (numpy) per step named in `steps`. Returns names relative to out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    rows = ["truth"] + [k for k in example if k != "truth"]
    cols = len(example["truth"])
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.6 * cols, 2.6 * len(rows)), squeeze=False)
    for i, name in enumerate(rows):
        for j, pts in enumerate(example[name]):
            ax = axes[i, j]
            ax.scatter(-pts[:, 1], pts[:, 0], c=pts[:, 2], s=0.3, cmap="viridis")  # x forward = up
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name, fontsize=6)
            if i == 0:
                ax.set_title(f"+{steps[j]}", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "forecast_lidar.png", dpi=110)
    plt.close(fig)
    return ["forecast_lidar.png"]


def save_camera_forecast_pictures(example: dict[str, torch.Tensor], out: Path, hz: float = 2.0) -> list[str]:
    """forecast_camera.png (rows: truth and each forecaster, columns: context + horizon) and forecast_camera.gif
    (one frame per time step: truth and every forecaster side by side, the context in every panel before the
    forecast starts). `example` maps names to uint8 frames [T, h, w, 3]. Returns names relative to out."""
    import imageio.v2 as imageio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    context = example["context"].numpy()
    rows = ["truth"] + [k for k in example if k not in ("context", "truth")]
    past, horizon = context.shape[0], example["truth"].shape[0]
    h, w = context.shape[1:3]

    def frame(name: str, j: int) -> np.ndarray:
        return context[j] if j < past else example[name][j - past].numpy()

    cols = past + horizon
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.2 * cols * w / h * 0.6, 0.75 * len(rows)), squeeze=False)
    for i, name in enumerate(rows):
        for j in range(cols):
            ax = axes[i, j]
            ax.axis("off")
            ax.imshow(frame(name, j))
            if i == 0:
                ax.set_title(f"{(j - past + 1) / hz:+g} s", fontsize=6)
        axes[i, 0].text(-0.1, 0.5, name, transform=axes[i, 0].transAxes, ha="right", va="center", fontsize=6)
    fig.tight_layout(rect=(0.12, 0, 1, 1))  # room for the row names on the left
    fig.savefig(out / "forecast_camera.png", dpi=110)
    plt.close(fig)
    gap = np.full((h, 4, 3), 255, np.uint8)
    frames = []
    for j in range(cols):
        panels = []
        for name in rows:
            panels += [frame(name, j), gap]
        frames.append(np.concatenate(panels[:-1], 1))
    imageio.mimsave(out / "forecast_camera.gif", frames, duration=1.0 / hz, loop=0)
    (out / "forecast_camera_gif_panels.txt").write_text("left to right: " + ", ".join(rows) + "\n")
    return ["forecast_camera.png", "forecast_camera.gif"]
