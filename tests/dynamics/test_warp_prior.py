"""The ego-warped prior (model.warp_prior): each model reads the hint at the right place, sampling paths
agree with it, the hint is the warped decoded frame, and the token cache serves what encoding would give."""

import pytest
import torch

from drivewm.geometry import warp_occupancy
from drivewm.data.spec import grid_preset
from drivewm.dynamics import SamplingConfig
from drivewm.dynamics.conditions import ego_conditions, motion_from_conditions
from drivewm.train.checkpoint import build_model_from_sources

VOCAB = 16  # the conftest models' vocabulary

KINDS = ["gpt", "occworld", "maskgit"]


def _hinted(make_model, kind, **over):
    extra = {"cond_drop_prob": 0.0} if kind == "maskgit" else {}
    return make_model(kind, warp_prior=True, dim=48, **extra, **over)


def _oracle_batch(g: torch.Generator, n: int = 8, frames: int = 4) -> dict:
    """Independent random frames; next_prior[:, t] is frame t+1 itself, so only the hint predicts a frame."""
    tokens = torch.randint(0, VOCAB, (n, frames, 4, 4), generator=g)
    prior = torch.cat([tokens[:, 1:], torch.randint(0, VOCAB, (n, 1, 4, 4), generator=g)], 1)
    return {"tokens": tokens, "next_prior": prior, "action": torch.zeros(n, frames, 2), "ego_pose": torch.zeros(n, frames, 3)}


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


@pytest.mark.parametrize("kind", KINDS)
def test_each_model_learns_to_read_the_hint_of_the_frame_it_predicts(make_model, kind):
    """Fresh random frames every step: nothing can be memorised, and frames are independent, so predicting
    them needs the hint; a hint wired to the wrong frame or token would leave accuracy at chance (1/16)."""
    model = _hinted(make_model, kind)
    g = torch.Generator().manual_seed(0)
    _train(model, lambda: _oracle_batch(g), 150)
    with torch.no_grad():
        out = model.loss(_oracle_batch(g))
    acc = out["last_frame_acc"] if kind != "maskgit" else out["token_acc"]  # GPT frame 0 has no hint
    assert float(acc) > 0.9


def _fixed_hint(tokens: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in for decode -> warp -> encode (these models have no tokenizer)."""
    return (tokens * 3 + 1) % VOCAB


@pytest.mark.parametrize("sampling", [SamplingConfig(temperature=1.0), SamplingConfig(temperature=0.8, top_k=5)])
def test_gpt_cached_sampling_equals_uncached_with_the_hint(make_model, tokens, cond, sampling):
    model = _hinted(make_model, "gpt").eval()
    model.next_prior = _fixed_hint
    outs = [model.rollout(tokens[:, :3], cond, 2, sampling=sampling, generator=torch.Generator().manual_seed(3),
                          use_cache=c) for c in (True, False)]
    assert torch.equal(outs[0], outs[1])


def test_maskgit_cached_decoding_equals_full_passes_with_the_hint(make_model, tokens, cond):
    model = _hinted(make_model, "maskgit").eval()
    model.next_prior = _fixed_hint
    outs = [model.rollout(tokens[:, :3], cond, 2, guidance=2.0, generator=torch.Generator().manual_seed(5),
                          use_cache=c) for c in (True, False)]
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("kind", KINDS)
def test_rollouts_pass_each_new_frame_to_the_next_hint(make_model, tokens, cond, kind):
    """The hints a rollout uses are the context's, then one per generated frame, each with its own motion."""
    model = _hinted(make_model, kind).eval()
    calls = []

    def recording(frames, c):
        calls.append((frames.clone(), c.clone()))
        return _fixed_hint(frames, c)

    model.next_prior = recording
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


def test_next_prior_is_the_decoded_frame_moved_by_the_known_motion(tmp_path, tokenizer_run):
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
    prior = model.next_prior(tokens, cond)
    occ = model.decode(tokens)
    warped = warp_occupancy(occ[:, 1], motion_from_conditions(cond)[:, 1:2], model.tokenizer.grid)
    assert torch.equal(prior[:, 1], model.encode(warped)[:, 0])
    # The last frame has no next frame in the window (zero motion): its hint is its own re-encoding.
    assert torch.equal(prior[:, 2], model.encode(occ[:, 2:3])[:, 0])
    with pytest.raises(ValueError, match="warp_prior needs condition='action_motion'"):
        SpatioTemporalWorldModel(SpatioTemporalWorldConfig(vocab_size=64, token_shape=[8, 8], dim=16, depth=1,
                                                           heads=2, dim_mult=[1], warp_prior=True, condition="action"))


def test_token_cache_serves_the_windows_encoding_would_give(tmp_path, tokenizer_run):
    from drivewm.data.config import DataConfig
    from drivewm.data.generate import generate_store
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
        prior = model.next_prior(tokens, ego_conditions(batch, "action_motion"))
        # Every frame's hint but the last (whose motion lies past the window) equals the on-the-fly one.
        assert torch.equal(item["next_prior"][:-1], prior[0, :-1])
    with torch.no_grad():  # the model trains on the cached items as on raw windows
        loss = model.loss({k: v[None] for k, v in cached[0].items()})["loss"]
    assert torch.isfinite(loss)


# --- hints anchored on the last observed frame (model.prior_max_age > 1) -----------------------------

AGES = 3


def _aged_oracle_batch(g: torch.Generator, n: int = 8, frames: int = 5) -> dict:
    """Independent random frames; the hint of frame t+1 made a frames back is that frame's tokens shifted by
    a (mod V), so reading a hint right needs its age as well as its code."""
    tokens = torch.randint(0, VOCAB, (n, frames, 4, 4), generator=g)
    nxt = torch.cat([tokens[:, 1:], torch.randint(0, VOCAB, (n, 1, 4, 4), generator=g)], 1)
    prior = torch.stack([(nxt + a) % VOCAB for a in range(1, AGES + 1)], 2)  # [n, T, A, 4, 4]
    return {"tokens": tokens, "next_prior": prior, "action": torch.zeros(n, frames, 2), "ego_pose": torch.zeros(n, frames, 3)}


@pytest.mark.parametrize("kind", KINDS)
def test_each_model_reads_the_age_of_an_anchored_hint(make_model, kind):
    """Training draws anchors, so most windows mix hints of ages 1..3; the code alone is right for one age
    in three at best, so accuracy above 0.9 needs the age embedding wired to the hint it belongs to."""
    model = _hinted(make_model, kind, prior_max_age=AGES)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    _train(model, lambda: _aged_oracle_batch(g), 200)
    with torch.no_grad():
        accs = [model.loss(_aged_oracle_batch(g))["last_frame_acc" if kind != "maskgit" else "token_acc"]
                for _ in range(4)]
    assert float(sum(accs) / len(accs)) > 0.9


def test_window_prior_anchors_each_window_once(make_model):
    """Frames up to c + 1 get age-1 hints (frame c + 1's is made from the anchor c itself), frame j > c the
    hint made min(j - c, A) frames back, and every anchor (c = T - 1: all age 1) occurs."""
    model = _hinted(make_model, "occworld", prior_max_age=AGES)
    n, t, v1 = 256, 5, VOCAB + 1
    batch = _aged_oracle_batch(torch.Generator().manual_seed(1), n=n, frames=t)
    torch.manual_seed(0)
    ids = model.window_prior(batch, batch["tokens"], torch.zeros(n, t, 5))
    age, code = ids // v1 + 1, ids % v1
    assert (age == age[..., :1, :1]).all()  # one age per frame
    age = age[:, :, 0, 0]  # [n, T]
    assert torch.equal(code, batch["next_prior"].gather(2, (age - 1)[:, :, None, None, None].expand(-1, -1, 1, 4, 4))[:, :, 0])
    anchors = set()
    for row in age.tolist():
        c = row.index(2) - 1 if 2 in row else t - 1  # frame c + 2 is the first two frames from its hint
        assert row == [1 if j <= c else min(j - c, AGES) for j in range(1, t + 1)]
        anchors.add(c)
    assert anchors == set(range(t))


@pytest.mark.parametrize("kind", KINDS)
def test_rollouts_anchor_hints_on_the_last_observed_frame(make_model, tokens, cond, kind):
    """Context hints chain (age 1); forecast frame k's hint is the last observed frame moved by the summed
    motion of k steps while k <= A, then the generated frame A back."""
    from drivewm.geometry import se2_compose

    model = _hinted(make_model, kind, prior_max_age=2).eval()
    calls = []

    def recording(frames, poses):
        calls.append((frames.clone(), poses.clone()))
        return _fixed_hint(frames, None)[:, :, None].expand(-1, -1, poses.shape[2], -1, -1)

    model.warp_hints = recording
    out = model.rollout(tokens[:, :2], cond, 3, generator=torch.Generator().manual_seed(0))
    motion = motion_from_conditions(cond.double())
    # Context: frames 0, 1 each by one step. Frame 3 (k = 2): from frame 1, two steps. Frame 4 (k = 3): age
    # capped at 2, so from generated frame 2.
    assert [f.shape[1] for f, _ in calls] == [2, 1, 1]
    assert torch.equal(calls[0][0], tokens[:, :2]) and torch.allclose(calls[0][1][:, :, 0].double(), motion[:, :2])
    assert torch.equal(calls[1][0], tokens[:, 1:2])
    assert torch.allclose(calls[1][1][:, 0, 0].double(), se2_compose(motion[:, 1], motion[:, 2]))
    assert torch.equal(calls[2][0], out[:, 0:1])
    assert torch.allclose(calls[2][1][:, 0, 0].double(), se2_compose(motion[:, 2], motion[:, 3]))


def test_aged_priors_warp_each_source_by_the_summed_motion(tmp_path, tokenizer_run):
    from drivewm.dynamics import SpatioTemporalWorldConfig, SpatioTemporalWorldModel

    tokenizer_run(tmp_path / "tok")
    model = build_model_from_sources(SpatioTemporalWorldConfig(
        vocab_size=64, token_shape=[8, 8], dim=16, depth=1, heads=2, dim_mult=[1], warp_prior=True,
        prior_max_age=3, tokenizer_run=str(tmp_path / "tok")))
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 64, (2, 5, 8, 8), generator=g)
    pose = torch.zeros(2, 5, 3)
    pose[:, :, 0] = torch.arange(5) * 1.6
    pose[:, :, 2] = torch.arange(5) * 0.1  # turning: summed motions are not plain sums
    cond = ego_conditions({"action": torch.zeros(2, 5, 2), "ego_pose": pose}, "action_motion")
    aged = model.aged_priors(tokens, cond, chunk=2)  # chunks cut the sources
    assert torch.equal(aged[:, :, 0], model.next_prior(tokens, cond))
    # Entry [t=3, age 3] is frame 4 made from frame 1: frame 1 decoded, moved by frame 4's pose in frame 1.
    yaw = 0.1
    d = pose[0, 4] - pose[0, 1]
    rel = torch.tensor([[[d[0] * torch.cos(torch.tensor(yaw)) + d[1] * torch.sin(torch.tensor(yaw)),
                          -d[0] * torch.sin(torch.tensor(yaw)) + d[1] * torch.cos(torch.tensor(yaw)), 0.3]]]).repeat(2, 1, 1)
    ref = model.encode(warp_occupancy(model.decode(tokens[:, 1:2])[:, 0], rel, model.tokenizer.grid))[:, 0]
    assert torch.equal(aged[:, 3, 2], ref)
    assert (aged[:, 1, 2] == 64).all() and (aged[:, 0, 1:] == 64).all()  # sources before the window: none


def test_hint_embedding_keeps_old_runs_loadable():
    """Without ages the table is a plain nn.Embedding's (same key, same lookup), so runs from before load."""
    from drivewm.dynamics.base import HintEmbedding

    plain, aged = HintEmbedding(16, 8), HintEmbedding(16, 8, max_age=3)
    assert list(plain.state_dict()) == ["weight"] and sorted(aged.state_dict()) == ["age.weight", "weight"]
    ids = torch.tensor([[0, 16, 17 + 5, 2 * 17 + 16]])
    ref = aged.weight[torch.tensor([0, 16, 5, 16])] + aged.age.weight[torch.tensor([0, 0, 1, 2])]
    assert torch.allclose(aged(ids)[0], ref)


def test_token_cache_serves_hints_by_age(tmp_path, tokenizer_run):
    from drivewm.data.config import DataConfig
    from drivewm.data.generate import generate_store
    from drivewm.data.windows import WindowDataset
    from drivewm.dynamics import SpatioTemporalWorldConfig, SpatioTemporalWorldModel
    from drivewm.dynamics.token_cache import TokenizedWindows

    generate_store(tmp_path / "data", preset="micro", episodes=1, frames=12, seed=0)
    tokenizer_run(tmp_path / "tok")
    model = build_model_from_sources(SpatioTemporalWorldConfig(
        vocab_size=64, token_shape=[8, 8], dim=16, depth=1, heads=2, dim_mult=[1], warp_prior=True,
        prior_max_age=3, tokenizer_run=str(tmp_path / "tok")))
    windows = WindowDataset(DataConfig(path=str(tmp_path / "data"), past=3, future=2, val_fraction=0.0), "train")
    cached = TokenizedWindows(model, windows, chunk=4, progress=False)
    for index in (0, 4):
        raw, item = windows[index], cached[index]
        batch = {k: v[None] for k, v in raw.items()}
        aged = model.aged_priors(model.encode_batch(batch), ego_conditions(batch, "action_motion"))[0]
        assert item["next_prior"].shape == (5, 3, 8, 8)
        # Hints whose source and motions lie inside the window match; the cache also has those from before it.
        for a in range(1, 4):
            assert torch.equal(item["next_prior"][a - 1 : -1, a - 1], aged[a - 1 : -1, a - 1])
        assert index == 0 or (item["next_prior"][0, 1:] != 64).all()
    model.train()
    loss = model.loss({k: v[None] for k, v in cached[4].items()})["loss"]
    assert torch.isfinite(loss)


def test_border_hints_extend_the_edge_into_the_unseen_area(tmp_path, tokenizer_run):
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
    assert torch.equal(model.next_prior(tokens, cond)[:, 0], model.encode(warped)[:, 0])
    with pytest.raises(ValueError, match="prior_outside must be 'free' or 'border'"):
        build_model_from_sources(SpatioTemporalWorldConfig(prior_outside="edge", **kw))
