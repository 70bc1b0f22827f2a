"""``vjepa_camera``: a V-JEPA video encoder of camera clips, the offline feature extractor of ``fd_<tag>``.

The method is V-JEPA (Bardes et al., 2024, arXiv 2404.08471), as the official pretraining step
(facebookresearch/jepa ``app/vjepa/train.py``, commit 51c59d518fc63c08464af6de585f78ac0c7ed4d5,
config ``configs/pretrain/vitl16.yaml``): a clip of T frames becomes T / 2 x (H / p) x (W / p)
space-time tokens (tubelets of 2 frames x p x p pixels, one Conv over the stacked frames); two mask
groups per step, 8 spatial blocks at scale 0.15 and 2 at 0.7 (aspect 0.75-1.5), each repeated over
every tubelet (``drivewm.jepa.masks.vjepa_short_long``); the context encoder sees only the unmasked
tokens, a narrow predictor fills the masked ones (``drivewm.jepa.predictor.Predictor``); targets
are the EMA target encoder's embeddings of the full clip, layer-normed over the feature dimension
(``forward_target``); the loss is ``mean |z - h|`` (``loss_exp`` 1) averaged over the two groups
(``loss_fn``); EMA momentum linear 0.998 -> 1.0 (``ema``). Their ``reg_coeff`` is 0, so no
regulariser. What drivewm changes: the size (a 64-wide ViT of 4 blocks, not ViT-L); the optimizer is
the train engine's (AdamW, warm-up + cosine, weight decay 0.05, clip 1.0; theirs: decay 0.04 -> 0.4,
clip 10); the masks are drawn in ``loss`` from the (seed, step) generator, as ``jepa_bev``'s tubes, not
in the loader; and the input: the clip is read exactly as the Frechet protocol hands it to the
extractor (``FrechetProtocol.preprocess``: the first ``frames`` frames, resized, mapped to
``value_range``), so the encoder trains on the inputs it will measure.

The frozen extractor (``extractor()``) is the EMA target encoder, as V-JEPA evaluates its frozen
target encoder, with its tokens pooled into one vector per clip (drivewm's pooling for a Frechet
feature; V-JEPA's probes learn an attentive pooler instead): ``pool='tubelet'`` averages each
tubelet's tokens over space and concatenates the T / 2 averages in time order, [N, T, 3, H, W] ->
[N, T / 2 * D], so the feature keeps when things happen; ``pool='mean'`` averages all tokens -> [N, D].
On held-out simulator clips the tubelet pooling is what makes the distance weigh motion more than
per-frame noise (``benchmarks/bench_extractor.py``).
Exported to a file (``drivewm export extractor``), it is measured under its own protocol name,
``fd_<tag>_<frames>f_<H>x<W>_...``, never as FID or FVD.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from drivewm.jepa.encoders import EncoderConfig, PatchEncoder, gather_tokens, init_weights, spacetime_pos
from drivewm.jepa.masks import Masks, step_generator, vjepa_short_long
from drivewm.jepa.objectives import PRED_LOSSES, StepCounter, diagnostics, prediction_loss
from drivewm.jepa.predictor import Predictor
from drivewm.jepa.regularizers import ema_momentum, ema_update
from drivewm.metrics.video import RESIZE_RULES, FrechetProtocol
from drivewm.registry import register_model

POOLS = ("tubelet", "mean")


@dataclass(kw_only=True)
class VideoEncoderConfig:
    name: str = "vjepa_camera"
    """Registered model name."""
    tag: str = "vjepacam"
    """Extractor tag in the Frechet protocol's name (``fd_<tag>_...``): letters and digits."""
    image_size: list[int] = field(default_factory=lambda: [64, 128])
    """Frame height and width the encoder reads (store frames are resized to it by the protocol's rule)."""
    frames: int = 8
    """Frames per clip (the first ``frames`` of each window); a multiple of ``tubelet``."""
    resize: str = "bilinear"
    """The protocol's resize rule from the store's frames to ``image_size``."""
    value_range: list[float] = field(default_factory=lambda: [-1.0, 1.0])
    """Pixel range of the encoder's input (the protocol maps [0, 1] linearly onto it)."""
    patch: int = 8
    """Spatial patch of a token, in pixels."""
    tubelet: int = 2
    """Frames per token (V-JEPA: 2)."""
    dim: int = 64
    """Encoder width D (the extractor's features: D per tubelet)."""
    depth: int = 4
    """Encoder ViT blocks."""
    heads: int = 4
    """Encoder attention heads."""
    mlp_ratio: float = 4.0
    """Encoder MLP hidden width as a multiple of D."""
    predictor_width: int = 32
    """Predictor width (narrower than the encoder, as V-JEPA's 384 beside ViT-L's 1024)."""
    predictor_depth: int = 2
    """Predictor transformer blocks."""
    predictor_heads: int = 4
    """Predictor attention heads."""
    pred_loss: str = "l1"
    """Prediction loss: 'l1' (V-JEPA, loss_exp 1), 'smooth_l1' (I-JEPA) or 'cosine'."""
    ema_start: float = 0.998
    """EMA momentum of the target encoder at step 0 (V-JEPA: 0.998)."""
    ema_end: float = 1.0
    """EMA momentum at the last step (linear schedule)."""
    pool: str = "tubelet"
    """Extractor pooling: 'tubelet' (each tubelet's spatial mean, concatenated in time order: T / tubelet * D
    features) or 'mean' (all tokens: D features)."""
    diag_every: int = 10
    """Steps between RankMe / per-dimension-std logs of the target tokens (match train.log_every); 0 = never."""
    seed: int = 0
    """Seed of the mask generator (with the step: the same masks on every rank and after a resume)."""

    def __post_init__(self) -> None:
        if self.pred_loss not in PRED_LOSSES:
            raise ValueError(f"pred_loss {self.pred_loss!r} not in {PRED_LOSSES}")
        if self.tubelet < 1 or self.frames < 2 * self.tubelet or self.frames % self.tubelet:
            raise ValueError(f"frames {self.frames} must be a multiple of tubelet {self.tubelet} with >= 2 tubelets")
        if not 0.0 <= self.ema_start <= self.ema_end <= 1.0:
            raise ValueError(f"EMA momenta must satisfy 0 <= start <= end <= 1, got {self.ema_start}, {self.ema_end}")
        if self.pool not in POOLS:
            raise ValueError(f"pool {self.pool!r} not in {POOLS}")
        if self.resize not in RESIZE_RULES:
            raise ValueError(f"resize {self.resize!r} not in {RESIZE_RULES}")
        self.protocol(16)  # the tag, size and range make a valid protocol

    def protocol(self, samples: int) -> FrechetProtocol:
        """The Frechet protocol of this extractor for ``samples`` clips per side."""
        h, w = self.image_size
        return FrechetProtocol("fd", self.tag, size=(h, w), frames=self.frames, resize=self.resize,
                               value_range=(float(self.value_range[0]), float(self.value_range[1])), samples=samples)

    @property
    def encoder_config(self) -> EncoderConfig:
        h, w = self.image_size
        return EncoderConfig(modality="camera", grid_shape=[h, w, 3], patch=self.patch, dim=self.dim, depth=self.depth,
                             heads=self.heads, mlp_ratio=self.mlp_ratio, tubelet=self.tubelet)


def clip_tokens(encoder: PatchEncoder, clips: Tensor, pos: Tensor) -> Tensor:
    """Clips [B, T, C, H, W] in the encoder's value range -> tubelet tokens [B, T / k * N, D] plus positions
    ``pos`` [T / k * N, D]: the frames of a tubelet stacked on channels (frame-major), one patchifying conv."""
    b, t, c, h, w = clips.shape
    k = encoder.cfg.tubelet
    tubelets = clips.reshape(b * (t // k), k * c, h, w)
    tok = encoder.stem.proj(tubelets).flatten(2).transpose(1, 2)  # [B * T / k, N, D]
    return tok.reshape(b, -1, tok.shape[-1]) + pos


class ClipFeatures(nn.Module):
    """The frozen extractor: clips [N, T, C, H, W] in the protocol's value range -> pooled tokens
    [N, T / tubelet * D] ('tubelet': per-tubelet spatial means in time order) or [N, D] ('mean')."""

    def __init__(self, encoder: PatchEncoder, frames: int, pool: str) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(encoder).eval().requires_grad_(False)
        self.tubelets = frames // encoder.cfg.tubelet
        self.pool = pool
        self.register_buffer("pos", spacetime_pos(self.encoder.pos, self.tubelets).clone())

    @torch.no_grad()
    def forward(self, clips: Tensor) -> Tensor:
        tokens = self.encoder.run(clip_tokens(self.encoder, clips, self.pos))  # [N, T/k * hw, D]
        if self.pool == "mean":
            return tokens.mean(1)
        return tokens.reshape(tokens.shape[0], self.tubelets, -1, tokens.shape[-1]).mean(2).flatten(1)


class VideoJepa(nn.Module):
    """V-JEPA pretraining of a camera-clip encoder; ``extractor()`` is its frozen Frechet feature network."""

    def __init__(self, cfg: VideoEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        enc = cfg.encoder_config
        self.encoder = PatchEncoder(enc)
        self.predictor = Predictor(enc.dim, enc.token_grid, cfg.predictor_width, cfg.predictor_depth, cfg.predictor_heads)
        init_weights(self)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.counter = StepCounter()
        self.tubelets = cfg.frames // cfg.tubelet
        self.register_buffer("pos", spacetime_pos(self.encoder.pos, self.tubelets), persistent=False)

    def clips(self, camera: Tensor) -> Tensor:
        """uint8 windows [B, T, H, W, 3] -> the protocol's clips [B, frames, 3, H', W'] in ``value_range``."""
        if camera.dim() != 5 or camera.shape[-1] != 3:
            raise ValueError(f"batch['camera'] must be uint8 windows [B, T, H, W, 3], got shape {tuple(camera.shape)}")
        return self.cfg.protocol(16).preprocess(camera.permute(0, 1, 4, 2, 3))

    def extractor(self) -> ClipFeatures:
        """A frozen copy of the EMA target encoder with the config's pooling: [N, frames, 3, H, W] -> [N, F]."""
        return ClipFeatures(self.target_encoder, self.cfg.frames, self.cfg.pool)

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x = self.clips(batch["camera"])  # [B, T, 3, H, W]
        b, step = x.shape[0], self.counter.value
        with torch.no_grad():  # forward_target: the EMA encoder on the full clip, layer-normed
            h = self.target_encoder.run(clip_tokens(self.target_encoder, x, self.pos))  # [B, T/k * N, D]
            target = F.layer_norm(h, h.shape[-1:])
        tokens = clip_tokens(self.encoder, x, self.pos)
        losses = []
        for m in vjepa_short_long(b, self.encoder.cfg.token_grid, self.tubelets, step_generator(self.cfg.seed, step)):
            m = Masks(context=m.context.to(x.device), targets=m.targets.to(x.device))
            ctx = self.encoder.run(gather_tokens(tokens, m.context), m.context)  # [B, Nc, D]
            pred = self.predictor(ctx, m.context, m.targets, self.tubelets)  # [B, 1, Nt, D]
            k, nt = m.targets.shape[1:]
            tgt = gather_tokens(target, m.targets.flatten(1)).view(b, k, nt, -1)
            losses.append(prediction_loss(pred, tgt, self.cfg.pred_loss))
        loss = torch.stack(losses).mean()
        out = {"loss": loss, "pred_loss": loss.detach()}
        if self.cfg.diag_every and (step + 1) % self.cfg.diag_every == 0:
            out.update(diagnostics(h))
        return out

    @torch.no_grad()
    def on_step_end(self, step: int, total_steps: int) -> None:
        """Advance the mask seed; EMA-update the target encoder (momentum ema_start -> ema_end linear)."""
        self.counter.set(step + 1)
        ema_update(self.target_encoder, self.encoder, ema_momentum(step, total_steps, self.cfg.ema_start, self.cfg.ema_end))


@register_model("vjepa_camera", VideoEncoderConfig, kind="jepa")
def build_vjepa_camera(cfg: VideoEncoderConfig) -> VideoJepa:
    return VideoJepa(cfg)
