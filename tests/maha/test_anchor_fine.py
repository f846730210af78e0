"""The anchored fusion (``anchor_fine=True``): ``y = o_0 + sum_{l >= 1} w_l o_l``.

Pinned to its definition: with two scales the single coarse player takes the whole
weight, so ``y = o_0 + o_1`` wherever scale 1 is present and ``o_0`` elsewhere, for every
strategy; with more scales it is the unanchored fusion of the coarse scales alone plus
``o_0``; and the models keep streaming == parallel and compiled decoding == parallel.
"""

from __future__ import annotations

import pytest
import torch

import maha
from maha.fusion import ScaleFusion

F64 = torch.float64
STRATEGIES = ["nash", "convex", "softmax", "mean", "logit", "fictitious_play"]


@pytest.mark.filterwarnings("ignore:fictitious_play:RuntimeWarning")  # dummy games, no player
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_scales_add_the_coarse_output(strategy):
    torch.manual_seed(0)
    fusion = ScaleFusion(2, 3, 4, strategy, anchor_fine=True).double()
    stack = torch.randn(2, 9, 3, 2, 4, dtype=F64)  # (B, n, H, L, d_h)
    present = torch.ones(2, 9, 2, dtype=torch.bool)
    present[:, :3, 1] = False  # scale 1 absent at the first positions
    present[1, 5, 1] = False
    out = fusion(stack, present)
    expected = stack[..., 0, :] + stack[..., 1, :] * present[:, :, None, 1:]  # (B, n, H, d_h)
    torch.testing.assert_close(out.output, expected, rtol=1e-6, atol=1e-6)
    weights = out.diagnostics.weights  # (B, n, H, L)
    assert torch.equal(weights[..., 0], torch.zeros_like(weights[..., 0]))
    assert not bool(out.diagnostics.present[..., 0].any())  # scale 0 is not a player


@pytest.mark.parametrize("strategy", ["nash", "convex", "softmax"])
def test_anchored_is_the_coarse_fusion_plus_the_fine_scale(strategy):
    torch.manual_seed(1)
    anchored = ScaleFusion(4, 2, 8, strategy, anchor_fine=True).double()
    plain = ScaleFusion(4, 2, 8, strategy).double()
    plain.load_state_dict(anchored.state_dict())  # the same parameters
    stack = torch.randn(1, 12, 2, 4, 8, dtype=F64)
    present = torch.rand(1, 12, 4) < 0.8
    coarse_only = present.clone()
    coarse_only[..., 0] = False
    ref = plain(stack, coarse_only).output + stack[..., 0, :]
    out = anchored(stack, present)
    torch.testing.assert_close(out.output, ref, rtol=0, atol=1e-12)
    w = out.diagnostics.weights
    has_coarse = present[..., 1:].any(-1)  # (B, n)
    sums = w.sum(-1)  # (B, n, H)
    torch.testing.assert_close(sums, has_coarse[..., None].expand_as(sums).to(F64))


@pytest.mark.parametrize("strategy", ["nash", "softmax"])
def test_anchored_models_stream_and_decode_as_they_run_in_parallel(strategy, streams_like_parallel):
    torch.manual_seed(2)
    config = maha.MAHAConfig(
        vocab_size=40, block_size=96, n_layer=2, n_head=2, d_model=16, num_scales=3,
        window=4, strategy=strategy, anchor_fine=True, rotary=True,
    )  # fmt: skip
    model = maha.build_model(f"maha-{strategy}", config).double().eval()
    idx = torch.randint(0, 40, (2, 41), generator=torch.Generator().manual_seed(3))
    parallel = streams_like_parallel(model, idx)
    plain = maha.build_model(f"maha-{strategy}", config.replace(anchor_fine=False))
    plain.load_state_dict(model.state_dict())  # no parameter added or removed
    with torch.no_grad():
        assert float((plain.double().eval()(idx) - parallel).abs().max()) > 1e-6


def test_anchor_fine_must_be_a_bool():
    with pytest.raises(TypeError, match="anchor_fine must be a bool"):
        maha.MAHAConfig(anchor_fine="yes")
    with pytest.raises(TypeError, match="anchor_fine must be a bool"):
        ScaleFusion(3, 2, 4, anchor_fine=1)
