"""The GPT world model with action tokens (DrivingGPT / DrivingWorld): the stream, its targets and loss on a
hand-worked example, causality, the cache, and planning by predicting the next action tokens."""

import math

import pytest
import torch
import torch.nn.functional as F

from drivewm.conditions import ego_conditions


def _model(make_model, actions="drivinggpt", backbone="attention", **over):
    over = {"token_shape": [1, 2], "condition": "action_motion", **over}
    return make_model("gpt", backbone, actions=actions, **over)


def _cond(poses):
    """'action_motion' conditions [1, T, 5] of world poses [T, 3]."""
    p = torch.tensor(poses, dtype=torch.float32)[None]
    return ego_conditions({"action": torch.zeros(1, len(poses), 2), "ego_pose": p}, "action_motion")


def test_loss_is_the_cross_entropy_of_every_next_token_action_tokens_included(make_model):
    m = _model(make_model).eval()  # vocab 16, 2 scene tokens per frame, 3 action slots of 128 bins
    tokens = torch.tensor([[[[3, 7]], [[11, 5]]]])  # [1, T=2, 1, 2]
    cond = _cond([[0.0, 0.0, 0.0], [2.0, 0.5, 0.1]])  # frame 1 is 2 m ahead, 0.5 m left, turned 0.1 rad
    acts = m.action_ids(cond)
    # x: floor((2 + 2) / 16 * 128) = 32; y: floor((0.5 + 4) / 8 * 128) = 72; theta: floor(0.7 / 1.2 * 128) = 74
    assert acts[0, 0].tolist() == [16 + 32, 16 + 128 + 72, 16 + 256 + 74]
    x, y, th = acts[0, 0].tolist()
    ids = m.sequence_ids(tokens, acts)
    assert ids[0, :7].tolist() == [3, 7, x, y, th, 11, 5]
    # position p predicts id p+1; the last frame's motion leads past the window: no target
    want = [7, x, y, th, 11, 5, -100, -100, -100, -100]
    assert m.sequence_targets(tokens, acts)[0].tolist() == want
    logits = m.forward_logits(m.embed_ids(ids), 2)[0]  # [10, 16 + 384]
    assert logits.shape == (10, 400)
    logp = logits.log_softmax(-1)
    nll = [-logp[p, t] for p, t in enumerate(want) if t >= 0]
    out = m.loss_tokens(tokens, cond)
    torch.testing.assert_close(out["loss"], torch.stack(nll).mean())
    torch.testing.assert_close(out["action_loss"], torch.stack(nll[1:4]).mean())
    torch.testing.assert_close(out["scene_loss"], torch.stack([nll[0], *nll[4:]]).mean())
    # a different motion changes exactly the action targets
    other = m.loss_tokens(tokens, _cond([[0.0, 0.0, 0.0], [6.0, -1.0, -0.2]]))
    assert not torch.isclose(other["action_loss"], out["action_loss"])


def test_drivingworld_pose_tokens_take_the_action_slots(make_model):
    m = _model(make_model, "drivingworld").eval()
    assert m.slots == 3 and m.head.out_features == 16 + 512 + 128 + 128
    acts = m.action_ids(_cond([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0]]))
    # yaw first (DrivingWorld's order): 0 rad falls in bin 255 of its half-bin-shifted 16 degrees
    assert acts[0, 0].tolist() == [16 + 255, 16 + 512 + 64, 16 + 512 + 128 + 63]


def test_every_parameter_learns_and_masked_inputs_keep_true_targets(make_model):
    m = _model(make_model, token_shape=[2, 2], input_mask_ratio=0.5).train()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 16, (2, 4, 2, 2), generator=g)
    cond = torch.randn(2, 4, 5, generator=g)
    out = m.loss_tokens(tokens, cond)
    out["loss"].backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing and math.isfinite(out["loss"].item())
    assert m.mask_id == 16 + 384 and m.tok_emb.num_embeddings == 16 + 384 + 1


@pytest.mark.parametrize("backbone", ["attention", "ssm"])
def test_later_frames_never_change_earlier_action_logits(make_model, backbone):
    m = _model(make_model, token_shape=[2, 2], backbone=backbone).eval()
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 16, (1, 3, 2, 2), generator=g)
    cond = torch.randn(1, 3, 5, generator=g)
    ids = m.sequence_ids(tokens, m.action_ids(cond))
    later = tokens.clone()
    later[:, 2] = (later[:, 2] + 1) % 16
    cond2 = cond.clone()
    cond2[:, 2] += 1.0
    ids2 = m.sequence_ids(later, m.action_ids(cond2))
    frame2 = 2 * (4 + 3)  # stream position where frame 2 starts
    assert not torch.equal(ids[:, frame2:], ids2[:, frame2:])
    a = m.forward_logits(m.embed_ids(ids), 3)
    b = m.forward_logits(m.embed_ids(ids2), 3)
    torch.testing.assert_close(a[:, :frame2], b[:, :frame2], atol=1e-6, rtol=0)  # frame 1's action logits included
    assert not torch.allclose(a[:, frame2:], b[:, frame2:])


@pytest.mark.parametrize("backbone", ["attention", "ssm"])
def test_plan_and_rollout_with_cache_equal_the_full_recomputation(make_model, backbone):
    from drivewm.dynamics.sampling import SamplingConfig

    m = _model(make_model, token_shape=[2, 2], backbone=backbone).eval()
    g = torch.Generator().manual_seed(2)
    context = torch.randint(0, 16, (2, 2, 2, 2), generator=g)
    past = torch.tensor([[[3.0, 0.1, 0.02]], [[5.0, -0.2, -0.05]]])
    s = SamplingConfig(temperature=1.0)
    runs = [m.plan(context, past, 3, sampling=s, generator=torch.Generator().manual_seed(5), use_cache=c)
            for c in (True, False)]
    assert torch.equal(runs[0][0], runs[1][0])
    tokens, motion = runs[0]
    assert tokens.shape == (2, 3, 3) and motion.shape == (2, 3, 3)
    for i, (lo, hi) in enumerate(m.action_tokenizer.slot_ranges):  # each slot from its own vocabulary
        assert ((tokens[..., i] >= lo) & (tokens[..., i] < hi)).all()
    torch.testing.assert_close(motion, m.action_tokenizer.decode(tokens))
    # a rollout conditions on the given motion's tokens and draws scene codes only
    cond = torch.randn(2, 4, 5, generator=g)
    outs = [m.rollout(context, cond, 2, sampling=s, generator=torch.Generator().manual_seed(7), use_cache=c)
            for c in (True, False)]
    assert torch.equal(outs[0], outs[1]) and outs[0].shape == (2, 2, 2, 2) and int(outs[0].max()) < 16


def test_planning_greedy_action_is_the_argmax_of_its_slot(make_model):
    m = _model(make_model).eval()
    context = torch.tensor([[[[1, 2]], [[3, 4]]]])
    past = torch.tensor([[[4.0, 0.0, 0.0]]])
    tokens, _ = m.plan(context, past, 1)
    ids = m.sequence_ids(context, torch.cat([m.action_tokenizer.encode(past), torch.zeros(1, 1, 3).long()], 1))[:, :-3]
    for i, (lo, hi) in enumerate(m.action_tokenizer.slot_ranges):
        logits = m.forward_logits(m.embed_ids(ids), 2)[0, -1]
        assert int(tokens[0, 0, i]) == lo + int(logits[lo:hi].argmax())
        ids = torch.cat([ids, tokens[:, 0, i : i + 1]], 1)


def test_bad_options_and_inputs(make_model):
    with pytest.raises(ValueError, match="model.actions must be"):
        _model(make_model, "bins")
    with pytest.raises(ValueError, match="condition='action_motion'"):
        _model(make_model, condition="action")
    with pytest.raises(ValueError, match="warp_prior"):
        _model(make_model, warp_prior=True)
    cond_model = make_model("gpt", token_shape=[1, 2])
    with pytest.raises(ValueError, match="cannot|never predicts"):
        cond_model.plan(torch.zeros(1, 2, 1, 2).long(), torch.zeros(1, 1, 3), 2)
    m = _model(make_model)
    with pytest.raises(ValueError, match="max_frames"):
        m.plan(torch.zeros(1, 2, 1, 2).long(), torch.zeros(1, 1, 3), 6)
    with pytest.raises(ValueError, match="past_motion"):
        m.plan(torch.zeros(1, 2, 1, 2).long(), torch.zeros(1, 2, 3), 2)


def test_plan_with_frames_returns_the_frames_its_actions_lead_to(make_model):
    from drivewm.dynamics.sampling import SamplingConfig

    m = _model(make_model, token_shape=[2, 2]).eval()
    g = torch.Generator().manual_seed(4)
    context = torch.randint(0, 16, (2, 2, 2, 2), generator=g)
    past = torch.tensor([[[3.0, 0.1, 0.02]], [[5.0, -0.2, -0.05]]])
    s = SamplingConfig(temperature=1.0)
    plain = m.plan(context, past, 3, sampling=s, generator=torch.Generator().manual_seed(5))
    runs = [m.plan(context, past, 3, sampling=s, generator=torch.Generator().manual_seed(5), use_cache=c, frames=True)
            for c in (True, False)]
    assert torch.equal(runs[0][0], plain[0])  # the frame after the last action draws only after it
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1]))
    frames = runs[0][2]
    assert frames.shape == (2, 3, 2, 2) and int(frames.max()) < 16
    # the imagined frames are the stream the actions were predicted from: re-feeding them gives the same actions
    acts = torch.cat([m.action_tokenizer.encode(past), runs[0][0], runs[0][0][:, -1:]], 1)  # the last frame's: unread
    ids = m.sequence_ids(torch.cat([context, frames], 1), acts)
    logits = m.forward_logits(m.embed_ids(ids), 5)
    per = 4 + 3
    for k in range(3):
        for i, (lo, hi) in enumerate(m.action_tokenizer.slot_ranges):
            p = (1 + k) * per + 4 + i - 1  # the position before action slot i of frame 1 + k
            assert torch.equal(logits[:, p, lo:hi].argmax(-1) + lo, runs[0][0][:, k, i])
    with pytest.raises(ValueError, match="max_frames"):
        m.plan(context, past, 5, frames=True)  # 2 + 5 frames > max_frames 6
    assert not hasattr(make_model("gpt"), "forecast_plan") and callable(m.forecast_plan)
