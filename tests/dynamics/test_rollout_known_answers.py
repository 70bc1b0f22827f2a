"""Seeded rollouts of every model, backbone and sampling path against known answers.

The answers were recorded from the three per-model rollout loops that the one loop in `TokenWorldModel`
replaced: any change in what a rollout draws, or in the order it draws it from the generator, changes
them. Each is the future tokens [2, 5, 4, 4] in hex (vocabulary 16: one digit per token), rolled out
from 3 context frames with max_frames=6, so the window slides over the last frames. The answers are
bitwise, so they hold for the CPU kernels of the pinned torch.
"""

import pytest
import torch

from drivewm.dynamics import SamplingConfig
from drivewm.dynamics.base import WarpPrior

VOCAB = 16  # the conftest models' vocabulary

KNOWN = {
    'gpt-attention-plain-': 'd3e3e99db3797f69ce971483e051463e29a2902679e479d2312129e51d9e54d765f26513e4651679c3e9d90f1371290563e5c371670f13f43705f67f6b3e9797c029d7057f0263c9c3e213ce29d7047f',
    'gpt-attention-plain-use_cache=False': 'd3e34b8db4dc8b69e0971a83005116a0165c9b2549f479483b93e75e2a0654de65f20513216566ab024bc3c377071945f63e137e5f7fa3f93676617f6a21f594f525270a7dbaadb9c3e223bcdd26d39c',
    'occworld-attention-plain-': 'b032843b4cb38cd3ea0d9271eca3fc3e15a650c6a60127583fb59215e27750ea28c3492702531a1c1745d7c781b9642a050257df1aedc00a479af3487f8bd98f27ad0b3a5a3ddb69271d62566d64a9e6',
    'maskgit-attention-plain-': '303330300000073330d303f730d300337303070733303733737a000073330300737aa030000300a3703333033333000f0a033033030330a330030337f0d33373377a0033000333330370333303030373',
    'maskgit-attention-plain-guidance=2.0': '300f30330000f70330f0037ff0730033730307a33300300073f7070030300330337a73330073007300033303037300070a733037737333730373a737707a3773770a0033300333300310033300330373',
    'gpt-attention-hint-': 'c5636b8ba86f8b60ee972480e8280e28fb24ac2f80fcdbd8cbaa875ee863fbc6298c65984aad163b0f8bd8637748badffeeec6ac5aafedfcc2eb22df72e8fbb4112ed128bdbaadb98097f9c1dddbd356',
    'gpt-attention-hint-use_cache=False': 'd3234b8ba8dc8b69ce97ea830a5aaea019529b2649fe79d83be3275e280354c66c4c059824f566ab024bc3637777ba45f32ec32ee27fadf93606f1df7128fb9cf223270a8dbaadb98097f3bcddd6da96',
    'occworld-attention-hint-': 'd052242b4cb38cd3ef8d927eeca38a3e19965736a6b1275e37b292338277596a6854a92702531a8cb747d0c782ba6425050b57afaa73a059469af3486f9549cc27ad0bea7abd7b692d4272566d23a99c',
    'maskgit-attention-hint-': 'dfdbd1f1dfffdfddd9d2fd95d92f85dd4dddf89ddfdffff8dd48f199fdfdf5d7ddd9f1d9ffddf14d49fd1dd9df1fffad9fd8d8d4dd1ddf4ddfdddcdfdfd8d994ffd9fbd985ffd9f9d98f9bd9ddf9fd99',
    'maskgit-attention-hint-guidance=2.0': 'ded1d5d1d1d1ddddd9d18d5ed1dd8dddddddddfdddd8d4d8ddd88d58ddd7d9d7dd8fe8dddddd814dd9dd1dd91fda812fdfddd8dd1dddd1fdddddddd4d8dddf18dddd8dd9828ddddddd5dddd9dddd8dd8',
    'gpt-ssm-plain-': 'd4686cf6850686c51f2e85850a5915c5f6e59f20606e68de4beae59e581d7acac582064e99f59eaef24bc7ae5981de59f6e5cf2e5c7a59f4c506817a6828d7ac15e52824be8d6859c1777ac1dc5cfae6',
    'gpt-ssm-plain-use_cache=False': 'd5994b8da4dc8b19e89e1a830a5915c5f652ab2549f4784e3beae75e28065b7ac5820591246596ae024bc3b37707a945f331c38e527a1d49c606617a6a28f599f22d270a7dba6db9c39223acdd06da9e',
    'occworld-ssm-plain-': 'd052643b4cb38fd3efe39271eca38d3e13665cc6a60177ae3fb5e233027750ea2c54ae27c2531b1ca747d0c781b964950e0f575fa11da054479af2e87fb549cc27dd0b6a13bd7b592e12f8566d63a9bc',
    'maskgit-ssm-plain-': 'eceee4cbc4eecec4ecbeecce4494c4440eceec2ceeeceefece0bc0e0ac5ec0bb0ee4ce444cbce4e45ccc444eecbeeb400cc44ecebe0eac4bcc4ec4cb0444cce4bbc44cc4bc4ec4ccbe4c44cbeebb4ce4',
    'maskgit-ssm-plain-guidance=2.0': 'eceee4ccc4ee4ec4eebecbce444cc4c4eeceeb4ceeecebfecebbc0e0accec0eb6ee4ce444cbce4e45cec444cecbeeb400cc44ecece0ece4bbc4ec4cbb4b4ccc4bbe44cc4bc4ec4cc0e0cc4cceeee4e4b',
    'gpt-ssm-hint-': '0393dfc6081c8609c89f08ff0032a4c2f0525b7511a4794c71540256c20654726c220ff02065676903acc9f34b06d946ff03c67c67c25d5a5815616f72286094f02528054fffbf4bc69320117257c256',
    'gpt-ssm-hint-use_cache=False': 'd5834b80340c8b69ce97ea830a5d17a5f952902040fe79483b93e75628035475cc4cc51121f566a9024bc9637577d945f32ec3ae527613595606617e7228fb94f025279a4dba4d59812723ac2dc6d496',
    'occworld-ssm-hint-': 'b052f43b4cb38c93efe393711ca3803e139657269601275f3fbb92330277506a28c1492207531b1c174710c761b960950502575fa7e3a009469af3e87f9b9984274d0b6a134d7b692d1260562d69a9bc',
    'maskgit-ssm-hint-': 'cbcca3bbbcbccb7bcca0c3b1abacbccbbc7bc3bb7acbc00b0b50b7cc0ca0bbb0bacc0cbc007bccbbc3bbbb4b7b5ac0a30b0aca0b00bc08cbbbbc04b00000bbbc0cc08bab8b0bababbb0b0acc0abac07a',
    'maskgit-ssm-hint-guidance=2.0': 'ab50a73bb705505371cbcb70cc3c736317caa1cbcc555533c557c4c1a5cc775ba05bcbc7cccc7b617b077bb37a5ac318cabb51135c775750a71ab77705c75cb35179ab5585c57c13047b71750c5cc573',
}

OPTIONS = {
    "gpt": [dict(sampling=SamplingConfig(temperature=0.8, top_k=5)),
            dict(sampling=SamplingConfig(temperature=1.0), use_cache=False)],
    "occworld": [dict(sampling=SamplingConfig(temperature=1.0))],
    "maskgit": [dict(), dict(guidance=2.0)],
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
