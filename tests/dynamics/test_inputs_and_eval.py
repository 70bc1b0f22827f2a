"""Bad input gets clear errors; a tokenizer checkpoint that does not match is refused; eval runs end to end."""

import json

import pytest
import torch

from drivewm.config import to_yaml
from drivewm.dynamics import SpatioTemporalWorldConfig, SpatioTemporalWorldModel
from drivewm.conditions import ego_conditions, relative_motion
from drivewm.train.checkpoint import write_checkpoint


def test_bad_rollout_inputs_are_named(make_model, tokens, cond):
    model = make_model("gpt").eval()
    with pytest.raises(ValueError, match=r"actions: expected \[B=2, T>=4, 5\]"):
        model.rollout(tokens[:, :3], cond[..., :2], 2)
    with pytest.raises(ValueError, match="need 5 per-frame conditions, got 4"):
        model.rollout(tokens[:, :3], cond[:, :4], 3)
    bad = tokens.clone()
    bad[0, 0, 0, 0] = model.vocab_size
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 16\)"):
        model.rollout(bad[:, :3], cond, 1)
    with pytest.raises(ValueError, match="token ids must be an integer tensor"):
        model.rollout(tokens[:, :3].float(), cond, 1)
    with pytest.raises(ValueError, match=r"expected token ids \[B, T, 4, 4\]"):
        model.loss({"tokens": tokens[..., :3], "action": cond[..., :2], "ego_pose": cond[..., :3]})
    with pytest.raises(KeyError, match="batch has no 'ego_pose'"):
        model.loss({"tokens": tokens, "action": cond[..., :2]})
    with pytest.raises(ValueError, match="model.train_pass must be one of auto, cut, whole, got 'both'"):
        make_model("maskgit", train_pass="both")


def test_relative_motion_known_answer():
    # Driving +1 m along a heading of 90 deg, then turning 0.1 rad: 1 m forward in the ego frame.
    pose = torch.tensor([[[0.0, 0.0, torch.pi / 2], [0.0, 1.0, torch.pi / 2 + 0.1]]])
    motion = relative_motion(pose)
    assert torch.allclose(motion[0, 0], torch.tensor([1.0, 0.0, 0.1]), atol=1e-6)
    assert torch.equal(motion[0, 1], torch.zeros(3))
    cond = ego_conditions({"action": torch.zeros(1, 2, 2), "ego_pose": pose}, "action_motion")
    assert cond.shape == (1, 2, 5) and torch.allclose(cond[0, 0, 2], torch.tensor(1.0 / 5.0))




def test_tokenizer_checkpoint_that_does_not_match_is_refused(tmp_path, tokenizer_run):
    from drivewm.errors import CheckpointError
    from drivewm.train.checkpoint import build_model_from_sources

    tok = tokenizer_run(tmp_path / "tok")
    assert tok.vocab_size == 64 and tuple(tok.token_shape) == (8, 8)
    common = dict(dim=16, depth=1, heads=2, dim_mult=[1], tokenizer_run=str(tmp_path / "tok"))
    with pytest.raises(ValueError, match=r"vocab_size=64, token_shape=\[8, 8\] but the world model is configured for vocab_size=512"):
        build_model_from_sources(SpatioTemporalWorldConfig(vocab_size=512, token_shape=[8, 8], **common))
    with pytest.raises(CheckpointError, match="no tokenizer run directory"):
        build_model_from_sources(SpatioTemporalWorldConfig(**{**common, "tokenizer_run": str(tmp_path / "none")}))
    with pytest.raises(ValueError, match="is not nested in model.tokenizer"):  # models never read a run themselves
        SpatioTemporalWorldModel(SpatioTemporalWorldConfig(vocab_size=64, token_shape=[8, 8], **common))
    cfg = SpatioTemporalWorldConfig(vocab_size=64, token_shape=[8, 8], **common)
    model = build_model_from_sources(cfg)
    assert cfg.tokenizer["name"] == "occ_vqvae" and cfg.tokenizer["grid"] == "micro"  # nested, so the run records it
    for k, v in tok.state_dict().items():
        assert torch.equal(model.tokenizer.state_dict()[k], v)
    assert not any(p.requires_grad for p in model.tokenizer.parameters())
    model.train()
    assert not model.tokenizer.training  # the frozen tokenizer never switches to training mode


def test_evaluate_forecast_end_to_end(tmp_path, tokenizer_run):
    from drivewm.train.config import load_run_config
    from drivewm.sim.generate import generate_store
    from drivewm.evaluation import evaluate_forecast
    from drivewm.report.forecast import write_forecast_table
    from drivewm.train.checkpoint import build_model_from_sources

    generate_store(tmp_path / "data", preset="micro", episodes=2, frames=12, seed=0)
    tokenizer_run(tmp_path / "tok")
    cfg = load_run_config(None, [
        "model.name=occworld", f"model.tokenizer_run={tmp_path / 'tok'}", "model.vocab_size=64",
        "model.token_shape=[8,8]", "model.dim=16", "model.depth=1", "model.heads=2", "model.dim_mult=[1,2]",
    ])
    model = build_model_from_sources(cfg.model)
    write_checkpoint(tmp_path / "wm", config_yaml=to_yaml(cfg), model_state=model.state_dict(), optim_state=None,
                     state={"step": 0})
    table = evaluate_forecast([tmp_path / "wm"], tmp_path / "data", past=5, horizon=6, max_windows=3)
    write_forecast_table(table, tmp_path / "out")
    res = table.results
    names = list(res)
    assert names[:4] == ["copy_last", "ego_warp_copy_last", "ego_warp_copy_last_cv", "ego_warp_copy_last_border"]
    assert names[4] == "constant_velocity_agents" and names[5].startswith("ceiling")
    assert names[6] == "tokenizer_recon (tok)" and names[7] == "occworld [attention] (wm)"
    for r in res.values():
        assert set(r["miou"]) == {"1s", "2s", "3s", "avg"}
        assert abs(r["miou"]["avg"] - sum(r["miou"][k] for k in ("1s", "2s", "3s")) / 3) < 1e-9
    doc = json.loads((tmp_path / "out" / "results" / "forecast.json").read_text())
    assert doc["rows"][0][0] == "copy_last" and [r[0] for r in doc["rows"]] == names
    assert (tmp_path / "out" / "results" / "forecast.png").stat().st_size > 0
    assert (tmp_path / "out" / "results" / "forecast.gif").stat().st_size > 0
