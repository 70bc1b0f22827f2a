"""`evaluate_tokenizer`: the whole reconstruction evaluation of one trained tokenizer, with its pictures.

Picks the protocol by the tokenizer's modality (occupancy: OccWorld IoU / mIoU; LiDAR: depth L1 /
Chamfer), saves input vs reconstruction (and, for occupancy, the codebook-usage histogram) under
`out_dir/results/`, and returns the numbers with the result table the report reads.
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


@dataclass
class TokenizerEvaluation:
    result: dict
    """Every metric (per-class IoU as a dict for occupancy)."""
    lidar: bool
    """True for a LiDAR tokenizer (depth / Chamfer metrics), False for occupancy."""
    picture: Path
    """Input vs reconstruction."""
    images: list[str] = field(default_factory=list)
    """File names under results/ of every picture written."""

    def result_table(self, title: str) -> dict:
        """Keyword arguments of `write_result` for results/tokenizer.json."""
        scalar = {k: v for k, v in self.result.items() if not isinstance(v, dict)}
        return dict(name="tokenizer", title=title, columns=["metric", "value"], rows=[[k, v] for k, v in scalar.items()],
                    protocol="4d-occ" if self.lidar else "occworld", images=self.images,
                    extra={"per_class_iou": self.result.get("per_class_iou", {})})


def evaluate_tokenizer(model, cfg, data: str, out_dir: str | Path, *, split: str = "val", batch_size: int = 8,
                       max_frames: int = 0, device: str = "cpu") -> TokenizerEvaluation:
    """Reconstruct every frame of `split` of the store `data` through the tokens of `model` (run config `cfg`)."""
    from drivewm.errors import DrivewmError

    results = Path(out_dir) / "results"
    if isinstance(model, OccTokenizer):
        ds = frame_dataset(cfg, data, split, "occ", max_frames)
        result, inputs, recs = evaluate_occ(model, ds, batch_size, device)
        png = save_occ_comparison(results / "tokenizer.png", model, inputs, recs)
        from drivewm.report.figures import bar_chart

        counts = sorted(result.pop("code_counts"), reverse=True)
        hist = bar_chart(counts, results / "codebook_usage.png", log=True, xlabel="code (sorted by use)",
                         ylabel="tokens", title=f"codebook usage: {result['codes_used']} / {result['vocab_size']} codes")
        return TokenizerEvaluation(result=result, lidar=False, picture=png, images=[png.name, hist.name])
    if isinstance(model, LidarTokenizer):
        ds = frame_dataset(cfg, data, split, "lidar", max_frames)
        result, inputs, recs = evaluate_lidar(model, ds, batch_size, device)
        png = save_lidar_comparison(results / "tokenizer.png", inputs, recs)
        return TokenizerEvaluation(result=result, lidar=True, picture=png, images=[png.name])
    raise DrivewmError(f"model {cfg.model.name!r} is not a tokenizer this evaluation knows (occupancy or LiDAR)")
