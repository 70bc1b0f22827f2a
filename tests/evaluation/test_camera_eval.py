"""Camera forecasting tables and long rollouts: per-step PSNR / SSIM against references, the calibration that
reaches the homography-warped copy, the protocol Frechet distance, the CLI table, rollout drift, bad input."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from drivewm.baselines import CopyLast, CopyLastCamera
from drivewm.cli import app
from drivewm.data.config import DataConfig
from drivewm.data.store import EpisodeStore, write_episode
from drivewm.data.windows import WindowDataset
from drivewm.errors import DrivewmError
from drivewm.evaluation import CameraScoring, evaluate_forecast, evaluate_forecasters
from drivewm.evaluation.camera import parse_protocol
from drivewm.evaluation.rollout import evaluate_rollout, save_rollout
from drivewm.forecaster import split_window
from drivewm.metrics import FrechetProtocol
from drivewm.metrics.image import ssim_per_image
from drivewm.metrics.video import FVD_I3D400_16F_224

PAST, HORIZON = 3, 4


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A tiny_camera simulator store (64 x 128 camera with its calibration), 3 episodes of 14 frames."""
    from drivewm.sim.generate import generate_store

    path = tmp_path_factory.mktemp("camstore") / "data"
    generate_store(path, preset="tiny_camera", episodes=3, frames=14, seed=0)
    return path


class Truth:
    """The true future frames (an upper-bound row: the loop hands it the future)."""

    name, modality, sees_future = "truth_copy", "camera", True

    def forecast(self, future, horizon, *, generator=None):
        return future["camera"][:, :horizon].clone()


class Noisy:
    """The true future plus seeded uniform noise of +-`amp` grey levels, clipped (sees the future: a test row)."""

    modality, sees_future = "camera", True

    def __init__(self, amp: int) -> None:
        self.name, self.amp = f"noisy{amp}", amp

    def forecast(self, future, horizon, *, generator=None):
        cam = future["camera"][:, :horizon].long()
        noise = torch.randint(-self.amp, self.amp + 1, cam.shape, generator=generator)
        return (cam + noise).clamp(0, 255).to(torch.uint8)


def _clips(seed: int, b: int = 2):
    g = torch.Generator().manual_seed(seed)
    return {"camera": torch.randint(0, 256, (b, PAST + HORIZON, 16, 24, 3), generator=g, dtype=torch.uint8),
            "action": torch.zeros(b, PAST + HORIZON, 2), "ego_pose": torch.zeros(b, PAST + HORIZON, 3)}


def test_per_step_psnr_and_ssim_equal_a_numpy_reference():
    batches = [_clips(0), _clips(1)]
    ev = evaluate_forecasters([CopyLastCamera(), Truth()], batches, CameraScoring(HORIZON), past=PAST, horizon=HORIZON)
    r = ev.metrics["copy_last_camera"].compute()
    assert len(r["psnr_per_step"]) == HORIZON and ev.windows == 4
    for s in range(HORIZON):
        psnr, ssim = [], []
        for batch in batches:
            cam = batch["camera"].numpy().astype(np.float64)
            pred, truth = cam[:, PAST - 1], cam[:, PAST + s]  # [B, h, w, 3]
            mse = ((pred - truth) ** 2).reshape(len(pred), -1).mean(1)
            psnr += list(10 * np.log10(255.0**2 / mse))
            as_chw = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2)  # noqa: E731
            ssim += ssim_per_image(as_chw(pred), as_chw(truth), 255.0).tolist()
        assert r["psnr_per_step"][s] == pytest.approx(np.mean(psnr), rel=1e-12)
        assert r["ssim_per_step"][s] == pytest.approx(np.mean(ssim), rel=1e-12)
    perfect = ev.metrics["truth_copy"].compute()
    assert perfect["psnr_per_step"] == [math.inf] * HORIZON and perfect["psnr"] == math.inf
    assert perfect["ssim_per_step"] == pytest.approx([1.0] * HORIZON, abs=1e-12)
    assert ev.example["context"].shape == (PAST, 16, 24, 3) and ev.example["truth_copy"].dtype == torch.uint8


def test_per_step_image_metric_equals_one_metric_per_step():
    from drivewm.metrics import ImageQualityMetric

    g = torch.Generator().manual_seed(3)
    target = torch.rand(5, 3, 3, 12, 16, generator=g, dtype=torch.float64)
    pred = (target + 0.1 * torch.randn(target.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    pred[0, 1] = target[0, 1]  # one exact copy: counted apart, not an infinite mean
    stepped = ImageQualityMetric(steps=3)
    stepped.update(pred[:2], target[:2])
    stepped.update(pred[2:], target[2:])
    r = stepped.compute()
    whole = ImageQualityMetric()
    whole.update(pred.flatten(0, 1), target.flatten(0, 1))
    assert {k: r[k] for k in whole.compute()} == pytest.approx(whole.compute(), rel=1e-12)
    for s in range(3):
        one = ImageQualityMetric()
        one.update(pred[:, s], target[:, s])
        assert (r["psnr_per_step"][s], r["ssim_per_step"][s]) == pytest.approx(
            (one.compute()["psnr"], one.compute()["ssim"]), rel=1e-12)
    assert r["identical_per_step"] == [0, 1, 0]
    with pytest.raises(ValueError, match="clips"):
        stepped.update(pred[:, :2], target[:, :2])


def test_less_noise_scores_higher_psnr_at_every_step():
    ev = evaluate_forecasters([Noisy(40), Noisy(5)], [_clips(2)], CameraScoring(HORIZON), past=PAST, horizon=HORIZON)
    loud, quiet = (ev.metrics[n].compute() for n in ("noisy40", "noisy5"))
    assert all(q > lo + 10 for q, lo in zip(quiet["psnr_per_step"], loud["psnr_per_step"]))


def test_calibration_reaches_the_context_whole(store):
    ds = WindowDataset(DataConfig(path=str(store), past=PAST, future=HORIZON,
                                  keys=["camera", "ego_pose", "camera_intrinsics", "camera_extrinsics"]), "train")
    batch = torch.utils.data.default_collate([ds[0], ds[5]])
    context, future = split_window(batch, PAST)
    assert context["camera_intrinsics"].shape == (2, 3, 3) and context["camera_extrinsics"].shape == (2, 4, 4)
    assert context["camera"].shape[1] == PAST and future["camera"].shape[1] == HORIZON
    episode = EpisodeStore(store).read(ds.locate(0)[0], "camera_intrinsics")
    assert torch.equal(context["camera_intrinsics"][0], torch.from_numpy(episode))
    assert torch.equal(future["camera_extrinsics"], batch["camera_extrinsics"])


def test_homography_row_beats_copy_last_under_ego_motion(store):
    table = evaluate_forecast([], store, past=PAST, horizon=HORIZON, split="train", modality="camera",
                              forecasters=[Truth()])
    rows = table.results
    assert list(rows) == ["copy_last_camera", "ego_warp_camera", "truth_copy"]
    assert rows["ego_warp_camera"]["psnr_per_step"][0] > rows["copy_last_camera"]["psnr_per_step"][0] + 0.5
    assert rows["truth_copy"]["ssim_per_step"] == pytest.approx([1.0] * HORIZON)
    doc = table.document(["forecast_camera.png"])
    assert doc["name"] == "forecast_camera" and doc["columns"][1:4] == ["PSNR +1", "PSNR +2", f"PSNR +{HORIZON}"]


def _script_extractor(path):
    class PoolI3DCall(torch.nn.Module):
        """A stand-in with the I3D TorchScript's call (clips [N, C, T, H, W], rescale / resize / return_features
        keywords), whose features are the 2 x 2 pooled frames: a fixed ruler for the test."""

        def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                    return_features: bool = False) -> torch.Tensor:
            if x.shape[1] != 3 or rescale or resize or not return_features:
                raise ValueError("called unlike the StyleGAN-V FVD code calls I3D")
            return torch.nn.functional.adaptive_avg_pool3d(x, (x.shape[2], 2, 2)).reshape(x.shape[0], -1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(PoolI3DCall()), str(path))


def test_frechet_distance_under_a_named_protocol(store, tmp_path):
    _script_extractor(tmp_path / "i3d_stand_in.pt")
    table = evaluate_forecast([], store, past=PAST, horizon=HORIZON, split="train", modality="camera",
                              forecasters=[Truth()], extractor=str(tmp_path / "i3d_stand_in.pt"), fd_protocol="fvd_i3d400_2f_32x64")
    fd = {n: r["fd"] for n, r in table.results.items()}
    # The I3D's own value range ([-1, 1], as FVD_I3D400_16F_224) unless the name says otherwise.
    assert fd["truth_copy"]["name"] == f"fvd_i3d400_2f_32x64_bilinear_r-1to1_n{table.windows}"
    assert abs(fd["truth_copy"]["value"]) < 1e-6 < fd["copy_last_camera"]["value"]
    assert table.document([])["columns"][-1] == fd["truth_copy"]["name"]
    rollout = evaluate_rollout([], store, past=2, horizon=4, split="train", modality="camera",
                               extractor=str(tmp_path / "i3d_stand_in.pt"), fd_protocol="fvd_i3d400_2f_32x64")
    blocks = rollout.document()["fd_per_block"]
    assert rollout.fd_name.endswith(f"_n{rollout.windows}") and all(len(v) == 2 for v in blocks.values())
    with pytest.raises(DrivewmError, match="needs 32 samples"):
        evaluate_forecast([], store, past=PAST, horizon=HORIZON, split="train", modality="camera",
                          extractor=str(tmp_path / "i3d_stand_in.pt"), fd_protocol="fvd_i3d400_2f_32x64_n32")
    with pytest.raises(DrivewmError, match="feature network file not found"):
        evaluate_forecast([], store, past=PAST, horizon=HORIZON, split="train", modality="camera",
                          extractor=str(tmp_path / "none.pt"), fd_protocol="fvd_i3d400_2f_32x64")


@pytest.mark.parametrize("protocol", [FVD_I3D400_16F_224, FrechetProtocol("fid", "inception", (64, 128), resize="area",
                                                                          value_range=(0.0, 255.0), samples=512)])
def test_a_protocol_name_parses_back_to_its_protocol(protocol):
    assert parse_protocol(protocol.name) == (protocol, True)
    short, given = parse_protocol("fvd_i3d400_16f_224")
    assert short == FVD_I3D400_16F_224 and given
    with pytest.raises(DrivewmError, match="fd_protocol"):
        parse_protocol("fvd_i3d400_sixteen")
    # drivewm's own extractors have no published convention: the name must say the range they read.
    with pytest.raises(DrivewmError, match="value range"):
        parse_protocol("fd_vjepacam_8f_64x128")
    assert parse_protocol("fd_vjepacam_8f_64x128_r-1to1")[0].value_range == (-1.0, 1.0)


def test_camera_table_through_the_cli(store, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["eval", "forecast", f"data={store}", "--modality", "camera", "--split", "train",
                                   "--past", str(PAST), "--horizon", str(HORIZON), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "ego_warp_camera" in res.output and "PSNR +2" in res.output
    doc = json.loads((out / "results" / "forecast_camera.json").read_text())
    assert [r[0] for r in doc["rows"]] == ["copy_last_camera", "ego_warp_camera"]
    assert {"forecast_camera.png", "forecast_camera.gif"} <= {p.name for p in (out / "results").iterdir()}


def test_rollout_drift_has_one_entry_per_step_per_row(store, tmp_path):
    horizon = 10
    camera = evaluate_rollout([], store, past=2, horizon=horizon, split="train", modality="camera")
    assert list(camera.results) == ["copy_last_camera", "ego_warp_camera"]
    path = save_rollout(camera, tmp_path)
    doc = json.loads(path.read_text())
    assert all(len(v) == horizon for curve in doc["per_step"].values() for v in curve.values())
    assert (tmp_path / "results" / "rollout.png").is_file()
    res = CliRunner().invoke(app, ["eval", "rollout", f"data={store}", "--modality", "camera", "--past", "2",
                                   "--horizon", "3", "--split", "train", "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    cli = json.loads((tmp_path / "cli" / "results" / "rollout.json").read_text())
    assert [len(v) for v in cli["per_step"]["psnr_per_step"].values()] == [3, 3]

    class AllFree:
        name, modality, sees_future = "all_free", "occ", False

        def forecast(self, context, horizon, *, generator=None):
            return torch.full_like(context["occ"][:, :1].expand(-1, horizon, -1, -1, -1), free)

    free = EpisodeStore(store).grid.free_id
    occ = evaluate_rollout([], store, past=2, horizon=horizon, split="train", forecasters=[AllFree()])
    assert list(occ.results) == ["copy_last", "ego_warp_copy_last", "all_free"]
    r = occ.results["all_free"]
    assert len(r["miou_per_step"]) == len(r["class_tv_per_step"]) == horizon
    # All voxels free: the histogram distance is the share of the true voxels that are not free.
    truth_free = np.array(r["class_freq_truth"])[:, free]
    assert r["class_tv_per_step"] == pytest.approx((1 - truth_free).tolist(), abs=1e-12)


def test_a_rollout_longer_than_the_episodes_names_their_length(store):
    with pytest.raises(DrivewmError, match=r"no val window of 8 \+ 40 frames; the longest val episode has 14"):
        evaluate_rollout([], store, past=8, horizon=40, split="val", modality="camera")


def test_mixed_modalities_and_a_store_without_camera_are_one_error(store, tmp_path):
    with pytest.raises(DrivewmError, match="mix camera and occupancy world models"):
        evaluate_forecast([], store, forecasters=[CopyLastCamera(), CopyLast()])
    occ_only = tmp_path / "occ"
    ep = EpisodeStore(store).read_episode(0)
    write_episode(occ_only, {k: ep[k] for k in ("occ", "ego_pose", "action")}, grid=EpisodeStore(store).grid)
    with pytest.raises(DrivewmError, match="key 'camera'"):
        evaluate_forecast([], occ_only, modality="camera")
    res = CliRunner().invoke(app, ["eval", "forecast", f"data={occ_only}", "--modality", "camera", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "'camera'" in res.output


def test_a_camera_tokenizer_gives_its_reconstruction_bound_row(store):
    from drivewm.config import merge_into
    from drivewm.dynamics.forecast import TokenizerBound
    from drivewm.registry import build_model
    from drivewm.tokenizers.vqgan import VQGANConfig

    torch.manual_seed(0)
    cnn = dict(channels=8, channel_mult=[1, 2, 2], num_res_blocks=1, attention=False)
    tokenizer = build_model(merge_into(VQGANConfig(), [("test", dict(
        image_size=[64, 128], cnn=cnn, z_channels=8, embed_dim=4, quantizer=dict(codebook_size=16)))])).eval()

    class TokenModel(CopyLastCamera):
        """A camera world model's face to the table: a frozen tokenizer and a run name."""

        name = "token_model (run)"
        modality = "camera"
        cfg = type("Cfg", (), {"name": "token_model", "tokenizer_run": "/runs/camtok"})()

        def __init__(self) -> None:
            self.tokenizer = tokenizer

    table = evaluate_forecast([], store, past=PAST, horizon=HORIZON, split="train", forecasters=[TokenModel()],
                              max_windows=4)
    assert list(table.results) == ["copy_last_camera", "ego_warp_camera", "tokenizer_recon (camtok)", "token_model (run)"]
    bound = TokenizerBound(TokenModel())
    future = {"camera": torch.from_numpy(EpisodeStore(store).read(0, "camera", 0, HORIZON))[None]}
    assert torch.equal(bound.forecast(future, HORIZON), tokenizer.reconstruct(future["camera"]))
