"""`drivewm scaling`: a model-size sweep of a token world model and a power-law fit, as GAIA-1 reports.

GAIA-1 (Hu et al., arXiv 2309.17080, Sec. 6) fits L(N) = a * N^-b + c to the validation
cross-entropy of world models of N parameters. We train the same world-model config at several
widths on the same data and tokenizer, take each run's final validation cross-entropy, fit the law
with scipy's least squares and report b with its standard error (from the fit's covariance).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a * np.power(n, -b) + c


@dataclass
class PowerLawFit:
    a: float
    b: float
    c: float
    b_err: float
    """Standard error of the exponent from the fit's covariance (nan when the fit is exactly determined)."""


def fit_power_law(params: np.ndarray, losses: np.ndarray) -> PowerLawFit:
    """Least-squares fit of L(N) = a N^-b + c; needs at least 4 points for an uncertainty."""
    from scipy.optimize import curve_fit

    n = np.asarray(params, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    if n.shape != y.shape or n.ndim != 1 or len(n) < 3:
        raise ValueError(f"need >= 3 (params, loss) pairs of equal length, got {n.shape} and {y.shape}")
    if not (np.all(np.isfinite(y)) and np.all(n > 0)):
        raise ValueError("losses must be finite and parameter counts positive")
    # Normalise N so a and b start on a sane scale.
    scale = float(np.median(n))
    c0 = max(0.0, float(y.min()) * 0.8)
    p0 = (float(y.max() - c0), 0.3, c0)
    popt, pcov = curve_fit(
        lambda x, a, b, c: power_law(x, a, b, c), n / scale, y, p0=p0,
        bounds=([0.0, 0.0, 0.0], [np.inf, 5.0, float(y.min())]), maxfev=20000,
    )
    a, b, c = (float(v) for v in popt)
    b_err = float(np.sqrt(pcov[1, 1])) if len(n) > 3 and np.isfinite(pcov[1, 1]) else float("nan")
    return PowerLawFit(a=a * scale**b, b=b, c=c, b_err=b_err)


def plot_fit(params, losses, fit: PowerLawFit, out_png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.scatter(params, losses, color="#d62728", zorder=3, label="validation CE")
    xs = np.geomspace(min(params) * 0.7, max(params) * 1.5, 100)
    ax.plot(xs, power_law(xs, fit.a, fit.b, fit.c), label=f"L = a N^-{fit.b:.3f} + {fit.c:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("parameters N (world model, tokenizer excluded)")
    ax.set_ylabel("validation cross-entropy (nats)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png


def run_sweep(
    *, config: str, data: str, tokenizer: str, out: Path, widths: list[int], steps: int, seed: int = 0,
    overrides: list[str] | None = None,
) -> tuple[list[dict], PowerLawFit]:
    """Train the world model config at each width; returns per-run rows and the fit."""
    from drivewm.train.config import load_run_config
    from drivewm.train.checkpoint import build_model_from_sources
    from drivewm.train.run import run_training

    rows = []
    for w in widths:
        run_dir = out / f"dim{w}"
        # The user's overrides first: the sweep's own keys (width, run directory) must win.
        run_overrides = [*(overrides or []), f"model.dim={w}", f"data.path={data}", f"model.tokenizer_run={tokenizer}",
                         f"train.steps={steps}", f"train.seed={seed}", f"run_dir={run_dir}", "train.eval_every=0"]
        cfg = load_run_config(config, run_overrides)
        model = build_model_from_sources(cfg.model)
        n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        result = run_training(cfg, resume=run_dir.is_dir())  # continues a run dir's checkpoint, or starts at step 0
        val = result.best_val
        if val is None:  # a resumed run that had already finished: read its logged validation loss
            logged = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
            val = [m["val_loss"] for m in logged if "val_loss" in m][-1]
        rows.append({"dim": w, "params": n_params, "val_ce": float(val)})
    fit = fit_power_law(np.array([r["params"] for r in rows]), np.array([r["val_ce"] for r in rows]))
    return rows, fit


def run_scaling(*, config: str | Path, data: str | Path, tokenizer: str | Path, out: str | Path, widths: list[int],
                steps: int, seed: int = 0, overrides: list[str] | None = None) -> tuple[list[dict], PowerLawFit, dict]:
    """The sweep, its fit and its plot (results/scaling.png under `out`); returns the rows, the fit and the
    result table (keyword arguments of `drivewm.report.results.write_result`)."""
    from drivewm.config import ConfigError, resolve_config_path
    from drivewm.data.manifest import StoreError

    if not Path(data).is_dir():
        raise StoreError(f"data={data}: no such store directory (run `make demo` first or pass data=DIR)")
    if not Path(tokenizer).is_dir():
        raise ConfigError(f"--tokenizer {tokenizer}: no such run directory (run `make demo` first or pass --tokenizer)")
    if len(widths) < 3:
        raise ConfigError(f"--widths needs at least 3 sizes (4 for an uncertainty), got {widths}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, fit = run_sweep(config=str(resolve_config_path(config)), data=str(data), tokenizer=str(tokenizer), out=out,
                          widths=widths, steps=steps, seed=seed, overrides=list(overrides or []))
    (out / "results").mkdir(parents=True, exist_ok=True)
    png = plot_fit([r["params"] for r in rows], [r["val_ce"] for r in rows], fit, out / "results" / "scaling.png")
    table = dict(name="scaling", title="Scaling: validation cross-entropy vs world-model size",
                 columns=["width", "parameters", "validation CE (nats)"],
                 rows=[[r["dim"], r["params"], r["val_ce"]] for r in rows], images=[png.name],
                 protocol="L(N) = a N^-b + c fitted by least squares (GAIA-1)",
                 notes=f"b = {fit.b:.3f} +- {fit.b_err:.3f}, c = {fit.c:.3f}")
    return rows, fit, table
