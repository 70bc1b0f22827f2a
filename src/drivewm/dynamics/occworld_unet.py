"""OccWorld's published network, `PlanUAutoRegTransformer`, ported line by line (module names kept, so an
official state dict loads by name).

Source: wzzheng/OccWorld `model/transformer/PlanUtransformer.py` and `modules.py` (FFN), commit
1ee7f77ecc4c984a4f7f6411d95c2e6e73806b6e, in the configuration of `config/occworld.py`: learnable_queries
False, conditional (offset 1), num_tokens 1, no ablation switches. Two streams run through a U-Net:

* scene: `tokens` (the frozen codebook vectors of each frame, [B, F, C, H, W]) go through conv U-Net blocks
  only (`UnetBlock`: LayerNorm over the spatial shape, two 3x3 convs, ReLU, residual); `queries` (the same
  vectors with the next frame's temporal embedding) go through the same blocks and, before each encoder and
  after each decoder stage's skip concatenation, through `temporal_attn_layers` layers of causal attention
  over time to the `tokens` stream (query frame i sees token frames <= i), each followed by an FFN, all
  post-norm. `conv_out` (3x3) gives the logits of frame i+1 at frame i. Scene tokens attend only to scene
  tokens: no pose enters the scene stream.
* pose: `pose_tokens` [B, F, C] and their queries; per scale `pose_attn_layers` layers of causal temporal
  attention, attention of each frame's pose query to that frame's scene queries, FFN; MLPs between scales
  (`pose_en`, `pose_mid`, `pose_de`, `pose_up`); `pose_out` gives the pose feature the `PoseDecoder` reads.

The only departure: the attention masks are cut to the clip's length (`attn_mask[:f, :f]`, as the official
`forward_autoreg_step`), so one network serves training clips and rollouts of any length <= num_frames.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from drivewm.dynamics.pose_branch import FFN


class UnetBlock(nn.Module):
    def __init__(self, shape: tuple, in_c: int, out_c: int, residual: bool = True) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(shape)
        self.conv1 = nn.Conv2d(in_c, out_c, 3, 1, 1)
        self.conv2 = nn.Conv2d(out_c, out_c, 3, 1, 1)
        self.act = nn.ReLU()
        self.residual = residual
        if residual:
            self.shortcut = nn.Identity() if in_c == out_c else nn.Conv2d(in_c, out_c, 1, 1, 0)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.act(self.conv1(self.ln(x))))
        if self.residual:
            out = out + self.shortcut(x)
        return self.act(out)


def _temporal_layers(c: int, n: int, heads: int) -> nn.ModuleList:
    return nn.ModuleList(nn.ModuleList([nn.MultiheadAttention(c, heads, batch_first=True), nn.LayerNorm(c),
                                        FFN(c, c * 4), nn.LayerNorm(c)]) for _ in range(n))


def _pose_layers(c: int, n: int, heads: int) -> nn.ModuleList:
    return nn.ModuleList(nn.ModuleList([nn.MultiheadAttention(c, heads, batch_first=True), nn.LayerNorm(c),
                                        nn.MultiheadAttention(c, heads, batch_first=True), nn.LayerNorm(c),
                                        FFN(c, c * 4), nn.LayerNorm(c)]) for _ in range(n))


def _mlp(a: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, b), nn.ReLU())


class PlanUAutoRegTransformer(nn.Module):
    """tokens [B, F, C, H, W] (codebook vectors), pose_tokens [B, F, C] -> logits [B, F, V, H, W] and pose
    features [B, F, pose_output_channel]; frame i's outputs predict frame i+1."""

    def __init__(self, *, num_frames: int, img_shape: tuple[int, int, int], tpe_dim: int, output_channel: int,
                 channels: tuple[int, ...], temporal_attn_layers: int = 1, pose_attn_layers: int = 1,
                 num_heads: int = 8, pose_output_channel: int | None = None) -> None:
        super().__init__()
        self.num_frames, self.offset = num_frames, 1
        self.temporal_embeddings = nn.Embedding(num_frames + self.offset, tpe_dim)
        self.pose_temporal_embeddings = nn.Embedding(num_frames + self.offset, tpe_dim)
        self.temporal_attentions_en, self.temporal_attentions_de = nn.ModuleList(), nn.ModuleList()
        self.encoders, self.decoders = nn.ModuleList(), nn.ModuleList()
        self.pose_attn_en, self.pose_en = nn.ModuleList(), nn.ModuleList()
        self.pose_attn_de, self.pose_de, self.pose_up = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.downsamples, self.upsamples = nn.ModuleList(), nn.ModuleList()
        c0, h, w = img_shape
        hs, ws = [h], [w]
        for _ in range(len(channels) - 1):
            hs.append(hs[-1] // 2)
            ws.append(ws[-1] // 2)
        pre_c = c0
        for channel, ch, cw in zip(channels[:-1], hs[:-1], ws[:-1]):
            self.temporal_attentions_en.append(_temporal_layers(pre_c, temporal_attn_layers, num_heads))
            self.encoders.append(nn.Sequential(UnetBlock((ch, cw), pre_c, channel), UnetBlock((ch, cw), channel, channel)))
            self.downsamples.append(nn.Conv2d(channel, channel, kernel_size=2, stride=2, padding=0))
            self.pose_en.append(_mlp(pre_c, channel))
            self.pose_attn_en.append(_pose_layers(pre_c, pose_attn_layers, num_heads))
            pre_c = channel
        channel = channels[-1]
        self.mid = nn.Sequential(UnetBlock((pre_c, hs[-1], ws[-1]), pre_c, channel),
                                 UnetBlock((channel, hs[-1], ws[-1]), channel, channel))
        self.pose_mid = _mlp(pre_c, channel)
        pre_c = channel
        for channel, ch, cw in zip(channels[-2::-1], hs[-2::-1], ws[-2::-1]):
            agg = channel * 2
            self.upsamples.append(nn.ConvTranspose2d(pre_c, channel, kernel_size=2, stride=2, padding=0))
            self.temporal_attentions_de.append(_temporal_layers(agg, temporal_attn_layers, num_heads))
            self.decoders.append(nn.Sequential(UnetBlock((agg, ch, cw), agg, channel),
                                               UnetBlock((channel, ch, cw), channel, channel)))
            self.pose_up.append(nn.Linear(pre_c, channel))
            self.pose_attn_de.append(_pose_layers(agg, pose_attn_layers, num_heads))
            self.pose_de.append(_mlp(agg, channel))
            pre_c = channel
        self.conv_out = nn.Conv2d(pre_c, output_channel, 3, 1, 1)
        self.pose_out = nn.Linear(pre_c, pose_output_channel if pose_output_channel is not None else output_channel)
        mask = torch.ones(num_frames, num_frames, dtype=torch.bool).triu(1)  # query frame i sees frames <= i
        self.register_buffer("attn_mask", mask, False)

    @staticmethod
    def _pose_attend(layers, pose_q: Tensor, pose_t: Tensor, queries: Tensor, mask: Tensor) -> Tensor:
        """pose queries [B, F, C] over pose tokens in time, then to the frame's scene queries [B*F, C, h, w]."""
        b, f, c = pose_q.shape
        scene = queries.flatten(2).transpose(1, 2)  # [B*F, h*w, C]
        for t_attn, t_norm, s_attn, s_norm, ffn, ffn_norm in layers:
            pose_q = t_norm(pose_q + t_attn(pose_q, pose_t, pose_t, need_weights=False, attn_mask=mask)[0])
            q = pose_q.reshape(b * f, 1, c)
            q = s_norm(q + s_attn(q, scene, scene, need_weights=False)[0])
            pose_q = ffn_norm(q + ffn(q)).reshape(b, f, c)
        return pose_q

    @staticmethod
    def _time_attend(layers, queries: Tensor, tokens: Tensor, b: int, f: int, mask: Tensor) -> Tensor:
        """Scene queries [B*F, C, h, w] attend in time to the tokens stream, per location."""
        _, c, h, w = queries.shape
        q = queries.reshape(b, f, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, f, c)
        k = tokens.reshape(b, f, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, f, c)
        for attn, norm, ffn, ffn_norm in layers:
            q = norm(q + attn(q, k, k, need_weights=False, attn_mask=mask)[0])
            q = ffn_norm(q + ffn(q))
        return q.reshape(b, h * w, f, c).permute(0, 2, 3, 1).reshape(b * f, c, h, w)

    def forward(self, tokens: Tensor, pose_tokens: Tensor) -> tuple[Tensor, Tensor]:
        b, f, c, h, w = tokens.shape
        if f > self.num_frames:
            raise ValueError(f"{f} frames: the network was built for at most num_frames={self.num_frames}")
        mask = self.attn_mask[:f, :f]
        emb, pose_emb = self.temporal_embeddings.weight, self.pose_temporal_embeddings.weight
        queries = (tokens + emb[None, self.offset : f + self.offset, :, None, None]).flatten(0, 1)  # [B*F, C, H, W]
        tokens = (tokens + emb[None, :f, :, None, None]).flatten(0, 1)
        pose_q = pose_tokens + pose_emb[None, self.offset : f + self.offset]
        pose_t = pose_tokens + pose_emb[None, :f]
        skips_q, skips_t, skips_pq, skips_pt = [], [], [], []
        for t_layers, encoder, down, p_layers, pose_en in zip(self.temporal_attentions_en, self.encoders,
                                                              self.downsamples, self.pose_attn_en, self.pose_en):
            pose_q = self._pose_attend(p_layers, pose_q, pose_t, queries, mask)
            pose_q, pose_t = pose_en(pose_q), pose_en(pose_t)
            skips_pq.append(pose_q)
            skips_pt.append(pose_t)
            queries = self._time_attend(t_layers, queries, tokens, b, f, mask)
            queries, tokens = encoder(queries), encoder(tokens)
            skips_q.append(queries)
            skips_t.append(tokens)
            queries, tokens = down(queries), down(tokens)
        queries, tokens = self.mid(queries), self.mid(tokens)
        pose_q, pose_t = self.pose_mid(pose_q), self.pose_mid(pose_t)
        for t_layers, decoder, up, sq, st, p_layers, pose_de, spq, spt, pose_up in zip(
                self.temporal_attentions_de, self.decoders, self.upsamples, skips_q[::-1], skips_t[::-1],
                self.pose_attn_de, self.pose_de, skips_pq[::-1], skips_pt[::-1], self.pose_up):
            queries, tokens = up(queries), up(tokens)
            queries = torch.cat([_pad_to(queries, sq), sq], 1)
            tokens = torch.cat([_pad_to(tokens, st), st], 1)
            queries = self._time_attend(t_layers, queries, tokens, b, f, mask)
            pose_q = torch.cat([pose_up(pose_q), spq], 2)
            pose_t = torch.cat([pose_up(pose_t), spt], 2)
            pose_q = self._pose_attend(p_layers, pose_q, pose_t, queries, mask)
            pose_q, pose_t = pose_de(pose_q), pose_de(pose_t)
            queries, tokens = decoder(queries), decoder(tokens)
        logits = self.conv_out(queries)
        return logits.reshape(b, f, *logits.shape[1:]), self.pose_out(pose_q)


def _pad_to(x: Tensor, skip: Tensor) -> Tensor:
    """The official padding of an upsampled map to its skip's size: the height difference pads the width and the
    width difference the height (as `nn.functional.pad(x, (px // 2, px - px // 2, py // 2, py - py // 2))` with px
    from dim 2), equal on the square grids OccWorld uses."""
    px, py = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
    return F.pad(x, (px // 2, px - px // 2, py // 2, py - py // 2))
