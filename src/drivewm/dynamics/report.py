"""Tables and pictures of `drivewm eval forecast`: a rich table, results/forecast.json, PNG and GIF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from drivewm.data.render import bev_image
from drivewm.data.spec import GridSpec

REFERENCE = "ego_warp_copy_last"


def table_rows(results: dict[str, dict]) -> tuple[list[str], list[list]]:
    """Columns and rows: mIoU and IoU per named horizon and avg, plus mIoU at the last horizon vs the ego-warp copy."""
    first = next(iter(results.values()))
    horizons = list(first["miou"])  # e.g. 1s, 2s, 3s, avg
    last = horizons[-2] if len(horizons) > 1 else horizons[0]
    columns = ["forecaster"] + [f"mIoU {h}" for h in horizons] + [f"IoU {h}" for h in horizons]
    columns.append(f"mIoU {last} vs ego-warp")
    ref = results.get(REFERENCE, first)["miou"][last]
    rows = []
    for name, r in results.items():
        rel = (r["miou"][last] / ref - 1.0) * 100 if ref > 0 else float("nan")
        rows.append([name] + [round(r["miou"][h], 2) for h in horizons] + [round(r["iou"][h], 2) for h in horizons]
                    + [f"{rel:+.1f}%"])
    return columns, rows


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


def write_forecast_result(results: dict[str, dict], out_dir: str | Path, *, images: list[str], **extra) -> Path:
    from drivewm.report.results import write_result

    columns, rows = table_rows(results)
    return write_result(
        out_dir, "forecast", title="Occupancy forecasting (OccWorld protocol)", columns=columns, rows=rows,
        protocol="OccWorld arXiv 2311.16038: 5 observed + 6 predicted frames at 2 Hz, no visibility mask, "
                 "mIoU over classes 0..16 (zero-GT class scores 1), IoU of occupied vs free, percent",
        images=images, extra={"metrics": results, **extra},
    )


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
