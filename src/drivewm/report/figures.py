"""Matplotlib figures of training runs: loss curves, RankMe, codebook usage."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from drivewm.report.results import read_metrics  # noqa: E402

# Logged keys drawn in their own panels when a run has them.
CURVE_KEYS = (("loss", "val_loss"), ("rankme",), ("codebook_usage", "perplexity"))


def training_curves(run_dir: str | Path, out_png: str | Path, title: str | None = None) -> Path | None:
    """Loss (and RankMe / codebook panels where logged) against step; None if the run logged nothing."""
    rows = read_metrics(run_dir)
    if not rows:
        return None
    panels = [keys for keys in CURVE_KEYS if any(k in r for r in rows for k in keys)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.0), squeeze=False)
    for ax, keys in zip(axes[0], panels):
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=k, marker="." if len(pts) < 30 else None)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if keys[0] == "loss":
            ax.set_yscale("log")
    fig.suptitle(title or Path(run_dir).name, fontsize=10)
    return _save(fig, out_png)


def _save(fig, out_png: str | Path) -> Path:
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
