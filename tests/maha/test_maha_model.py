"""Language models, the block, the decomposition and the dilated convolution."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import maha
from maha.block import DilatedConv
from maha.decomposition import HierarchicalDecomposition
from maha.scales import scale_lengths

SMALL = maha.MAHAConfig(block_size=64, n_layer=2, n_head=2, d_model=16, num_scales=3, window=4)


@pytest.mark.parametrize("variant", maha.VARIANTS)
def test_every_variant_maps_ids_to_logits(variant):
    config = SMALL.replace(solver_max_iter=30) if variant == "maha-fictitious_play" else SMALL
    torch.manual_seed(0)
    model = maha.build_model(variant, config)
    idx = torch.randint(0, 256, (2, 37))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fictitious play may stop unconverged
        logits = model(idx)
    assert logits.shape == (2, 37, 256) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    if variant == "full":
        assert isinstance(model, maha.FullAttentionTransformer)
    else:
        assert isinstance(model, maha.MAHATransformer)
        strategy = "mean" if variant == "local" else variant.removeprefix("maha-")
        assert all(block.attn.strategy == strategy for block in model.blocks)


def test_local_variant_is_one_windowed_scale():
    model = maha.build_model("local", SMALL)
    attn = model.blocks[0].attn
    assert attn.num_scales == 1 and attn.window == 4 and attn.attention.is_local(0, 64)
    with pytest.raises(ValueError, match="window"):
        maha.build_model("local", SMALL.replace(window=None))


def test_models_learn_a_repeated_pattern():
    """A few Adam steps on a periodic byte string lower the loss of MAHA and of the peer."""
    idx = torch.tensor([list(b"abcabcabcabcabcabcabcabcabcabcab")])  # (1, 32)
    for variant in ("maha-nash", "full"):
        torch.manual_seed(0)
        model = maha.build_model(variant, SMALL)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(13):
            logits = model(idx[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, 256), idx[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.4 * losses[0], (variant, losses)


def test_generate_appends_tokens_and_crops_context():
    torch.manual_seed(0)
    model = maha.build_model("maha-mean", SMALL.replace(block_size=8))
    out = model.generate(
        torch.tensor([[1, 2, 3]]), 10, top_k=5, generator=torch.Generator().manual_seed(0)
    )
    assert out.shape == (1, 13) and torch.equal(out[:, :3], torch.tensor([[1, 2, 3]]))
    assert ((out >= 0) & (out < 256)).all()


def test_parameter_counts_are_comparable():
    maha_model = maha.build_model("maha-nash", maha.MAHAConfig())
    full = maha.build_model("full", maha.MAHAConfig())
    ratio = maha_model.num_parameters() / full.num_parameters()
    assert 1.0 < ratio < 1.5  # extra per-scale Q/K projections; same width and depth


def test_bad_model_input():
    model = maha.build_model("maha-mean", SMALL)
    with pytest.raises(ValueError, match=r"block_size=64.*65"):
        model(torch.zeros(1, 65, dtype=torch.int64))
    with pytest.raises(ValueError, match="batch, length"):
        model(torch.zeros(65, dtype=torch.int64))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"vocab_size=256.*256"):
        model(torch.full((1, 4), 256))
    with pytest.raises(ValueError, match="variant"):
        maha.build_model("maha-median", SMALL)
    with pytest.raises(TypeError, match="MAHAConfig"):
        maha.build_model("full", {"d_model": 16})
    with pytest.raises(ValueError, match="causal"):
        maha.MAHATransformer(SMALL.replace(causal=False))


def test_block_padding_matches_unpadded_sequence():
    torch.manual_seed(0)
    block = maha.MAHABlock(SMALL.replace(causal=False)).double()
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    pad = torch.zeros(1, 12, dtype=torch.bool)
    pad[:, 9:] = True
    y = block(x, key_padding_mask=pad)
    torch.testing.assert_close(y[:, :9], block(x[:, :9]), rtol=1e-10, atol=1e-10)
    out, diag = block.forward_with_diagnostics(x[:, :9])
    torch.testing.assert_close(out, block(x[:, :9]))
    assert diag.weights.shape == (1, 9, 2, 3)


@pytest.mark.parametrize("causal", [True, False])
def test_dilated_conv_equals_torch_conv1d(causal):
    torch.manual_seed(0)
    conv = DilatedConv(6, 3, 2, causal=causal).double()
    x = torch.randn(2, 11, 6, dtype=torch.float64)
    left = 4 if causal else 2
    padded = F.pad(x.transpose(1, 2), (left, 4 - left))
    weight = conv.weight.t().unsqueeze(1)  # (d, 1, k)
    expected = F.conv1d(padded, weight, conv.bias, dilation=2, groups=6).transpose(1, 2)
    torch.testing.assert_close(conv(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", maha.DECOMPOSITIONS)
def test_decomposition_lengths_and_initial_pooling(mode):
    torch.manual_seed(0)
    dec = HierarchicalDecomposition(4, 4, 3, mode).double()
    x = torch.randn(2, 29, 4, dtype=torch.float64)
    scales = dec(x)
    assert [s.shape[1] for s in scales] == scale_lengths(29, 4, 3) == [29, 10, 4, 2]
    padded = F.pad(x, (0, 0, 0, 1)).view(2, 10, 3, 4)  # zero-padded tail block
    expected = padded.amax(2) if mode == "max" else padded.mean(2)  # convs start as averages
    torch.testing.assert_close(scales[1], expected)
    for level in range(3):  # block j of scale l+1 depends on its own r blocks of scale l only
        torch.testing.assert_close(scales[level + 1], dec.level(scales[level], level))
    with pytest.raises(ValueError, match="mode"):
        HierarchicalDecomposition(4, 2, 2, "median")
    with pytest.raises(ValueError, match=r"x must have shape \(batch, length, 4\)"):
        dec(torch.randn(2, 5, 3))
