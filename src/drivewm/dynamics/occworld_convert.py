"""Official OccWorld checkpoints into `occworld_published` (network 'unet').

An official run (wzzheng/OccWorld `train.py`, commit 1ee7f77) saves `{'state_dict': TransVQVAE.state_dict(),
'optimizer': ..., 'scheduler': ..., ...}`, keys possibly prefixed 'module.' (DDP). The world model's parts keep
their official names here (`occworld_unet.PlanUAutoRegTransformer` as `transformer`, `PoseEncoder` as
`pose_encoder`, `PoseDecoder` as `pose_decoder`), so the name map is the identity on those prefixes; the VQ-VAE's
tensors (`vae.*`) map to the frozen tokenizer (`tokenizer.*`) when it is the official structure
(`drivewm.tokenizers.occworld_vae.OccWorldVAE`, the same attribute names), else they are returned apart. Reading uses `torch.load(weights_only=True)`,
which never executes code from the file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from drivewm.errors import CheckpointError
from drivewm.tokenizers.occworld_vae import OccWorldVAE

WORLD_PREFIXES = {"transformer.": "transformer.", "pose_encoder.": "pose_encoder.", "pose_decoder.": "pose_decoder."}
"""Official key prefix -> drivewm key prefix of the world model's own tensors."""
TOKENIZER_PREFIXES = {"vae.": "tokenizer."}
"""Official key prefix -> drivewm key prefix of the official-structure tokenizer's tensors."""


def official_world_state(state: dict[str, torch.Tensor], name_map: dict[str, str] = WORLD_PREFIXES
                         ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """An official `TransVQVAE` state dict -> (the tensors `name_map` covers, under drivewm's names; the rest
    under their official names). 'module.' prefixes (DDP) are dropped."""
    mapped, rest = {}, {}
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        prefix = next((p for p in name_map if name.startswith(p)), None)
        if prefix is None:
            rest[name] = value
        else:
            mapped[name_map[prefix] + name[len(prefix):]] = value
    return mapped, rest


def read_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an official `.pth` (its 'state_dict' entry, or the file itself when it is one)."""
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such OccWorld checkpoint") from None
    except Exception as e:  # weights_only refuses pickled code; a torn file fails to unpickle
        raise CheckpointError(f"{path}: not a tensors-only OccWorld checkpoint ({type(e).__name__}: {e})") from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: holds no state dict of tensors")
    return state


def load_official_world(model: torch.nn.Module, path: str | Path) -> dict[str, torch.Tensor]:
    """Copy an official checkpoint's transformer and pose encoder / decoder into `model` (occworld_published with
    network 'unet'), and its VQ-VAE into the model's tokenizer when that has the official structure, strictly:
    a CheckpointError names every missing, unexpected or mis-shaped tensor. Returns the tensors left unused
    under their official names."""
    if getattr(model.cfg, "network", None) != "unet":
        raise CheckpointError("official OccWorld weights fit occworld_published with model.network=unet only")
    name_map = dict(WORLD_PREFIXES)
    if isinstance(getattr(model, "tokenizer", None), OccWorldVAE):
        name_map.update(TOKENIZER_PREFIXES)
    mapped, rest = official_world_state(read_official_checkpoint(path), name_map)
    own = {k: v for k, v in model.state_dict().items() if k.split(".", 1)[0] + "." in name_map.values()}
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    shapes = [f"{k} {tuple(mapped[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(set(own) & set(mapped))
              if mapped[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(f"{path}: does not fit the model: missing {missing or 'none'}; unexpected "
                              f"{unexpected or 'none'}; shape mismatches {shapes or 'none'}")
    model.load_state_dict(mapped, strict=False)
    return rest
