"""Tokenizer evaluation: metrics agree with a direct numpy computation on the same reconstructions."""

import math

import numpy as np
import torch

from drivewm.tokenizers.bev_cnn import BevCnnConfig
from drivewm.tokenizers.evaluate import evaluate_occ, save_occ_comparison
from drivewm.tokenizers.occ import OccTokenizer, OccTokenizerConfig
from drivewm.tokenizers.quantizer import QuantizerConfig


def test_evaluate_occ_matches_direct_counts(toy_occ, tmp_path):
    torch.manual_seed(0)
    m = OccTokenizer(OccTokenizerConfig(grid="micro", z_channels=16, quantizer=QuantizerConfig(codebook_size=32),
                                        cnn=BevCnnConfig(channels=16, channel_mult=[1, 2, 2], num_res_blocks=1, attention=False)))
    occ = toy_occ(6, (32, 32, 4), seed=5)
    m.train().loss({"occ": occ})
    m.eval()
    frames = [{"occ": occ[i : i + 1]} for i in range(6)]  # the window layout: [T=1, X, Y, Z] per item
    result, shown_in, shown_out = evaluate_occ(m, frames, batch_size=4, device="cpu")
    rec = m.reconstruct(occ).numpy()
    gt = occ.numpy()
    occ_gt, occ_pred = gt != 17, rec != 17
    assert math.isclose(result["iou"], 100 * (occ_gt & occ_pred).sum() / (occ_gt | occ_pred).sum(), rel_tol=1e-9)
    ious = []
    for c in range(17):
        seen = (gt == c).sum()
        ious.append(1.0 if seen == 0 else ((gt == c) & (rec == c)).sum() / ((gt == c) | (rec == c)).sum())
    assert math.isclose(result["miou"], 100 * np.mean(ious), rel_tol=1e-9)
    present = [i for c, i in enumerate(ious) if (gt == c).sum() > 0]
    assert result["classes_present"] == len(present)
    assert math.isclose(result["miou_present"], 100 * np.mean(present), rel_tol=1e-9)
    codes = m.encode(occ)
    assert result["codes_used"] == torch.unique(codes).numel() and result["frames"] == 6
    assert result["bits_per_frame"] == 64 * 5  # 8 x 8 tokens of log2(32) bits
    assert math.isclose(result["compression_ratio"], 32 * 32 * 4 * math.log2(18) / 320)
    png = save_occ_comparison(tmp_path / "cmp.png", m, shown_in, shown_out)
    assert png.stat().st_size > 1000
