"""Copilot4D (arXiv 2311.01017) in the MaskGIT world model: guidance weight, Algorithm 2 rollouts, training mix."""

import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from drivewm.dynamics import MaskGITWorldConfig


def test_guidance_weight_0_returns_the_conditional_logits_bit_exactly(make_model, tokens, cond):
    model = make_model("maskgit").eval()
    window = torch.cat([tokens[:, :3], torch.full_like(tokens[:, :1], model.mask_id)], 1)
    conditional = model.denoise_logits(window, cond)[:, -1].flatten(1, 2)
    assert torch.equal(model.frame_logits(window, cond, 0.0), conditional)
    guided = model.frame_logits(window, cond, 1.0)  # cond + (cond - uncond): differs
    assert not torch.allclose(guided, conditional, atol=1e-4)


def test_old_guidance_scale_upgrades_to_the_same_guided_logits():
    data = {"name": "maskgit_world", "guidance": 2.0}
    assert MaskGITWorldConfig.upgrade(data) == ["guidance"]
    assert data == {"name": "maskgit_world", "guidance_weight": 1.0}


def test_copilot4d_sampler_rolls_out_whole_frames(make_model, tokens, cond):
    model = make_model("maskgit", sampler="copilot4d", choice_temperature=1.0).eval()
    seen = []
    original = model.frame_logits

    def recording(window, c, w, cache=None, prior=None):
        seen.append(int((window[:, -1] != model.mask_id).sum(dim=(1, 2))[0]))
        return original(window, c, w, cache, prior)

    model.frame_logits = recording
    out = model.rollout(tokens[:, :2], cond, 1, steps=4, generator=torch.Generator().manual_seed(0))
    # Decoded after iterations k = 3, 2, 1: ceil(cos(k/4 pi/2) 16) = 7, 12, 15; the last one decodes all 16.
    assert seen == [0, 7, 12, 15]
    assert int(out.max()) < model.vocab_size


@pytest.mark.parametrize("bad, match", [
    (dict(cond_drop_prob=0.1), "cond_drop_prob"),
    (dict(cond_drop_prob=0.0, task_mix=[0.5, 0.5, 0.1]), "task_mix"),
    (dict(cond_drop_prob=0.0, warp_prior=True), "warp_prior"),
])
def test_copilot4d_objective_rejects_options_it_cannot_honour(make_model, bad, match):
    with pytest.raises(ValueError, match=match):
        make_model("maskgit", objective="copilot4d", **bad)


def test_copilot4d_training_mix(make_model):
    """Per clip one task, drawn 50 / 40 / 10: future prediction (clean frames before a split p in 1..T-1, every
    frame from p on corrupted), joint denoising (every frame corrupted), individual frame denoising (one frame
    corrupted, its past [MASK], every ego token the null token). The loss is the cross-entropy over exactly the
    corrupted frames."""
    model = make_model("maskgit", objective="copilot4d", cond_drop_prob=0.0).train()
    g = torch.Generator().manual_seed(0)
    b, t, v = 600, 6, model.vocab_size
    tokens = torch.randint(0, v, (b, t, 4, 4), generator=g)
    cond = torch.randn(b, t, model.action_dim, generator=g)
    seen = []
    model.net.register_forward_hook(lambda mod, args, out: seen.append((args[0], args[1], out)))
    torch.manual_seed(1)
    with torch.no_grad():
        logs = model.loss_tokens(tokens, cond)
    (inputs, ego, logits), = seen  # one pass over the whole clips
    has_mask = (inputs == model.mask_id).flatten(2).any(2)  # [B, T]
    full_mask = (inputs == model.mask_id).flatten(2).all(2)
    null = (ego == model.null_ego).all(-1).all(-1)  # [B]: every ego token the null token
    first = has_mask.int().argmax(1)
    tail = torch.arange(t)[None] >= first[:, None]
    future = ~null & (first >= 1) & (has_mask == tail).all(1)
    joint = ~null & has_mask.all(1)
    last = t - 1 - has_mask.flip(1).int().argmax(1)  # per-frame rows: the frame denoised
    before = torch.arange(t)[None] < last[:, None]
    single = null & (full_mask | ~before).all(1)  # the past of the denoised frame is all [MASK]
    assert int(future.sum() + joint.sum() + single.sum()) == b  # every clip is exactly one task
    counts = [int(future.sum()), int(joint.sum()), int(single.sum())]
    assert scipy.stats.chisquare(counts, [0.5 * b, 0.4 * b, 0.1 * b]).pvalue > 1e-3
    # Future prediction splits uniformly over 1..T-1.
    splits = torch.bincount(first[future], minlength=t)[1:].tolist()
    assert scipy.stats.chisquare(splits).pvalue > 1e-3
    # The loss: cross-entropy over the corrupted frames only (the per-frame rows: their one frame).
    denoised = torch.where(single[:, None], torch.arange(t)[None] == last[:, None], has_mask)
    ref = F.cross_entropy(logits[denoised].reshape(-1, v), tokens[denoised].reshape(-1), label_smoothing=0.1)
    assert torch.allclose(logs["loss"], ref, atol=1e-5)
