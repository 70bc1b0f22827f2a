"""The ego-warped prior (model.warp_prior): each model reads the prior at the right place, sampling paths
agree with it, the prior is the warped decoded frame, and the token cache serves what encoding would give."""

import pytest
import torch

from drivewm.geometry import warp_occupancy
from drivewm.data.spec import grid_preset
from drivewm.dynamics import SamplingConfig
from drivewm.dynamics.warp_prior import WarpPrior
from drivewm.conditions import ego_conditions, motion_from_conditions
from drivewm.train.checkpoint import build_model_from_sources

VOCAB = 16  # the conftest models' vocabulary

KINDS = ["gpt", "occworld", "maskgit"]


def _with_prior(make_model, kind, **over):
    extra = {"cond_drop_prob": 0.0} if kind == "maskgit" else {}
    return make_model(kind, warp_prior=True, dim=48, **extra, **over)


def _oracle_batch(g: torch.Generator, n: int = 8, frames: int = 4) -> dict:
    """Independent random frames; prior[:, t] is frame t+1 itself, so only the prior predicts a frame."""
    tokens = torch.randint(0, VOCAB, (n, frames, 4, 4), generator=g)
    prior = torch.cat([tokens[:, 1:], torch.randint(0, VOCAB, (n, 1, 4, 4), generator=g)], 1)
    return {"tokens": tokens, "prior": prior, "action": torch.zeros(n, frames, 2), "ego_pose": torch.zeros(n, frames, 3)}


def _train(model, batches, steps: int) -> None:
    """`steps` AdamW steps on fresh batches, then eval mode."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        out = model.loss(batches())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    model.eval()


@pytest.mark.parametrize("kind", [*KINDS, "gpt_copy"])
def test_each_model_learns_to_read_the_prior_of_the_frame_it_predicts(make_model, kind):
    """Fresh random frames every step: nothing can be memorised, and frames are independent, so predicting
    them needs the prior; a prior wired to the wrong frame or token would leave accuracy at chance (1/16)."""
    model = _with_prior(make_model, "gpt", copy_prior=True) if kind == "gpt_copy" else _with_prior(make_model, kind)
    g = torch.Generator().manual_seed(0)
    _train(model, lambda: _oracle_batch(g), 150)
    with torch.no_grad():
        out = model.loss(_oracle_batch(g))
    acc = out["last_frame_acc"] if kind != "maskgit" else out["token_acc"]  # GPT frame 0 has no prior
    assert float(acc) > 0.9


def _fixed_prior(tokens: torch.Tensor, cond: torch.Tensor) -> WarpPrior:
    """A deterministic stand-in for decode -> warp -> encode (these models have no tokenizer)."""
    return WarpPrior((tokens * 3 + 1) % VOCAB)


@pytest.mark.parametrize("sampling", [SamplingConfig(temperature=1.0), SamplingConfig(temperature=0.8, top_k=5)])
def test_gpt_cached_sampling_equals_uncached_with_the_prior(make_model, tokens, cond, sampling):
    model = _with_prior(make_model, "gpt").eval()
    model.make_prior = _fixed_prior
    outs = [model.rollout(tokens[:, :3], cond, 2, sampling=sampling, generator=torch.Generator().manual_seed(3),
                          use_cache=c) for c in (True, False)]
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("sampling", [SamplingConfig(temperature=0.0), SamplingConfig(temperature=0.8, top_k=5)])
def test_gpt_copy_prior_cached_sampling_equals_uncached(make_model, tokens, cond, sampling):
    model = _with_prior(make_model, "gpt", copy_prior=True).eval()
    model.make_prior = _fixed_prior
    outs = [model.rollout(tokens[:, :3], cond, 2, sampling=sampling, generator=torch.Generator().manual_seed(3),
                          use_cache=c) for c in (True, False)]
    assert torch.equal(outs[0], outs[1])


def test_gpt_copy_prior_is_the_pointer_generator_mixture(make_model):
    """p(k) = g softmax(head(h))_k + (1 - g) [k = prior id] with g = sigmoid(gate(h)), in float64 by hand; no
    prior (none_id): the head alone."""
    model = _with_prior(make_model, "gpt", copy_prior=True).double()
    g = torch.Generator().manual_seed(0)
    h = torch.randn(5, 48, generator=g, dtype=torch.float64)
    ids = torch.tensor([0, 3, VOCAB - 1, model.none_id, 7])
    out = model.output(h, ids)
    gate = torch.sigmoid(model.copy_gate(h))
    p = gate * model.head(h).softmax(-1)
    for i, k in enumerate(ids.tolist()):
        if k < VOCAB:
            p[i, k] += 1 - gate[i, 0]
        else:
            p[i] = model.head(h[i]).softmax(-1)
    assert torch.allclose(out.exp(), p, atol=1e-12) and torch.allclose(out.exp().sum(-1), torch.ones(5).double())


def test_gpt_copy_prior_with_a_closed_gate_copies_the_prior(make_model, tokens, cond):
    """g -> 0: every greedy token is its prior's id, whatever the head says; in training, each frame after the
    first is predicted exactly when the prior is that frame (the copy aligned with the targets)."""
    model = _with_prior(make_model, "gpt", copy_prior=True).eval()
    model.make_prior = _fixed_prior
    with torch.no_grad():
        model.copy_gate.bias.fill_(-30.0)
        assert float(model.loss(_oracle_batch(torch.Generator().manual_seed(1)))["last_frame_acc"]) == 1.0
    out = model.rollout(tokens[:, :3], cond, 2, sampling=SamplingConfig(temperature=0.0))
    first = _fixed_prior(tokens[:, 2:3], cond).ids[:, 0]
    assert torch.equal(out[:, 0], first) and torch.equal(out[:, 1], _fixed_prior(out[:, :1], cond).ids[:, 0])


def test_gpt_copy_prior_needs_the_prior(make_model):
    with pytest.raises(ValueError, match="model.copy_prior .* needs model.warp_prior=true"):
        make_model("gpt", copy_prior=True)


def test_maskgit_cached_decoding_equals_full_passes_with_the_prior(make_model, tokens, cond):
    model = _with_prior(make_model, "maskgit").eval()
    model.make_prior = _fixed_prior
    outs = [model.rollout(tokens[:, :3], cond, 2, guidance_weight=1.0, generator=torch.Generator().manual_seed(5),
                          use_cache=c) for c in (True, False)]
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("kind", KINDS)
def test_rollouts_pass_each_new_frame_to_the_next_prior(make_model, tokens, cond, kind):
    """The priors a rollout uses are the context's, then one per generated frame, each with its own motion."""
    model = _with_prior(make_model, kind).eval()
    calls = []

    def recording(frames, c):
        calls.append((frames.clone(), c.clone()))
        return _fixed_prior(frames, c)

    model.make_prior = recording
    out = model.rollout(tokens[:, :3], cond, 3, generator=torch.Generator().manual_seed(0))
    assert [f.shape[1] for f, _ in calls] == [3, 1, 1]
    assert torch.equal(calls[0][0], tokens[:, :3]) and torch.equal(calls[0][1], cond[:, :3])
    for k in (1, 2):  # generated frame k-1 with the transition out of it (cond index 3 + k - 1)
        assert torch.equal(calls[k][0], out[:, k - 1 : k]) and torch.equal(calls[k][1], cond[:, 2 + k : 3 + k])


def test_warp_occupancy_known_shift():
    grid = grid_preset("micro")  # 32 x 32 x 4, 1.6 m voxels
    occ = torch.full((1, 32, 32, 4), grid.free_id, dtype=torch.uint8)
    occ[0, 10, 12, 1] = 4
    # The target frame is 2 voxels ahead (x forward): content appears 2 voxels nearer.
    out = warp_occupancy(occ, torch.tensor([[[2 * 1.6, 0.0, 0.0]]]), grid)[0, 0]
    assert out[8, 12, 1] == 4 and int((out != grid.free_id).sum()) == 1
    assert (out[-2:] == grid.free_id).all()  # seen from outside the source grid: free
    # Border fill: the unseen rows repeat the source's edge row (x = 31), column by column.
    occ[0, 31, 5, 0] = 7
    border = warp_occupancy(occ, torch.tensor([[[2 * 1.6, 0.0, 0.0]]]), grid, outside="border")[0, 0]
    assert torch.equal(border[:30], warp_occupancy(occ, torch.tensor([[[2 * 1.6, 0.0, 0.0]]]), grid)[0, 0, :30])
    assert (border[29:, 5, 0] == 7).all() and int((border[30:] != grid.free_id).sum()) == 2
    with pytest.raises(ValueError, match="outside must be 'free' or 'border'"):
        warp_occupancy(occ, torch.zeros(1, 1, 3), grid, outside="edge")


def test_prior_is_the_decoded_frame_moved_by_the_known_motion(tmp_path, tokenizer_run):
    from drivewm.dynamics import SpatioTemporalWorldConfig, SpatioTemporalWorldModel

    tokenizer_run(tmp_path / "tok")
    model = build_model_from_sources(SpatioTemporalWorldConfig(
        vocab_size=64, token_shape=[8, 8], dim=16, depth=1, heads=2, dim_mult=[1], warp_prior=True,
        tokenizer_run=str(tmp_path / "tok")))
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 64, (2, 3, 8, 8), generator=g)
    pose = torch.tensor([0.0, 0.0, 0.0]).repeat(2, 3, 1)
    pose[:, 1, 0], pose[:, 2, 0] = 3.2, 6.4  # 2 voxels forward per frame
    cond = ego_conditions({"action": torch.zeros(2, 3, 2), "ego_pose": pose}, "action_motion")
    assert torch.allclose(motion_from_conditions(cond)[:, 0], torch.tensor([3.2, 0.0, 0.0]), atol=1e-5)
    prior = model.make_prior(tokens, cond).ids
    occ = model.decode(tokens)
    warped = warp_occupancy(occ[:, 1], motion_from_conditions(cond)[:, 1:2], model.tokenizer.grid)
    assert torch.equal(prior[:, 1], model.encode(warped)[:, 0])
    # The last frame has no next frame in the window (zero motion): its prior is its own re-encoding.
    assert torch.equal(prior[:, 2], model.encode(occ[:, 2:3])[:, 0])
    with pytest.raises(ValueError, match="warp_prior needs condition='action_motion'"):
        SpatioTemporalWorldModel(SpatioTemporalWorldConfig(vocab_size=64, token_shape=[8, 8], dim=16, depth=1,
                                                           heads=2, dim_mult=[1], warp_prior=True, condition="action"))


def test_token_cache_serves_the_windows_encoding_would_give(tmp_path, tokenizer_run):
    from drivewm.data.config import DataConfig
    from drivewm.sim.generate import generate_store
    from drivewm.data.windows import WindowDataset
    from drivewm.dynamics import MaskGITWorldConfig, MaskGITWorldModel
    from drivewm.dynamics.token_cache import TokenizedWindows

    generate_store(tmp_path / "data", preset="micro", episodes=2, frames=12, seed=0)
    tokenizer_run(tmp_path / "tok")
    model = build_model_from_sources(MaskGITWorldConfig(
        vocab_size=64, token_shape=[8, 8], dim=16, depth=1, heads=2, dim_mult=[1], warp_prior=True,
        tokenizer_run=str(tmp_path / "tok")))
    windows = WindowDataset(DataConfig(path=str(tmp_path / "data"), past=3, future=2, val_fraction=0.0), "train")
    cached = TokenizedWindows(model, windows, chunk=4, progress=False)  # chunks cut episodes mid-way
    assert len(cached) == len(windows) == 2 * (12 - 5 + 1)
    for index in (0, 6, 9):
        raw, item = windows[index], cached[index]
        assert "occ" not in item and torch.equal(item["action"], raw["action"])
        batch = {k: v[None] for k, v in raw.items()}
        tokens = model.encode_batch(batch)
        assert torch.equal(item["tokens"], tokens[0])
        prior = model.make_prior(tokens, ego_conditions(batch, "action_motion")).ids
        # Every frame's prior but the last (whose motion lies past the window) equals the on-the-fly one.
        assert torch.equal(item["prior"][:-1], prior[0, :-1])
    with torch.no_grad():  # the model trains on the cached items as on raw windows
        loss = model.loss({k: v[None] for k, v in cached[0].items()})["loss"]
    assert torch.isfinite(loss)
    # The engine reaches the cache through the model's own prepare_dataset, without knowing the model family.
    from drivewm.train.run import prepared_dataset
    from drivewm.train.toy import ToyConfig, ToyForecaster

    prepared = prepared_dataset(model, windows, "cpu", False)
    assert isinstance(prepared, TokenizedWindows) and torch.equal(prepared[6]["tokens"], cached[6]["tokens"])
    assert torch.equal(prepared[6]["prior"], cached[6]["prior"])
    assert prepared_dataset(ToyForecaster(ToyConfig()), windows, "cpu", False) is windows


def test_border_priors_extend_the_edge_into_the_unseen_area(tmp_path, tokenizer_run):
    from drivewm.dynamics import SpatioTemporalWorldConfig, SpatioTemporalWorldModel

    tokenizer_run(tmp_path / "tok")
    kw = dict(vocab_size=64, token_shape=[8, 8], dim=16, depth=1, heads=2, dim_mult=[1], warp_prior=True,
              tokenizer_run=str(tmp_path / "tok"))
    model = build_model_from_sources(SpatioTemporalWorldConfig(prior_outside="border", **kw))
    tokens = torch.randint(0, 64, (1, 2, 8, 8), generator=torch.Generator().manual_seed(0))
    pose = torch.zeros(1, 2, 3)
    pose[:, 1, 0] = 8.0  # 5 voxels forward: the front of frame 1 was never seen
    cond = ego_conditions({"action": torch.zeros(1, 2, 2), "ego_pose": pose}, "action_motion")
    warped = warp_occupancy(model.decode(tokens[:, :1])[:, 0], torch.tensor([[[8.0, 0.0, 0.0]]]),
                            model.tokenizer.grid, outside="border")
    assert torch.equal(model.make_prior(tokens, cond).ids[:, 0], model.encode(warped)[:, 0])
    with pytest.raises(ValueError, match="prior_outside must be 'free' or 'border'"):
        build_model_from_sources(SpatioTemporalWorldConfig(prior_outside="edge", **kw))
