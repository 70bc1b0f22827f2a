"""LeJEPA as published: SIGReg on one pooled, projected embedding per view and sample, invariance to the mean
of the global views, one lambda. The reference is a port of rbalestr-lab/lejepa MINIMAL.md
(eddffdd857a19726342ef6526e01021fb3c32cae): its ``SIGReg.forward`` (the slices passed in instead of drawn on
CUDA) and the loss lines of its training loop, with the centres taken over the global views as the paper's
Algorithm 1."""

import pytest
import torch

import drivewm.jepa.lejepa as lejepa_mod
from drivewm.config import preset_path
from drivewm.jepa.encoders import EncoderConfig
from drivewm.jepa.lejepa import LeJEPA, LeJEPAConfig, crop_views
from drivewm.jepa.regularizers import random_directions
from drivewm.registry import build_model
from drivewm.train.config import load_run_config

from scenes import scene_batch

ENC = EncoderConfig(grid_shape=[16, 16, 4], patch=2, dim=32, depth=1, heads=2)


class OfficialSIGReg(torch.nn.Module):
    """MINIMAL.md ``SIGReg``; ``A`` is given (the official draws ``torch.randn(D, 256)`` and normalises it)."""

    def __init__(self, knots=17):
        super().__init__()
        t = torch.linspace(0, 3, knots, dtype=torch.float32)
        dt = 3 / (knots - 1)
        weights = torch.full((knots,), 2 * dt, dtype=torch.float32)
        weights[[0, -1]] = dt
        window = torch.exp(-t.square() / 2.0)
        self.register_buffer("t", t)
        self.register_buffer("phi", window)
        self.register_buffer("weights", weights * window)

    def forward(self, proj, A):
        x_t = (proj @ A).unsqueeze(-1) * self.t
        err = (x_t.cos().mean(-3) - self.phi).square() + x_t.sin().mean(-3).square()
        statistic = (err @ self.weights) * proj.size(-2)
        return statistic.mean()


def _official_loss(proj, n_global, lamb, A):
    """proj [V, N, P] as MINIMAL.md's ``net`` returns it; centres over the global views."""
    inv_loss = (proj[:n_global].mean(0) - proj).square().mean()
    sigreg_loss = OfficialSIGReg()(proj, A)
    return sigreg_loss * lamb + inv_loss * (1 - lamb)


def test_loss_equals_the_official_formula_on_pooled_embeddings(monkeypatch):
    cfg = LeJEPAConfig(encoder=ENC, global_views=2, local_views=3, proj_hidden=32, proj_dim=8, lamb=0.3,
                       num_slices=64, seed=3)
    torch.manual_seed(0)
    model = LeJEPA(cfg).train()
    model.counter.set(5)
    occ = scene_batch(3, 2, seed=7, grid=(16, 16, 4))["occ"]  # 6 frames
    seen = []
    real = lejepa_mod.sigreg
    monkeypatch.setattr(lejepa_mod, "sigreg", lambda z, **kw: seen.append(tuple(z.shape)) or real(z, **kw))
    out = model.loss({"occ": occ})
    # SIGReg acts on one [batch, proj_dim] matrix per view: pooled embeddings, not patch tokens
    assert seen == [(6, 8)] * 5
    with torch.no_grad():
        frames = occ.flatten(0, 1)
        pooled = [model.encoder(frames, keep=idx).mean(1) for idx in model.views(6, 5)]  # 5 x [6, 32]
        proj = model.projector(torch.cat(pooled)).view(5, 6, 8)
        ref = _official_loss(proj, 2, 0.3, random_directions(8, 64, seed=3, step=5))
    torch.testing.assert_close(out["loss"].detach(), ref, rtol=1e-5, atol=1e-6)
    # one lambda: the loss is the convex combination of the two logged terms
    torch.testing.assert_close(out["loss"].detach(), 0.7 * out["invariance"] + 0.3 * out["sigreg"])


def test_no_predictor_no_teacher_and_gradients_reach_encoder_and_projector():
    torch.manual_seed(0)
    model = build_model(LeJEPAConfig(encoder=ENC, local_views=2, proj_hidden=16, proj_dim=8, num_slices=16))
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    assert names == {"encoder", "projector"}
    out = model.loss(scene_batch(2, 2, seed=1, grid=(16, 16, 4)))
    out["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_views_are_crops_of_the_scale_ranges():
    g = torch.Generator().manual_seed(0)
    grid = (8, 8)
    for _ in range(20):
        glob, loc = crop_views(4, grid, [(0.3, 1.0), (0.05, 0.3)], g)
        for idx, (lo, hi) in ((glob, (0.3, 1.0)), (loc, (0.05, 0.3))):
            rows, cols = idx // 8, idx % 8
            h = int(rows[0].max() - rows[0].min()) + 1
            w = int(cols[0].max() - cols[0].min()) + 1
            assert idx.shape[1] == h * w  # a full rectangle
            # rounding the sides to whole patches moves the area by at most one row and one column
            assert lo * 64 - h - w - 1 <= h * w <= hi * 64 + h + w + 1
            assert 0.5 <= h / w <= 2.0


def test_preset_is_the_published_recipe():
    cfg = load_run_config(preset_path("jepa") / "lejepa.yaml")
    m = cfg.model
    assert m.name == "lejepa" and (m.global_views, m.local_views) == (2, 6)
    assert m.global_scale == [0.3, 1.0] and m.local_scale == [0.05, 0.3] and m.lamb == pytest.approx(0.02)
    build_model(m)
