"""build_backbone: one config line swaps the temporal mixer of any world model."""

from __future__ import annotations

from drivewm.backbones.base import SequenceBackbone
from drivewm.backbones.config import BackboneConfig


def build_backbone(cfg: BackboneConfig) -> SequenceBackbone:
    """BackboneConfig(kind='attention' | 'ssm', ...) -> the matching SequenceBackbone."""
    if cfg.kind == "attention":
        from drivewm.backbones.attention_backbone import AttentionBackbone

        return AttentionBackbone(cfg)
    if cfg.kind == "ssm":
        from drivewm.backbones.ssm import SSMBackbone

        return SSMBackbone(cfg)
    raise ValueError(f"backbone kind {cfg.kind!r} not in ('attention', 'ssm')")
