"""V-JEPA 2-AC as published: every predictor output layer-normed, the rollout loss over all autoregressive frames.

The reference is a line-by-line port of ``forward_predictions`` and ``loss_fn`` of facebookresearch/vjepa2
app/vjepa_droid/train.py (commit c2963a47433ecca0ad4f06ec28bcfa8cb5b5cefb) with ``normalize_reps`` true,
``loss_exp`` 1 and ``auto_steps`` 2, its predictor the raw output of drivewm's predictor (read before the norm).
"""

import torch
import torch.nn.functional as F

from drivewm.jepa.ac import JepaAC, JepaACConfig
from drivewm.jepa.encoders import EncoderConfig

from scenes import scene_batch

ENC = EncoderConfig(grid_shape=[16, 16, 4], patch=4, dim=32, depth=1, heads=2)


def _model() -> JepaAC:
    torch.manual_seed(0)
    m = JepaAC(JepaACConfig(encoder=ENC, width=32, depth=2, heads=2, rollout_steps=2, state_weight=0.0))
    # Raw outputs far from unit scale, so an un-normed prediction would fail the checks below.
    with torch.no_grad():
        m.patch_out.weight.mul_(30.0)
        m.patch_out.bias.fill_(2.0)
    return m


def _assert_token_normed(z: torch.Tensor) -> None:
    torch.testing.assert_close(z.mean(-1), torch.zeros(z.shape[:-1]), atol=1e-5, rtol=0)
    var = z.var(-1, unbiased=False)
    torch.testing.assert_close(var, torch.ones_like(var), atol=1e-3, rtol=0)


def test_every_prediction_is_layer_normed_per_token():
    m = _model().eval()
    b = scene_batch(2, 3, seed=4, grid=(16, 16, 4))
    states = b["rel_pose"].float()
    with torch.no_grad():
        z = m.encode(b["occ"].flatten(0, 1)).view(2, 3, 16, 32)
        cond = m.conditions(b["action"].float()[:, :2], states)
        tf, _ = m(z[:, :2], cond, states[:, :2])  # teacher forcing
        roll = m.rollout(z[:, :1], torch.randn(2, 3, 2), states=torch.cat([states, states[:, -1:]], 1))  # planning
        one = m.predict(z[:, :2], b["action"].float()[:, :2], states)
    for out in (tf, roll, one):
        _assert_token_normed(out)
    # the norm has no affine: the raw projection's scale and offset are gone
    assert tf.abs().max() < 10.0


def _official_rollout_loss(h: torch.Tensor, predictor, tokens_per_frame: int, auto_steps: int) -> torch.Tensor:
    """vjepa2 app/vjepa_droid/train.py ``forward_predictions`` + ``loss_fn(z_ar, h)``; h [B, T * N, D]."""

    def _step_predictor(_z, n_frames):
        _z = predictor(_z, n_frames)
        _z = F.layer_norm(_z, (_z.size(-1),))  # normalize_reps
        return _z

    z = h
    _z = z[:, :-tokens_per_frame]
    z_tf = _step_predictor(_z, h.shape[1] // tokens_per_frame - 1)
    _z = torch.cat([z[:, :tokens_per_frame], z_tf[:, :tokens_per_frame]], dim=1)
    for n in range(1, auto_steps):
        _z_nxt = _step_predictor(_z, n + 1)[:, -tokens_per_frame:]
        _z = torch.cat([_z, _z_nxt], dim=1)
    z_ar = _z[:, tokens_per_frame:]
    _h = h[:, tokens_per_frame : z_ar.size(1) + tokens_per_frame]
    loss_exp = 1.0
    return torch.mean(torch.abs(z_ar - _h) ** loss_exp) / loss_exp


def test_rollout_loss_equals_the_official_loss():
    m = _model()
    b = scene_batch(2, 4, seed=5, grid=(16, 16, 4))
    out = m.loss(b)
    n, d = m.n, ENC.dim
    states = b["rel_pose"].float()
    raw = []
    hook = m.patch_out.register_forward_hook(lambda mod, inp, o: raw.append(o))
    with torch.no_grad():
        z = m.encode(b["occ"].flatten(0, 1)).view(2, 4, n, d)
        cond = m.conditions(b["action"].float()[:, :-1], states)

        def predictor(flat, frames):  # official predictor: frames of tokens in, next frames' raw embeddings out
            raw.clear()
            m(flat.view(2, frames, n, d), cond[:, :frames], states[:, :frames])
            return raw[-1].reshape(2, frames * n, d)

        ref = _official_rollout_loss(z.flatten(1, 2), predictor, n, auto_steps=2)
        last_only = (_official_rollout_loss(z[:, :3].flatten(1, 2), predictor, n, auto_steps=2) * 2
                     - _official_rollout_loss(z[:, :2].flatten(1, 2), predictor, n, auto_steps=1))
    hook.remove()
    torch.testing.assert_close(out["rollout_loss"], ref, atol=1e-6, rtol=1e-5)
    # averaging both frames differs from scoring the last frame alone
    assert abs(float(out["rollout_loss"]) - float(last_only)) > 1e-4
