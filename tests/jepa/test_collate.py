"""I-JEPA masks built in the training loader (the engine's generic ``model.collate_fn`` hook) and exact resume."""

from __future__ import annotations

import torch

from drivewm.jepa.bev import JepaBEV, JepaBEVConfig
from drivewm.jepa.encoders import EncoderConfig
from drivewm.jepa.masks import MaskCollator, step_generator
from drivewm.train.config import TrainConfig
from drivewm.train.engine import Trainer, _collate_fn

FRAMES = 2


def windows(n: int = 12) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        occ = torch.full((FRAMES, 32, 32, 4), 17, dtype=torch.uint8)
        occ[..., 0] = 11
        x, y = torch.randint(0, 28, (2,), generator=g).tolist()
        occ[:, x:x + 4, y:y + 4, 1:3] = int(torch.randint(1, 11, (1,), generator=g))
        out.append({"occ": occ})
    return out


def jepa(**kw) -> JepaBEV:
    torch.manual_seed(0)
    enc = EncoderConfig(grid_shape=[32, 32, 4], patch=4, dim=16, depth=1, heads=2, class_dim=4)
    return JepaBEV(JepaBEVConfig(encoder=enc, predictor_width=16, predictor_depth=1, predictor_heads=2, diag_every=0, **kw))


def trainer(model, run_dir, steps: int) -> Trainer:
    cfg = TrainConfig(steps=steps, batch_size=2, lr=1e-3, warmup_steps=1, ckpt_every=2, log_every=1, progress=False,
                      device="cpu", eval_batches=1)
    return Trainer(model, windows(), cfg, run_dir, config_yaml="model:\n  name: jepa_bev\n")


def test_the_engine_draws_the_models_masks_in_the_loader(tmp_path):
    model = jepa()
    assert model.masker.min_keep == 10  # I-JEPA's collator default reaches training
    collate = _collate_fn(model, None, 7)
    assert isinstance(collate, MaskCollator)
    batch = collate(windows()[:3])
    want = model.masker(3 * FRAMES, model.cfg.encoder.token_grid, step_generator(model.cfg.seed, 7))  # one row per frame
    assert torch.equal(batch["mask_context"], want.context) and torch.equal(batch["mask_targets"], want.targets)
    assert batch["mask_context"].shape[1] > 10
    # the model gathers the collator's indices: the same loss as drawing the step's masks itself
    model.counter.set(7)
    torch.manual_seed(0)
    from_loader = model.loss(batch)["loss"]
    torch.manual_seed(0)
    own = model.loss({"occ": batch["occ"]})["loss"]
    assert torch.equal(from_loader, own)
    model.counter.set(8)
    torch.manual_seed(0)
    assert not torch.equal(model.loss({"occ": batch["occ"]})["loss"], from_loader)  # another step, other masks


class Killed(Exception):
    pass


def test_resume_with_loader_masks_matches_the_uninterrupted_run(tmp_path):
    full = jepa()
    trainer(full, tmp_path / "full", 4).fit()
    cut = jepa()
    step_end = cut.on_step_end

    def killed_after_the_checkpoint(step, total):
        step_end(step, total)
        if step + 1 == 3:  # the checkpoint of step 2 is written; step 3 is lost
            raise Killed

    cut.on_step_end = killed_after_the_checkpoint
    try:
        trainer(cut, tmp_path / "cut", 4).fit()
    except Killed:
        pass
    resumed = jepa()
    trainer(resumed, tmp_path / "cut", 4).fit(resume=True)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(cut.encoder.stem.proj.weight, full.encoder.stem.proj.weight)


def test_tubes_keep_their_masks_in_the_model():
    assert jepa(masking="tubes").collate_fn(0) is None


def test_loader_workers_draw_the_masks_of_their_batch_numbers():
    model = jepa()
    data = windows(8)

    def masks(workers: int) -> list[torch.Tensor]:
        loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=workers, collate_fn=model.collate_fn(3))
        return [b["mask_targets"] for b in loader]

    alone, shared = masks(0), masks(2)
    assert len(alone) == 4 and all(torch.equal(a, b) for a, b in zip(alone, shared))
    assert not torch.equal(alone[0], alone[1])  # batches 3 and 4 differ
