"""OccWorld's pose branch: ego poses predicted beside the scene, never fed into it (arXiv 2311.16038).

Ported from wzzheng/OccWorld at commit 1ee7f77ecc4c984a4f7f6411d95c2e6e73806b6e:

* `PoseEncoder` (`model/transformer/pose_encoder.py`): (dx, dy) of one step plus the 3-way command one-hot
  (right, left, straight: `gt_mode`, VAD's rule, `drivewm.data.windows.driving_command`) -> a pose token;
  `num_layers` Linear layers with ReLU between them.
* `PoseDecoder` (`model/transformer/pose_decoder.py`): a pose feature -> one (dx, dy) per command mode
  [..., 3, 2]; the command picks the mode (`select_mode`, as `TransVQVAE.decode_pose`).
* `PoseStream`: the pose half of `PlanUAutoRegTransformer` (`model/transformer/PlanUtransformer.py`): pose
  queries = pose tokens + the temporal embedding of the next frame (`learnable_queries=False`), keys = pose
  tokens + their own; per layer a causal temporal attention of queries over the tokens, a cross attention
  of each frame's pose query to that frame's scene tokens, an FFN (GELU, 4x), each followed by a
  residual and a post-LayerNorm; `pose_out` Linear. Information flows from the scene to the pose, never
  back: the scene stream's tokens attend only to scene tokens. The official stream repeats these layers at
  every U-Net scale with an MLP between scales (`pose_en`, `pose_mid`, `pose_de`); here they run once, on
  the scene features of the finest scale (the network's output stage).
* `plan_reg_loss` (`loss/plan_reg_loss_lidar.py`, `PlanRegLossLidar.plan_reg_loss`, loss_type 'l2'): the
  L2 distance of the cumulative sums of the predicted and true steps, in the command's mode, summed over
  modes and frames and divided by batch and frames; weighted 0.1 against the token cross-entropy
  (`config/occworld.py`, `MultiLoss`).

Frame alignment. The official token of frame t carries the step t -> t+1 (VAD's `gt_ego_fut_trajs[0]`), so
at its last observed scene frame it already reads the next step. Here the token of frame t carries the step
that brought the ego there (t-1 -> t, frame 0: none, zeros) with the command of frame t-1, as the official
rollout pairs a step with the command that chose it (`decode_pose`); the output at frame t predicts the
step t -> t+1 in the mode of frame t's command. A forecast therefore reads only observed steps.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

NUM_MODES = 3
"""Command modes: right, left, straight (VAD's one-hot order)."""


class PoseEncoder(nn.Module):
    """[..., 2 + 3] (dx, dy, command one-hot) -> [..., out_channels]."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(num_layers - 1):
            layers += [nn.Linear(in_channels, out_channels), nn.ReLU(True)]
            in_channels = out_channels
        layers.append(nn.Linear(out_channels, out_channels))
        self.pose_encoder = nn.Sequential(*layers)  # the official attribute name, so state dicts map by name

    def forward(self, x: Tensor) -> Tensor:
        return self.pose_encoder(x)


class PoseDecoder(nn.Module):
    """[..., in_channels] -> one step (dx, dy) per mode [..., num_modes, 2]."""

    def __init__(self, in_channels: int, num_layers: int = 2, num_modes: int = NUM_MODES) -> None:
        super().__init__()
        self.num_modes = num_modes
        layers: list[nn.Module] = []
        for _ in range(num_layers - 1):
            layers += [nn.Linear(in_channels, in_channels), nn.ReLU(True)]
        layers.append(nn.Linear(in_channels, num_modes * 2))
        self.pose_decoder = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.pose_decoder(x).reshape(*x.shape[:-1], self.num_modes, 2)


class FFN(nn.Module):
    """OccWorld's `model/transformer/modules.py` FFN: Linear, GELU, Linear."""

    def __init__(self, dims: int, hidden_dims: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, dims)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PoseLayer(nn.Module):
    """One entry of the official `pose_attn_en` / `pose_attn_de` lists: temporal attention, norm, attention to the
    frame's scene tokens, norm, FFN, norm."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.temporal = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.temporal_norm = nn.LayerNorm(dim)
        self.spatial = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.spatial_norm = nn.LayerNorm(dim)
        self.ffn = FFN(dim, dim * 4)
        self.ffn_norm = nn.LayerNorm(dim)

    def forward(self, queries: Tensor, tokens: Tensor, scene: Tensor) -> Tensor:
        """queries, tokens [B, T, D], scene [B, T, N, D] -> queries [B, T, D]."""
        b, t, d = queries.shape
        causal = torch.ones(t, t, dtype=torch.bool, device=queries.device).triu(1)  # True: not attended
        queries = self.temporal_norm(queries + self.temporal(queries, tokens, tokens, need_weights=False,
                                                             attn_mask=causal)[0])
        q = queries.reshape(b * t, 1, d)
        kv = scene.reshape(b * t, -1, d)
        q = self.spatial_norm(q + self.spatial(q, kv, kv, need_weights=False)[0])
        q = self.ffn_norm(q + self.ffn(q))
        return q.reshape(b, t, d)


class PoseStream(nn.Module):
    """Pose tokens [B, T, D] and the scene features of the same frames [B, T, N, D] -> per-mode steps [B, T, 3, 2]."""

    def __init__(self, dim: int, heads: int, layers: int, max_frames: int, encoder_layers: int = 2,
                 decoder_layers: int = 2) -> None:
        super().__init__()
        self.pose_encoder = PoseEncoder(2 + NUM_MODES, dim, encoder_layers)
        self.pose_temporal_embeddings = nn.Embedding(max_frames + 1, dim)  # + 1: the queries sit one frame on
        self.layers = nn.ModuleList(PoseLayer(dim, heads) for _ in range(layers))
        self.pose_out = nn.Linear(dim, dim)
        self.pose_decoder = PoseDecoder(dim, decoder_layers)

    def forward(self, steps: Tensor, command: Tensor, scene: Tensor) -> Tensor:
        """steps [B, T, 2] (the step into each frame), command [B, T, 3] (the command of that step), scene
        [B, T, N, D] -> predicted next steps per mode [B, T, 3, 2]."""
        t = steps.shape[1]
        tokens = self.pose_encoder(torch.cat([steps, command], -1).float())  # [B, T, D]
        emb = self.pose_temporal_embeddings.weight
        queries = tokens + emb[1 : t + 1]
        tokens = tokens + emb[:t]
        for layer in self.layers:
            queries = layer(queries, tokens, scene)
        return self.pose_decoder(self.pose_out(queries))


def pose_inputs(steps: Tensor, command: Tensor) -> tuple[Tensor, Tensor]:
    """The pose tokens' inputs of a clip: steps [B, T, 2] (step t: t -> t+1) and commands [B, T, 3] -> the
    step into each frame and its command, [B, T, 2] and [B, T, 3] (frame 0: zeros, no step seen yet)."""
    zero_step, zero_cmd = torch.zeros_like(steps[:, :1]), torch.zeros_like(command[:, :1])
    return torch.cat([zero_step, steps[:, :-1]], 1), torch.cat([zero_cmd, command[:, :-1]], 1)


def select_mode(modes: Tensor, command: Tensor) -> Tensor:
    """Per-mode steps [..., 3, 2] and one-hot commands [..., 3] -> the commanded mode's step [..., 2]."""
    return (modes * command[..., None]).sum(-2)


def plan_reg_loss(rel_pose: Tensor, gt_rel_pose: Tensor, gt_mode: Tensor) -> Tensor:
    """OccWorld's `PlanRegLossLidar.plan_reg_loss` (loss_type 'l2', return_last False).

    rel_pose [B, F, M, 2] predicted steps per mode, gt_rel_pose [B, F, 2] true steps, gt_mode [B, F, M]
    one-hot commands -> sum over b, m, f of gt_mode * || cumsum_f(pred) - cumsum_f(gt) || / (B * F)."""
    bs, num_frames, num_modes, _ = rel_pose.shape
    pred = torch.cumsum(rel_pose.transpose(1, 2), -2)  # [B, M, F, 2]
    gt = torch.cumsum(gt_rel_pose[:, None].expand(bs, num_modes, num_frames, 2), -2)  # [B, M, F, 2]
    weight = gt_mode.transpose(1, 2).to(pred.dtype)  # [B, M, F]
    loss = torch.sqrt(((pred - gt) ** 2).sum(-1)) * weight
    return loss.sum() / bs / num_frames
