"""OccTokenizer: shapes, bad input, overfitting one batch, determinism, safetensors round-trip."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from drivewm.registry import build_model, model_entry
from drivewm.tokenizers.bev_cnn import BevCnnConfig
from drivewm.tokenizers.occ import OccTokenizer, OccTokenizerConfig
from drivewm.tokenizers.quantizer import QuantizerConfig

MICRO = (32, 32, 4)


def _cfg(**kw) -> OccTokenizerConfig:
    base = dict(grid="micro", class_dim=8, z_channels=32,
                cnn=BevCnnConfig(channels=32, channel_mult=[1, 2, 2], num_res_blocks=1, attention=False),
                quantizer=QuantizerConfig(codebook_size=64, dead_threshold=0.0))
    base.update(kw)
    return OccTokenizerConfig(**base)


def test_registered_and_shapes(toy_occ):
    assert model_entry("occ_vqvae").kind == "tokenizer"
    torch.manual_seed(0)
    m = build_model(_cfg())
    occ = toy_occ(2, MICRO)
    codes = m.encode(occ)
    assert codes.shape == (2, 8, 8) and codes.dtype == torch.long and m.token_shape == (8, 8)
    assert m.vocab_size == 64 and int(codes.max()) < 64
    assert m.decode(codes).shape == (2, 18, *MICRO)
    assert m.reconstruct(occ).shape == (2, *MICRO) and m.reconstruct(occ).dtype == torch.uint8
    out = m.loss({"occ": occ[:, None].repeat(1, 2, 1, 1, 1)})  # [B, T, X, Y, Z]
    assert {"loss", "ce", "lovasz", "vq", "perplexity", "used"} <= set(out)
    out["loss"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_fsq_and_untied_variants_train(toy_occ):
    torch.manual_seed(0)
    m = OccTokenizer(_cfg(tied_logits=False, quantizer=QuantizerConfig(kind="fsq", fsq_levels=[5, 5, 5])))
    assert m.vocab_size == 125
    out = m.loss({"occ": toy_occ(1, MICRO)})
    out["loss"].backward()
    assert torch.isfinite(out["loss"])


def test_bad_input_is_rejected(toy_occ):
    m = OccTokenizer(_cfg())
    with pytest.raises(ValueError, match="occ must be"):
        m.encode(torch.zeros(1, 64, 64, 8, dtype=torch.uint8))
    bad = toy_occ(1, MICRO)
    bad[0, 0, 0, 0] = 40
    with pytest.raises(ValueError, match="class ids"):
        m.encode(bad)
    with pytest.raises(ValueError, match="dtype"):
        m.encode(torch.zeros(1, *MICRO))
    with pytest.raises(KeyError, match="occ"):
        m.loss({"lidar": torch.zeros(1)})
    with pytest.raises(ValueError, match="codes must be"):
        m.decode(torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        OccTokenizer(_cfg(cnn=BevCnnConfig(channel_mult=[1] * 7)))


def test_overfits_one_batch_to_near_perfect_iou(toy_occ):
    torch.manual_seed(0)
    m = OccTokenizer(_cfg())
    occ = toy_occ(2, MICRO)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        m.train().loss({"occ": occ})["loss"].backward()
        opt.step()
    rec = m.eval().reconstruct(occ)
    occupied_pred, occupied_true = rec != 17, occ != 17
    iou = (occupied_pred & occupied_true).sum() / (occupied_pred | occupied_true).sum()
    assert iou > 0.95, float(iou)
    assert (rec == occ).float().mean() > 0.97


def test_deterministic_and_safetensors_round_trip(toy_occ, tmp_path):
    occ = toy_occ(2, MICRO)

    def trained_one_step(seed: int) -> OccTokenizer:
        torch.manual_seed(seed)
        m = OccTokenizer(_cfg())
        m.train().loss({"occ": occ})  # k-means init + EMA step change the codebook buffers
        return m.eval()

    a, b = trained_one_step(3), trained_one_step(3)
    assert torch.equal(a.quantizer.embed, b.quantizer.embed)
    assert torch.equal(a.encode(occ), b.encode(occ))
    save_file(a.state_dict(), tmp_path / "w.safetensors")
    torch.manual_seed(99)
    c = OccTokenizer(_cfg())
    c.load_state_dict(load_file(tmp_path / "w.safetensors"))
    c.eval()
    assert torch.equal(a.encode(occ), c.encode(occ))
    assert torch.equal(a.decode(a.encode(occ)), c.decode(c.encode(occ)))
