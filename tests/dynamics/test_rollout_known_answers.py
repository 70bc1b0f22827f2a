"""Seeded rollouts of every model, backbone and sampling path against known answers.

The answers were recorded from the three per-model rollout loops that the one loop in `TokenWorldModel`
replaced: any change in what a rollout draws, or in the order it draws it from the generator, changes
them. The SSM answers were recorded again when the SSM backbone took Mamba's residual-projection init
(out_proj / sqrt(depth)), which changes the untrained weights. The MaskGIT answers were recorded again when
its confidence became the model's own log-probability (not renormalised over the top-k draws), its
re-masking count took parallel_decode's clamp to [1, unknown - 1] and its guidance took Copilot4D's weight
w (w = 1 here is the former scale 2: the same guided logits). Each is the future tokens [2, 5, 4, 4] in hex (vocabulary 16: one digit per token), rolled out
from 3 context frames with max_frames=6, so the window slides over the last frames. The answers are
bitwise, so they hold for the CPU kernels of the pinned torch.
"""

import pytest
import torch

from drivewm.dynamics import SamplingConfig
from drivewm.dynamics.warp_prior import WarpPrior

VOCAB = 16  # the conftest models' vocabulary

KNOWN = {
    'gpt-attention-plain-': 'd3e3e99db3797f69ce971483e051463e29a2902679e479d2312129e51d9e54d765f26513e4651679c3e9d90f1371290563e5c371670f13f43705f67f6b3e9797c029d7057f0263c9c3e213ce29d7047f',
    'gpt-attention-plain-use_cache=False': 'd3e34b8db4dc8b69e0971a83005116a0165c9b2549f479483b93e75e2a0654de65f20513216566ab024bc3c377071945f63e137e5f7fa3f93676617f6a21f594f525270a7dbaadb9c3e223bcdd26d39c',
    'occworld-attention-plain-': 'b032843b4cb38cd3ea0d9271eca3fc3e15a650c6a60127583fb59215e27750ea28c3492702531a1c1745d7c781b9642a050257df1aedc00a479af3487f8bd98f27ad0b3a5a3ddb69271d62566d64a9e6',
    'maskgit-attention-plain-': '303330300003073330d303f730d300337303070733303733737a300033703300737aa030000300a3703333033333000f0a033033030330a330030337f0d33373377a0033000333330370333303030373',
    'maskgit-attention-plain-guidance_weight=1.0': '300f30330000070333f0037ff0f000337303070733303033037a770070f03330d37a7733300000a300033303037300070a7330377373337303733337f0da3373770a0033300333300310333300330373',
    'maskgit-attention-hint-': 'dfdbd1f1dfffdfddd9d2fd95d92f85dd4dddf89ddfdfffd8dd48f1998d8df5f7ddd9f1d9ffddf15dd9fdfdd9dd1fffadd9d8f8d9dd1dd14ddfdddddfdfd8d994f549fdd98d8dd9f9dfffddd9ddfffd99',
    'maskgit-attention-hint-guidance_weight=1.0': 'ded18ff1d1d1dddddbddd1fed1dd88ddd2ddd15dddd8d9dddd588e5ddd4f89d8dd1e8ddd88dde15ed9dd1dd91fda812fdfddd8dd1dddd1fdddddddd4d8dddd58ddddddd98f8ddddddd5dddd9dddd8dd8',
    'maskgit-ssm-plain-': '0405111c0000d01104d1010000d0dc11d1010cd111001c1c11d01dddd10101c0d104dc1c04d1f0d1d01011d111d110d014141c1dd1011c11141121100014120c0d04d1010101111110d111111101d1d1',
    'maskgit-ssm-plain-guidance_weight=1.0': '110511110000d01104d1010000d0dc11d1010cd111001c1c11dd1dddd1d001d0d104dc1c04d1f051d01011d1110110dd14141c1dd1111c21111121100014120d0d04d1010101111110d111111101d1d1',
    'maskgit-ssm-hint-': '0e0b000e0a10a1d002a03021202e23b030d00a3200003b0a000aa2232030000d00a2a3002a00aa2baa0dd230001013130a0bb3000020db200000000223fab0da23a2a0003a3d00b00dadd00a0da1a030',
    'maskgit-ssm-hint-guidance_weight=1.0': '0e0b300034014b0000004030a12d11a0ae0020a0d10b022001a000a0bde020402dda4ed0110e2010400102300010341a000d2400002040d00e0b0004003a202ea300a000304d3000dbaed0a00e2b4020',
    'gpt-attention-hint-': 'c5636b8ba86f8b60ee972480e8280e28fb24ac2f80fcdbd8cbaa875ee863fbc6298c65984aad163b0f8bd8637748badffeeec6ac5aafedfcc2eb22df72e8fbb4112ed128bdbaadb98097f9c1dddbd356',
    'gpt-attention-hint-use_cache=False': 'd3234b8ba8dc8b69ce97ea830a5aaea019529b2649fe79d83be3275e280354c66c4c059824f566ab024bc3637777ba45f32ec32ee27fadf93606f1df7128fb9cf223270a8dbaadb98097f3bcddd6da96',
    'occworld-attention-hint-': 'd052242b4cb38cd3ef8d927eeca38a3e19965736a6b1275e37b292338277596a6854a92702531a8cb747d0c782ba6425050b57afaa73a059469af3486f9549cc27ad0bea7abd7b692d4272566d23a99c',
    'gpt-ssm-plain-': 'd49c3b9c385c8baa9e27daa5622fa73816226b764973b9c87de38276244444cac3820f973b7da77603ba516e5627da45f327f3b4527fa56e56e66e6e62f9773bb527d73b7d15622f73b7f3ba7d4c83b7',
    'gpt-ssm-plain-use_cache=False': 'd5234c8ba4dc8b6eee97eaa3005da5a516529c2649fe6b4c3b93e7562403b476c5820511244566a5024bc3b37777da45f32ec3be527fa3b956e6616e6228f59cf52d270a7dbaadb9849723bc7d26da9c',
    'occworld-ssm-plain-': 'd032943b4cb98bd3efe392711ca3a03ef56650c6a6f127583fbb9233e277506ac8c4a2c7c2531a8ca747d7c78bba640a000f57dfaa63a409479af2487fb5f98c27cd0b6aaa4dd2a92d1a70562ddaa9bc',
    'gpt-ssm-hint-': 'dd59d15db3086902d0270a25d0b516cd2b22a5f209fdc9ce3d930015dced5dc62cf2cd9824f59da9014a59cf8701d9dc133515815fcf270959085174d161a59c70cd22045f823dce8d9743a1dd59d916',
    'gpt-ssm-hint-use_cache=False': 'd5f2418da5dc8b69c0971a83005da5a51652a57049fe79983b93075e160d547e2cf2c511247566ab024bc9c37707d9d5f33e13ae5f7aa3095606616fda28f59c7823270a7dbaadc9849723acdd56da9c',
    'occworld-ssm-hint-': 'd052949b4cb38bd9ef83927111a3803e19665026a6b1275e3fb1ee33d27759ea6cc4a927c253491ca787d7c78db91495d50257521a63a009479af2e87d9bd9e927ad0b6a5abd79e9221a60566d6aa9be',
}

OPTIONS = {
    "gpt": [dict(sampling=SamplingConfig(temperature=0.8, top_k=5)),
            dict(sampling=SamplingConfig(temperature=1.0), use_cache=False)],
    "occworld": [dict(sampling=SamplingConfig(temperature=1.0))],
    "maskgit": [dict(), dict(guidance_weight=1.0)],
}
CASES = [(kind, backbone, prior, kw) for backbone in ("attention", "ssm") for prior in (False, True)
         for kind in OPTIONS for kw in OPTIONS[kind]]


def _name(kind, backbone, prior, kw) -> str:
    extra = ",".join(f"{k}={v}" for k, v in kw.items() if k != "sampling")
    return f"{kind}-{backbone}-{'hint' if prior else 'plain'}-{extra}"


@pytest.mark.parametrize("kind, backbone, prior, kw", CASES, ids=[_name(*c) for c in CASES])
def test_seeded_rollout_matches_the_known_answer(make_model, kind, backbone, prior, kw):
    model = make_model(kind, backbone, **(dict(warp_prior=True) if prior else {})).eval()
    if prior:  # a deterministic stand-in for decode -> warp -> encode (no tokenizer here)
        model.make_prior = lambda tokens, cond: WarpPrior((tokens * 3 + 1) % VOCAB)
    context = torch.randint(0, VOCAB, (2, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    actions = torch.randn(2, 8, 5, generator=torch.Generator().manual_seed(1))
    out = model.rollout(context, actions, 5, generator=torch.Generator().manual_seed(7), **kw)
    assert out.shape == (2, 5, 4, 4)
    assert "".join("%x" % v for v in out.flatten().tolist()) == KNOWN[_name(kind, backbone, prior, kw)]


def test_rollout_options_are_the_models_own(make_model, tokens, cond):
    """Options reach the model's next_frame by name: one it does not have is an error, never ignored."""
    with pytest.raises(TypeError, match="guidance"):
        make_model("gpt").eval().rollout(tokens[:, :3], cond, 1, guidance=2.0)
    with pytest.raises(TypeError, match="use_cache"):
        make_model("occworld").eval().rollout(tokens[:, :3], cond, 1, use_cache=False)
