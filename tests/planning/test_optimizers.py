"""CEM and MPPI on costs with known minima; MPPI's weights against their formula; limits; determinism."""

import math

import numpy as np
import pytest
import torch

from drivewm.planning.config import ActionBounds, CEMConfig, MPPIConfig, PlanningError
from drivewm.planning.optimizers import CEM, MPPI, mppi_control_cost, mppi_weights

BOUNDS = ActionBounds(low=(-2.0, -1.0), high=(2.0, 1.0))
TARGET = torch.tensor([[0.7, -0.3], [1.2, 0.4], [-0.5, 0.1], [0.0, -0.8]])  # [H=4, A=2]


def quadratic(actions: torch.Tensor) -> torch.Tensor:
    return ((actions - TARGET) ** 2).sum(dim=(1, 2))


def test_cem_finds_quadratic_minimum():
    cem = CEM(CEMConfig(horizon=4, samples=200, elites=20, iterations=15, seed=1), BOUNDS)
    res = cem.optimize(quadratic)
    assert torch.allclose(res.actions, TARGET, atol=0.05), res.actions
    assert res.costs[-1] < res.costs[0]


def test_mppi_simplified_finds_quadratic_minimum():
    cfg = MPPIConfig(horizon=4, samples=300, iterations=30, temperature=0.05, noise_std=0.3, seed=1, form="simplified")
    res = MPPI(cfg, BOUNDS).optimize(quadratic)
    assert torch.allclose(res.actions, TARGET, atol=0.1), res.actions


def test_mppi_control_cost_known_answer():
    # Hand-computed: u = [[1, -2]], Sigma = diag(0.5^2, 2^2), lambda = 3:
    #   eps [0.5, 1]  -> 3 * (1 * 0.5 / 0.25 + -2 * 1 / 4)    = 3 * (2 - 0.5)  = 4.5
    #   eps [-1, 4]   -> 3 * (1 * -1 / 0.25 + -2 * 4 / 4)     = 3 * (-4 - 2)   = -18
    u = torch.tensor([[1.0, -2.0]])
    eps = torch.tensor([[[0.5, 1.0]], [[-1.0, 4.0]]])
    std = torch.tensor([[0.5, 2.0]])
    assert mppi_control_cost(u, eps, std, 3.0).tolist() == [4.5, -18.0]
    # Algorithm 2's fixed point on a quadratic cost |u - T|^2 is the mean of the optimal distribution
    # exp(-|v - T|^2 / lambda) N(v; 0, Sigma): T / (1 + lambda / (2 sigma^2)) per component, not T.
    lam, frac = 0.05, 0.3
    sigma = frac * torch.tensor([2.0, 1.0])  # noise_std times the half range of each action
    expected = TARGET / (1 + lam / (2 * sigma**2))
    cfg = MPPIConfig(horizon=4, samples=400, iterations=60, temperature=lam, noise_std=frac, seed=1)
    res = MPPI(cfg, BOUNDS).optimize(quadratic)
    assert torch.allclose(res.actions, expected, atol=0.04), (res.actions, expected)
    assert not torch.allclose(res.actions, TARGET, atol=0.04)


def test_minimum_outside_box_lands_on_the_boundary():
    far = torch.tensor([[5.0, -5.0], [5.0, 5.0], [-5.0, 5.0], [-5.0, -5.0]])

    def cost(a):
        return ((a - far) ** 2).sum(dim=(1, 2))

    for opt in (CEM(CEMConfig(horizon=4, samples=100, iterations=25), BOUNDS),
                MPPI(MPPIConfig(horizon=4, samples=100, iterations=10, temperature=0.5), BOUNDS)):
        res = opt.optimize(cost)
        low, high = BOUNDS.tensors()
        assert (res.actions >= low).all() and (res.actions <= high).all()
        expected = torch.clamp(far, low, high)
        assert torch.allclose(res.actions, expected, atol=0.15), (type(opt).__name__, res.actions)


def test_mppi_weights_match_formula():
    costs = torch.tensor([3.0, 1.0, 2.5, 10.0, 1.2], dtype=torch.float64)
    lam = 0.7
    w = mppi_weights(costs, lam)
    ref = np.exp(-(costs.numpy() - costs.numpy().min()) / lam)
    ref = ref / ref.sum()
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-12)
    # lambda -> 0 puts all weight on the best sample; lambda -> inf gives the plain average
    assert mppi_weights(costs, 1e-4).argmax() == 1 and math.isclose(float(mppi_weights(costs, 1e-4).max()), 1.0)
    np.testing.assert_allclose(mppi_weights(costs, 1e8).numpy(), np.full(5, 0.2), rtol=1e-6)


def test_same_seed_same_plan_different_seed_differs():
    def run(seed, cls, cfg):
        return cls(cfg(horizon=4, samples=32, iterations=3, seed=seed), BOUNDS).optimize(quadratic).actions

    for cls, cfg in ((CEM, CEMConfig), (MPPI, MPPIConfig)):
        assert torch.equal(run(3, cls, cfg), run(3, cls, cfg))
        assert not torch.equal(run(3, cls, cfg), run(4, cls, cfg))


def test_every_scored_sample_is_inside_the_limits():
    low, high = BOUNDS.tensors()
    seen = []

    def spy(a):
        seen.append(a.clone())
        return -a.abs().sum(dim=(1, 2))  # pushes towards the corners

    CEM(CEMConfig(horizon=4, samples=32, iterations=3, init_std=3.0), BOUNDS).optimize(spy)
    MPPI(MPPIConfig(horizon=4, samples=32, iterations=3, noise_std=3.0), BOUNDS).optimize(spy)
    allv = torch.cat(seen)
    assert (allv >= low).all() and (allv <= high).all()


def test_bad_bounds_and_costs_are_clear_errors():
    with pytest.raises(PlanningError, match="empty"):
        ActionBounds(low=(0.0, 1.0), high=(1.0, 1.0))
    with pytest.raises(PlanningError, match="non-empty"):
        ActionBounds(low=(), high=())
    cem = CEM(CEMConfig(horizon=4, samples=8, iterations=1), BOUNDS)
    with pytest.raises(PlanningError, match="one value per sample"):
        cem.optimize(lambda a: a.sum(dim=2))
    with pytest.raises(PlanningError, match="non-finite"):
        cem.optimize(lambda a: torch.full((a.shape[0],), float("nan")))
    with pytest.raises(PlanningError, match="temperature"):
        mppi_weights(torch.zeros(3), 0.0)


def _two_lanes(a: torch.Tensor) -> torch.Tensor:
    """An obstacle at 0 and a lane on either side at +-1: elites split between the lanes."""
    x = a[..., 0]
    return (5 * torch.exp(-(x / 0.3) ** 2) + 0.1 * (x.abs() - 1) ** 2).sum(1)


def test_cem_return_best_never_returns_the_unscored_mean_between_two_modes():
    bounds = ActionBounds(low=(-2.0,), high=(2.0,))
    cfg = dict(horizon=2, samples=32, elites=8, iterations=3, init_std=0.8, seed=1,
               unbiased_std=False, draw_per_step=False, include_mean=True, min_std=0.02)
    plain = CEM(CEMConfig(**cfg), bounds).optimize(_two_lanes)
    # V-JEPA 2-AC's rule returns the refitted mean: here it averages the two lanes into the obstacle,
    # while its reported cost is that of the best sample, which avoided it.
    assert float(_two_lanes(plain.actions[None])) > 1.0 > 0.01 > plain.cost
    best = CEM(CEMConfig(**cfg, return_best=True), bounds).optimize(_two_lanes)
    true_cost = float(_two_lanes(best.actions[None]))
    assert true_cost == pytest.approx(best.cost) and true_cost < 0.01
    assert best.samples_scored == plain.samples_scored + 1  # the final mean is scored once
    assert bool((best.actions >= -2.0).all() and (best.actions <= 2.0).all())


# --- V-JEPA 2-AC's CEM ------------------------------------------------------------------------------
def vjepa2_cem(
    context_frame,
    context_pose,
    goal_frame,
    world_model,
    rollout=1,
    cem_steps=100,
    momentum_mean=0.25,
    momentum_std=0.95,
    momentum_mean_gripper=0.15,
    momentum_std_gripper=0.15,
    samples=100,
    topk=10,
    verbose=False,
    maxnorm=0.05,
    axis={},
    objective=None,
    close_gripper=None,
):
    """`cem` of facebookresearch/vjepa2 notebooks/utils/mpc_utils.py (commit c2963a4), line by line; the
    logging call is left out and `torch.randn` takes the test's generator (theirs draws from the global one)."""
    context_frame = context_frame.repeat(samples, 1, 1, 1)  # Reshape to [S, 1, HW, D]
    goal_frame = goal_frame.repeat(samples, 1, 1, 1)  # Reshape to [S, 1, HW, D]
    context_pose = context_pose.repeat(samples, 1, 1)  # Reshape to [S, 1, 7]

    # Current estimate of the mean/std of distribution over action trajectories
    mean = torch.cat(
        [
            torch.zeros((rollout, 3), device=context_frame.device),
            torch.zeros((rollout, 1), device=context_frame.device),
        ],
        dim=-1,
    )

    std = torch.cat(
        [
            torch.ones((rollout, 3), device=context_frame.device) * maxnorm,
            torch.ones((rollout, 1), device=context_frame.device),
        ],
        dim=-1,
    )

    for ax in axis.keys():
        mean[:, ax] = axis[ax]

    def sample_action_traj():
        """Sample several action trajectories"""
        action_traj, frame_traj, pose_traj = None, context_frame, context_pose

        for h in range(rollout):

            # -- sample new action
            action_samples = torch.randn(samples, mean.size(1), device=mean.device, generator=GEN) * std[h] + mean[h]
            action_samples[:, :3] = torch.clip(action_samples[:, :3], min=-maxnorm, max=maxnorm)
            action_samples[:, -1:] = torch.clip(action_samples[:, -1:], min=-0.75, max=0.75)
            for ax in axis.keys():
                action_samples[:, ax] = axis[ax]
            action_samples = torch.cat(
                [
                    action_samples[:, :3],
                    torch.zeros((len(action_samples), 3), device=mean.device),
                    action_samples[:, -1:],
                ],
                dim=-1,
            )[:, None]
            if close_gripper is not None and h >= close_gripper:
                action_samples[:, :, -1] = 1.0

            action_traj = (
                torch.cat([action_traj, action_samples], dim=1) if action_traj is not None else action_samples
            )

            # -- compute next state
            next_frame, next_pose = world_model(frame_traj, action_traj, pose_traj)
            frame_traj = torch.cat([frame_traj, next_frame], dim=1)
            pose_traj = torch.cat([pose_traj, next_pose], dim=1)

        return action_traj, frame_traj

    def select_topk_action_traj(final_state, goal_state, actions):
        """Get the topk action trajectories that bring us closest to goal"""
        sims = objective(final_state.flatten(1), goal_state.flatten(1))
        indices = sims.topk(topk, largest=False).indices
        selected_actions = actions[indices]
        return selected_actions

    for step in range(cem_steps):
        action_traj, frame_traj = sample_action_traj()
        selected_actions = select_topk_action_traj(
            final_state=frame_traj[:, -1], goal_state=goal_frame, actions=action_traj
        )
        mean_selected_actions = selected_actions.mean(dim=0)
        std_selected_actions = selected_actions.std(dim=0)

        # -- Update new sampling mean and std based on the top-k samples
        mean = torch.cat(
            [
                mean_selected_actions[..., :3] * (1.0 - momentum_mean) + mean[..., :3] * momentum_mean,
                mean_selected_actions[..., -1:] * (1.0 - momentum_mean_gripper)
                + mean[..., -1:] * momentum_mean_gripper,
            ],
            dim=-1,
        )
        std = torch.cat(
            [
                std_selected_actions[..., :3] * (1.0 - momentum_std) + std[..., :3] * momentum_std,
                std_selected_actions[..., -1:] * (1.0 - momentum_std_gripper) + std[..., -1:] * momentum_std_gripper,
            ],
            dim=-1,
        )

    new_action = torch.cat(
        [
            mean[..., :3],
            torch.zeros((rollout, 3), device=mean.device),
            mean[..., -1:],  # theirs rounds the gripper's small values to 0 (round_small_elements)
        ],
        dim=-1,
    )[None, :]

    return new_action


GEN = torch.Generator()
MAXNORM = 0.05
CONTEXT = torch.tensor([0.01, -0.02, 0.03])
GOAL = torch.tensor([0.06, 0.04, -0.05])  # reachable in 2 steps of at most 0.05 per axis, not in 1


def toy_world_model(frame_traj, action_traj, pose_traj):
    """The next 'frame' [S, 1, HW=1, D=3] is the last one moved by the last action's xyz."""
    return frame_traj[:, -1:] + action_traj[:, -1:, None, :3], pose_traj[:, -1:]


def squared_error(a, b):
    return ((a - b) ** 2).sum(-1)


def toy_energy(actions: torch.Tensor) -> torch.Tensor:
    """drivewm's objective for the same toy: the same operations on [S, H, A] action sequences."""
    state = CONTEXT.expand(actions.shape[0], 3)[:, None, None, :]  # [S, 1, 1, 3]
    for h in range(actions.shape[1]):
        state = state + actions[:, h : h + 1, None, :3]
    return squared_error(state.flatten(1), GOAL.expand(actions.shape[0], 3))


def test_vjepa2ac_preset_cem_equals_their_cem_with_the_same_seed():
    from drivewm.planning.factory import load_plan_config

    cfg = load_plan_config("planning/vjepa2ac.yaml", ["cem.seed=7"])
    assert (cfg.cem.horizon, cfg.cem.samples, cfg.cem.elites, cfg.cem.iterations, cfg.cem.momentum) == (2, 400, 10, 10, 0.15)
    # their action: xyz in +-maxnorm and a gripper in +-0.75; the toy fixes the gripper (axis={3: 0}), so
    # drivewm's 4th component is a free dimension the energy ignores, drawn in the same place in the stream
    bounds = ActionBounds(low=(-MAXNORM,) * 3 + (-0.75,), high=(MAXNORM,) * 3 + (0.75,))
    cem = CEM(cfg.cem, bounds)
    ours = cem.optimize(toy_energy).actions  # [2, 4]
    GEN.manual_seed(7)
    theirs = vjepa2_cem(
        CONTEXT.view(1, 1, 1, 3), torch.zeros(1, 1, 7), GOAL.view(1, 1, 1, 3), toy_world_model,
        rollout=2, cem_steps=10, momentum_mean=0.15, momentum_std=0.15, samples=400, topk=10,
        maxnorm=MAXNORM, axis={3: 0.0}, objective=squared_error,
    )[0]  # [2, 7]
    assert torch.equal(ours[:, :3], theirs[:, :3]), (ours, theirs)
    # and the plan solves the toy: two steps that together reach the goal
    assert torch.allclose(CONTEXT + ours[:, :3].sum(0), GOAL, atol=2e-3)
    # drivewm's rules on the same seed give a different plan (the comparison is not vacuous)
    from dataclasses import replace

    drivewm_rules = replace(cfg.cem, unbiased_std=False, draw_per_step=False, include_mean=True, min_std=0.02)
    assert not torch.equal(CEM(drivewm_rules, bounds).optimize(toy_energy).actions[:, :3], theirs[:, :3])


def test_cem_warm_start_is_drivewm_only():
    calls = []

    class Spy(CEM):
        def optimize(self, objective, init=None):
            calls.append(init)
            return super().optimize(objective, init)

    from drivewm.planning.mpc import RecedingHorizonPlanner, Rollout

    class Still:
        action_dim, device = 2, torch.device("cpu")

        def observe(self, obs):
            pass

        def rollout(self, actions):
            s, h = actions.shape[:2]
            return Rollout(ego=torch.zeros(s, h, 3), speed=torch.zeros(s, h))

    def cost(rollout, actions, goal):
        return quadratic(torch.cat([actions, actions], 1))

    for warm in (False, True):
        calls.clear()
        planner = RecedingHorizonPlanner(Still(), Spy(CEMConfig(horizon=2, samples=16, iterations=2, warm_start=warm), BOUNDS), cost)
        planner.act(None)
        planner.act(None)
        assert calls[0] is None and (calls[1] is not None) == warm
