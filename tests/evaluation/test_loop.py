"""The one evaluation loop: what each forecaster sees, one seeded generator for the whole table, exact scores."""

from __future__ import annotations

import pytest
import torch

from drivewm.baselines import CopyLast
from drivewm.evaluation import OccupancyScoring, evaluate_forecasters
from drivewm.metrics import OccupancyForecastMetric

NUM_CLASSES, FREE = 18, 17
PAST, HORIZON = 2, 3


def _batches(n: int = 2) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{"occ": torch.randint(0, NUM_CLASSES, (2, PAST + HORIZON, 4, 4, 2), generator=g, dtype=torch.uint8),
             "action": torch.zeros(2, PAST + HORIZON, 2), "rel_pose": torch.zeros(2, PAST + HORIZON, 3)}
            for _ in range(n)]


def _scoring() -> OccupancyScoring:
    return OccupancyScoring(lambda: OccupancyForecastMetric(num_classes=NUM_CLASSES, free_id=FREE, report_steps=(1, 3)))


class Recorder:
    """Forecasts the last seen frame and records the frames it was given."""

    modality = "occ"

    def __init__(self, name: str, sees_future: bool = False) -> None:
        self.name, self.sees_future, self.seen = name, sees_future, []

    def forecast(self, context, horizon, *, generator=None):
        self.seen.append({k: v.shape[1] for k, v in context.items()})
        return context["occ"][:, -1:].expand(-1, horizon, -1, -1, -1)


class Sampler:
    """Draws random class ids from the table's generator."""

    modality, sees_future = "occ", False

    def __init__(self, name: str) -> None:
        self.name = name

    def forecast(self, context, horizon, *, generator=None):
        b, _, *grid = context["occ"].shape
        return torch.randint(0, NUM_CLASSES, (b, horizon, *grid), generator=generator)


def test_forecasters_see_the_past_and_the_bound_sees_the_future():
    ctx, bound = Recorder("ctx"), Recorder("bound", sees_future=True)
    ev = evaluate_forecasters([ctx, bound], _batches(), _scoring(), past=PAST, horizon=HORIZON)
    # The scene only up to now; the ego's actions and poses of every frame.
    assert ctx.seen[0] == {"occ": PAST, "action": PAST + HORIZON, "rel_pose": PAST + HORIZON}
    assert bound.seen[0]["occ"] == HORIZON
    assert list(ev.metrics) == ["ctx", "bound"] and ev.windows == 4
    # Repeating the last *true future* frame is exact at the last step; a copy of the past frame is not.
    assert ev.metrics["bound"].compute()["miou_per_step"][-1] == 100.0
    assert ev.metrics["ctx"].compute()["miou_per_step"][-1] < 100.0
    assert torch.equal(ev.example["truth"], _batches()[0]["occ"][0, PAST:].long())


def test_the_loop_scores_exactly_the_metric_on_the_forecasts():
    ev = evaluate_forecasters([CopyLast()], _batches(), _scoring(), past=PAST, horizon=HORIZON)
    ref = _scoring().metric()
    for b in _batches():
        ref.update(b["occ"][:, PAST - 1 : PAST].expand(-1, HORIZON, -1, -1, -1).long(), b["occ"][:, PAST:].long())
    assert ev.metrics["copy_last"].compute() == ref.compute()


def test_one_generator_for_the_table_in_row_order():
    first = evaluate_forecasters([Sampler("a"), Sampler("b")], _batches(), _scoring(), past=PAST, horizon=HORIZON, seed=4)
    again = evaluate_forecasters([Sampler("a"), Sampler("b")], _batches(), _scoring(), past=PAST, horizon=HORIZON, seed=4)
    assert first.metrics["a"].compute() == again.metrics["a"].compute()
    # "b" draws after "a" from the same generator: its forecasts are not "a"'s.
    assert not torch.equal(first.example["a"], first.example["b"])
    g = torch.Generator().manual_seed(4)
    assert torch.equal(first.example["a"], torch.randint(0, NUM_CLASSES, (2, HORIZON, 4, 4, 2), generator=g)[0])


def test_bad_tables_are_refused():
    with pytest.raises(ValueError, match="unique"):
        evaluate_forecasters([CopyLast(), CopyLast()], _batches(), _scoring(), past=PAST, horizon=HORIZON)
    with pytest.raises(ValueError, match="fewer than horizon"):
        evaluate_forecasters([CopyLast()], _batches(), _scoring(), past=PAST, horizon=HORIZON + 1)
    with pytest.raises(ValueError, match="no batches"):
        evaluate_forecasters([CopyLast()], [], _scoring(), past=PAST, horizon=HORIZON)
    with pytest.raises(KeyError, match="occ_mask"):
        evaluate_forecasters([CopyLast()], _batches(), OccupancyScoring(_scoring().make_metric, mask=True),
                             past=PAST, horizon=HORIZON)
