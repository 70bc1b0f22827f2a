"""Both backbones behind one interface: step form == parallel form, causality, gradients reach every parameter."""

from __future__ import annotations

import pytest
import torch

from drivewm.backbones import BackboneConfig, SSMBackbone, build_backbone


def _model(kind, **kw):
    torch.manual_seed(0)
    cfg = BackboneConfig(kind=kind, dim=32, depth=2, heads=4, d_state=8, chunk=8, max_len=256, **kw)
    return build_backbone(cfg).eval()


@pytest.mark.parametrize("kind", ["attention", "ssm"])
def test_token_by_token_step_equals_parallel_form(kind):
    model = _model(kind)
    x = torch.randn(2, 21, 32)  # 21: not a multiple of the scan chunk
    ref = model(x)
    state = model.init_state(2)
    outs = []
    for t in range(21):
        out, state = model.step(x[:, t : t + 1], state)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 1), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["attention", "ssm"])
def test_prefill_is_the_causal_pass_and_its_state_continues_token_by_token(kind):
    """A token-causal prompt (frame-wise positions, as the GPT world model's) in one pass: its outputs are
    forward's, and stepping on from its state gives forward's outputs for the later tokens."""
    model = _model(kind)
    x = torch.randn(2, 12, 32)
    positions = torch.arange(12) // 4  # every token of frame t at position t
    ref = model(x, positions=positions)
    out, state = model.prefill(x[:, :9], positions=positions[:9])
    if kind == "attention":  # the very ops of the causal forward pass
        assert torch.equal(out, model(x[:, :9], positions=positions[:9]))
    torch.testing.assert_close(out, ref[:, :9], atol=1e-5, rtol=1e-5)
    outs = []
    for t in range(9, 12):
        step, state = model.step(x[:, t : t + 1], state, positions=positions[t : t + 1])
        outs.append(step)
    torch.testing.assert_close(torch.cat(outs, 1), ref[:, 9:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("piece", [2, 5, 13])
def test_ssm_pieces_continue_the_state(piece):
    model = _model("ssm")
    x = torch.randn(1, 26, 32)
    ref = model(x)
    state = model.init_state(1)
    outs = []
    for t in range(0, 26, piece):
        out, state = model.step(x[:, t : t + piece], state)
        outs.append(out)
    assert state.length == 26
    torch.testing.assert_close(torch.cat(outs, 1), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["attention", "ssm"])
def test_perturbing_a_later_token_never_changes_earlier_outputs(kind):
    model = _model(kind)
    x = torch.randn(1, 20, 32)
    base = model(x)
    for k in (0, 9, 19):
        x2 = x.clone()
        x2[0, k] += 1.0
        d = (model(x2) - base).abs().amax(-1)[0]
        assert torch.all(d[:k] == 0) and torch.all(d[k:] > 0)


def test_ssm_ignores_positions_and_is_strictly_causal_inside_blocks():
    model = _model("ssm")
    x = torch.randn(1, 12, 32)
    base = model(x)
    assert torch.equal(model(x, block_size=4), base)
    assert torch.equal(model(x, positions=torch.arange(12) // 4), base)


@pytest.mark.parametrize("kind", ["attention", "ssm"])
def test_every_parameter_gets_a_finite_gradient(kind):
    model = _model(kind).train()
    x = torch.randn(2, 19, 32, requires_grad=True)
    model(x).pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_ssm_backbone_gradcheck_float64():
    torch.manual_seed(0)
    cfg = BackboneConfig(kind="ssm", dim=4, depth=1, d_state=2, d_conv=2, expand=1, chunk=2)
    model = SSMBackbone(cfg).double()
    x = torch.randn(1, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: model(x), (x,), eps=1e-6, atol=1e-5)


def test_mamba_init_follows_the_paper():
    model = _model("ssm")
    mixer = model.mixers[0]
    A = -torch.exp(mixer.A_log)
    assert torch.allclose(A[0], -torch.arange(1, 9, dtype=torch.float32))  # S4D-real
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6
    assert mixer.dt_proj.in_features == 2  # dt_rank 'auto' = ceil(32 / 16)


def test_config_nests_in_a_model_config_and_one_override_swaps_the_backbone():
    from dataclasses import dataclass, field

    from drivewm.config import merge_into

    @dataclass(kw_only=True)
    class WorldConfig:
        name: str = "world"
        backbone: BackboneConfig = field(default_factory=BackboneConfig)

    cfg = merge_into(WorldConfig(), [("command line", ["backbone.kind=ssm", "backbone.dt_rank=8", "backbone.dim=32"])])
    model = build_backbone(cfg.backbone)
    assert isinstance(model, SSMBackbone) and model.mixers[0].dt_proj.in_features == 8
    with pytest.raises(ValueError, match="kind"):
        merge_into(WorldConfig(), [("command line", ["backbone.kind=lstm"])])
