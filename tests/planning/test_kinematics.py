"""The batched torch bicycle equals the simulator's own step, including stops and the speed cap."""

import numpy as np
import torch

from drivewm.geometry import to_frame
from drivewm.planning.kinematics import rollout_bicycle
from drivewm.sim.ego import EgoState, bicycle_step


def test_batched_bicycle_matches_the_simulator():
    rng = np.random.default_rng(0)
    s, h, dt, vmax = 16, 6, 0.5, 12.0
    actions = np.stack([rng.uniform(-8, 4, (s, h)), rng.uniform(-0.6, 0.6, (s, h))], -1)
    actions[0, :, 1] = 0.0  # a straight line
    actions[1, :, 0] = -8.0  # a full stop
    actions[2, :, 0] = 4.0  # up to the speed cap
    start = np.array([3.0, -2.0, 0.4, 9.0])
    poses, speeds = rollout_bicycle(torch.tensor(start, dtype=torch.float64), torch.tensor(actions), dt, vmax)
    for i in range(s):
        st = EgoState(*start)
        for k in range(h):
            st = bicycle_step(st, actions[i, k, 0], actions[i, k, 1], dt, vmax)
            np.testing.assert_allclose(poses[i, k].numpy(), [st.x, st.y, st.yaw], atol=1e-9)
            np.testing.assert_allclose(speeds[i, k].item(), st.v, atol=1e-9)
    assert speeds[1, -1] == 0 and speeds[2, -1] == vmax


def test_to_frame_inverts_the_pose():
    origin = torch.tensor([2.0, 1.0, np.pi / 2])
    p = torch.tensor([[2.0, 4.0, np.pi / 2]])  # 3 m ahead of the origin, same heading
    torch.testing.assert_close(to_frame(p, origin), torch.tensor([[3.0, 0.0, 0.0]]), atol=1e-6, rtol=0)
