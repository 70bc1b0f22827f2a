"""`drivewm eval tokenizer` on camera tokenizers: reconstructions of the store's clips scored by the camera
table's loop (PSNR / SSIM per frame, a named Frechet distance), code statistics per codebook, a picture."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from drivewm.cli import app
from drivewm.config import merge_into
from drivewm.data.store import EpisodeStore
from drivewm.evaluation.camera_tokenizer import evaluate_camera_tokenizer
from drivewm.registry import build_model, config_class

torch.set_num_threads(1)
CNN = dict(channels=8, channel_mult=[1, 2, 2], num_res_blocks=1, attention=False)
SMALL = {
    "camera_vqgan": dict(cnn=CNN, z_channels=8, embed_dim=4, quantizer=dict(codebook_size=16)),
    "camera_temporal_vq": dict(cnn=CNN, z_channels=8, embed_dim=4, heads=2, quantizer=dict(codebook_size=16)),
    "camera_vqvae2": dict(bottom=CNN, top=dict(channels=8, channel_mult=[1, 1], num_res_blocks=1, attention=False),
                          hidden_channels=8, embed_dim=4, top_quantizer=dict(codebook_size=8),
                          bottom_quantizer=dict(codebook_size=16)),
    "camera_kl_autoencoder": dict(cnn=CNN, z_channels=4, embed_dim=4),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from drivewm.sim.generate import generate_store

    root = tmp_path_factory.mktemp("camtok_eval")
    # camera 16 x 32; the last of the 10 episodes is the 'val' split, 9 x 2 clips of 4 frames in 'train'
    generate_store(root / "data", preset="micro", episodes=10, frames=9, seed=0)
    return root / "data"


def tokenizer(name: str):
    torch.manual_seed(0)
    cfg = merge_into(config_class(name)(), [("test", dict(image_size=[16, 32], **SMALL[name]))])
    return build_model(cfg).eval()


def clips(store, frames: int) -> torch.Tensor:
    """The train split's non-overlapping clips as the evaluation cuts them: frames 1.. of each window of
    1 + `frames` frames, windows `frames` apart: [N, frames, H, W, 3] uint8."""
    s = EpisodeStore(store)
    out = []
    for ep in range(9):
        cam = s.read(ep, "camera", 0, s.episodes[ep]["frames"])
        out += [cam[start + 1:start + 1 + frames] for start in range(0, len(cam) - frames, frames)]
    return torch.from_numpy(np.stack(out))


@pytest.mark.parametrize("name", list(SMALL))
def test_psnr_per_frame_and_codes_equal_a_direct_reference(name, store, tmp_path):
    model = tokenizer(name)
    ev = evaluate_camera_tokenizer(model, name, store, tmp_path, split="train", clip_frames=4, batch_size=3)
    truth = clips(store, 4)
    rec = model.reconstruct(truth)  # a temporal tokenizer takes each clip whole, as the evaluation does
    mse = (rec.double() - truth.double()).square().flatten(2).mean(2).numpy()  # [N, frames]
    np.testing.assert_allclose(ev.result["psnr_per_frame"], (10 * np.log10(255.0**2 / mse)).mean(0),
                               rtol=1e-5)  # batches of 3 against one: a pixel may round to the next level
    assert ev.result["clips"] == len(truth) == 18 and ev.result["frames"] == 72
    codes = model.encode(truth)
    if name == "camera_kl_autoencoder":
        assert "usage" not in ev.result and "bits_per_frame" not in ev.result
    elif name == "camera_vqvae2":
        top, bottom = codes
        assert ev.result["top_codes_used"] == len(top.unique()) and ev.result["bottom_codes_used"] == len(bottom.unique())
        assert ev.result["bits_per_frame"] == 2 * 4 * 3 + 4 * 8 * 4  # 2 x 4 top codes of 8, 4 x 8 bottom of 16
    else:
        assert ev.result["codes_used"] == len(codes.unique()) and ev.result["bits_per_frame"] == 4 * 8 * 4
    assert ev.picture.stat().st_size > 1000


def test_cli_scores_a_trained_run_with_a_named_frechet_distance(store, tmp_path):
    run = tmp_path / "run"
    overrides = [f"model.{k}={json.dumps(v)}" for k, v in SMALL["camera_vqgan"].items()]
    runner = CliRunner()
    res = runner.invoke(app, ["train", "tokenizer", "--config", "tokenizer/camera_vqgan_tiny.yaml", f"data={store}",
                              f"run_dir={run}", "train.steps=1", "train.batch_size=2", "model.image_size=[16,32]",
                              "train.progress=false", *overrides])
    assert res.exit_code == 0, res.output
    net = torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(2), torch.nn.Linear(3 * 16 * 32, 6),
                                               torch.nn.Flatten(1)))
    net.save(str(tmp_path / "features.pt"))
    res = runner.invoke(app, ["eval", "tokenizer", str(run), f"data={store}", "--which", "latest", "--split", "train",
                              "--clip-frames", "4", "--extractor", str(tmp_path / "features.pt"),
                              "--fd-protocol", "fd_lin_4f_16x32_r-1to1"])
    assert res.exit_code == 0, res.output
    values = dict(json.loads((run / "results" / "tokenizer.json").read_text())["rows"])
    assert values["fd_name"] == "fd_lin_4f_16x32_bilinear_r-1to1_n18" and values["fd"] > 0
    assert values["usage"] > 0 and values["clips"] == 18 and 5 < values["psnr"] < 60
    assert "PSNR" in res.output and (run / "results" / "tokenizer.png").exists()
