"""`evaluate_tokenizer`: the whole reconstruction evaluation of one trained tokenizer, with its pictures.

Picks the protocol by the tokenizer's modality (occupancy: OccWorld IoU / mIoU; LiDAR: depth L1 /
Chamfer), saves input vs reconstruction (and, for occupancy, the codebook-usage histogram) under
`out_dir/results/`, and returns the numbers with the result table the report reads. Camera tokenizers are
scored as camera forecasts are, by `drivewm.evaluation.camera_tokenizer`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from drivewm.tokenizers.evaluate import (
    evaluate_lidar,
    evaluate_occ,
    frame_dataset,
    save_lidar_comparison,
    save_occ_comparison,
)
from drivewm.tokenizers.lidar import LidarTokenizer
from drivewm.tokenizers.occ import OccTokenizer
from drivewm.tokenizers.occworld_vae import OccWorldVAE


@dataclass
class TokenizerEvaluation:
    result: dict
    """Every metric (per-class IoU as a dict for occupancy)."""
    modality: str
    """'occ' (IoU metrics), 'lidar' (depth / Chamfer) or 'camera' (PSNR / SSIM / Frechet)."""
    picture: Path
    """Input vs reconstruction."""
    images: list[str] = field(default_factory=list)
    """File names under results/ of every picture written."""

    def result_table(self, title: str) -> dict:
        """Keyword arguments of `write_result` for results/tokenizer.json."""
        scalar = {k: v for k, v in self.result.items() if not isinstance(v, (dict, list))}
        protocol = {"occ": "occworld", "lidar": "4d-occ"}.get(self.modality, self.result.get("fd_name", "psnr_ssim"))
        return dict(name="tokenizer", title=title, columns=["metric", "value"], rows=[[k, v] for k, v in scalar.items()],
                    protocol=protocol, images=self.images,
                    extra={"per_class_iou": self.result.get("per_class_iou", {}),
                           "classes_lost": self.result.get("classes_lost", [])})


def save_codebook_usage(counts: list[int], path: Path, *, title: str) -> Path:
    """Tokens per code, most used first, on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.8))
    ax.bar(range(len(counts)), counts, width=1.0, color="#3b7dd8")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("code (sorted by use)")
    ax.set_ylabel("tokens")
    ax.set_yscale("log")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def evaluate_tokenizer(model, cfg, data: str, out_dir: str | Path, *, split: str = "val", batch_size: int = 8,
                       max_frames: int = 0, device: str = "cpu") -> TokenizerEvaluation:
    """Reconstruct every frame of `split` of the store `data` through the tokens of `model` (run config `cfg`);
    a tokenizer of another grid than the store's is refused first (GridMismatchError naming both)."""
    from drivewm.data.manifest import read_manifest
    from drivewm.data.spec import GridSpec, bind_model_grids
    from drivewm.errors import DrivewmError

    occupancy = isinstance(model, (OccTokenizer, OccWorldVAE))
    if not occupancy and not isinstance(model, LidarTokenizer):
        raise DrivewmError(f"model {cfg.model.name!r} is not a tokenizer this evaluation knows (occupancy, LiDAR or "
                           f"camera)")
    bind_model_grids(model.cfg, GridSpec.from_dict(read_manifest(data)["grid"]), str(data), compare=occupancy)
    results = Path(out_dir) / "results"
    if occupancy:
        ds = frame_dataset(cfg, data, split, "occ", max_frames)
        result, inputs, recs = evaluate_occ(model, ds, batch_size, device)
        png = save_occ_comparison(results / "tokenizer.png", model, inputs, recs)
        hist = save_codebook_usage(sorted(result.pop("code_counts"), reverse=True), results / "codebook_usage.png",
                                   title=f"codebook usage: {result['codes_used']} / {result['vocab_size']} codes")
        return TokenizerEvaluation(result=result, modality="occ", picture=png, images=[png.name, hist.name])
    ds = frame_dataset(cfg, data, split, "lidar", max_frames)
    result, inputs, recs = evaluate_lidar(model, ds, batch_size, device)
    png = save_lidar_comparison(results / "tokenizer.png", inputs, recs)
    return TokenizerEvaluation(result=result, modality="lidar", picture=png, images=[png.name])
