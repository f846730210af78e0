"""``MAHAMultiheadAttention``: nn.MultiheadAttention's call convention around MAHAAttention.

The adapter adds no arithmetic, so every test pins it to the wrapped layer called directly
(float64, difference <= 1e-12), inside ``nn.TransformerEncoderLayer`` and
``nn.TransformerEncoder`` too, forward and backward, with padding and causal masks.
"""

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import maha

D, H = 16, 2


def _adapter(batch_first, *, seed=0, **kwargs):
    torch.manual_seed(seed)
    kwargs.setdefault("num_scales", 3)
    kwargs.setdefault("window", 4)
    kwargs.setdefault("strategy", "nash")
    return maha.MAHAMultiheadAttention(D, H, batch_first=batch_first, dtype=torch.float64, **kwargs)


def _encoder_layer(batch_first, norm_first, *, seed=0):
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(
        D,
        H,
        dim_feedforward=32,
        dropout=0.0,
        batch_first=batch_first,
        norm_first=norm_first,
        dtype=torch.float64,
    )
    layer.self_attn = _adapter(batch_first, seed=seed + 1)
    return layer


def _manual_encoder_layer(layer, x, padding, causal):
    """``nn.TransformerEncoderLayer``'s formula with ``self_attn.layer`` called directly."""
    xb = x if layer.self_attn.batch_first else x.transpose(0, 1)  # (B, n, d)

    def attend(u):
        return layer.self_attn.layer(u, key_padding_mask=padding, is_causal=causal)

    def ffn(u):
        return layer.linear2(F.relu(layer.linear1(u)))

    if layer.norm_first:
        h = xb + attend(layer.norm1(xb))
        out = h + ffn(layer.norm2(h))
    else:
        h = layer.norm1(xb + attend(xb))
        out = layer.norm2(h + ffn(h))
    return out if layer.self_attn.batch_first else out.transpose(0, 1)


def _padding(batch, n, lengths, left=False):
    mask = torch.zeros(batch, n, dtype=torch.bool)
    for b, length in enumerate(lengths):
        mask[b, length:] = True
    return mask.flip(1) if left else mask


@settings(max_examples=12, deadline=None)
@given(
    batch_first=st.booleans(),
    n=st.integers(1, 23),
    causal=st.booleans(),
    pad=st.lists(st.integers(0, 6), min_size=2, max_size=2),
    strategy=st.sampled_from(["nash", "mean", "convex"]),
    left=st.booleans(),
)
def test_adapter_equals_the_wrapped_layer(batch_first, n, causal, pad, strategy, left):
    attn = _adapter(batch_first, strategy=strategy)
    g = torch.Generator().manual_seed(n)
    xb = torch.randn(2, n, D, generator=g, dtype=torch.float64)  # (B, n, d)
    padding = _padding(2, n, [max(1, n - p) for p in pad], left)
    x = xb if batch_first else xb.transpose(0, 1).contiguous()
    out, weights = attn(x, x, x, key_padding_mask=padding, is_causal=causal)
    assert weights is None
    expected = attn.layer(xb, key_padding_mask=padding, is_causal=causal)  # (B, n, d)
    got = out if batch_first else out.transpose(0, 1)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-12
    # the float form of the same padding mask (what nn.TransformerEncoderLayer passes)
    additive = torch.zeros(2, n, dtype=torch.float64).masked_fill(padding, float("-inf"))
    again, _ = attn(x, x, x, key_padding_mask=additive, is_causal=causal)
    assert torch.equal(again, out)


def test_unbatched_query_and_causal_mask():
    attn = _adapter(False)
    x = torch.randn(9, D, dtype=torch.float64)  # (n, d)
    mask = nn.Transformer.generate_square_subsequent_mask(9, dtype=torch.float64)
    out, weights = attn(x, x, x, attn_mask=mask, need_weights=True)
    assert weights is None and out.shape == (9, D)
    expected = attn.layer(x.unsqueeze(0), is_causal=True)[0]
    assert (out - expected).abs().max() <= 1e-12
    padding = torch.tensor([False] * 7 + [True] * 2)
    out, _ = attn(x, x, x, key_padding_mask=padding)
    expected = attn.layer(x.unsqueeze(0), key_padding_mask=padding.unsqueeze(0))[0]
    assert (out - expected).abs().max() <= 1e-12


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize(
    "mask_kind", ["padding", "left_padding", "causal_mask", "is_causal", "both"]
)
def test_inside_transformer_encoder_layer(batch_first, norm_first, mask_kind):
    layer = _encoder_layer(batch_first, norm_first)
    n, batch = 11, 3
    g = torch.Generator().manual_seed(1)
    xb = torch.randn(batch, n, D, generator=g, dtype=torch.float64)
    x = (xb if batch_first else xb.transpose(0, 1).contiguous()).requires_grad_()
    padding = None
    if mask_kind in ("padding", "left_padding", "both"):
        padding = _padding(batch, n, [n, 8, 5], left=mask_kind == "left_padding")
    causal = mask_kind not in ("padding", "left_padding")
    kwargs = {"src_key_padding_mask": padding}
    if mask_kind == "causal_mask":
        kwargs["src_mask"] = nn.Transformer.generate_square_subsequent_mask(n, dtype=x.dtype)
    if mask_kind in ("is_causal", "both"):  # with the bool mask (the padding mask's type)
        kwargs["is_causal"] = True
        kwargs["src_mask"] = torch.ones(n, n, dtype=torch.bool).triu(1)
    for training in (True, False):
        layer.train(training)
        out = layer(x, **kwargs)
        expected = _manual_encoder_layer(layer, x, padding, causal)
        assert out.shape == x.shape
        assert (out - expected).abs().max() <= 1e-12
        with torch.no_grad():  # eval without gradients is where torch's fast path lives
            assert (layer(x, **kwargs) - expected).abs().max() <= 1e-12
    layer.train()
    layer.zero_grad()
    out = layer(x, **kwargs)
    (out**2).sum().backward()
    grads = {name: p.grad for name, p in layer.self_attn.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["layer.out_proj.weight"].abs().sum() > 0
    assert x.grad is not None and torch.isfinite(x.grad).all()
    if causal:  # the last position does not reach the first through attention
        x.grad = None
        layer(x, **kwargs).select(1 if batch_first else 0, 0).sum().backward()
        first = x.grad.select(1 if batch_first else 0, -1)
        assert first.abs().max() == 0


def test_inside_transformer_encoder_stack_and_its_nested_fast_path():
    torch.manual_seed(0)
    template = nn.TransformerEncoderLayer(D, H, 32, 0.0, batch_first=True, dtype=torch.float64)
    stack = nn.TransformerEncoder(template, 2)  # built around nn.MultiheadAttention
    for index, layer in enumerate(stack.layers):
        layer.self_attn = _adapter(True, seed=index)
    stack.eval()
    n = 12
    x = torch.randn(3, n, D, dtype=torch.float64)
    padding = _padding(3, n, [n, 9, 4])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: nested tensors are a prototype
        nested = stack(x, src_key_padding_mask=padding)  # packed into a nested tensor
    expected = x
    for layer in stack.layers:
        expected = _manual_encoder_layer(layer, expected, padding, False)
    real = ~padding
    assert (nested[real] - expected[real]).abs().max() <= 1e-12
    # built around the adapter: torch turns its nested-tensor path off (with a warning)
    with pytest.warns(UserWarning, match="_qkv_same_embed_dim"):
        rebuilt = nn.TransformerEncoder(stack.layers[0], 2)
    rebuilt.eval()
    with torch.no_grad():
        out = rebuilt(x, src_key_padding_mask=padding)
    expected = x
    for layer in rebuilt.layers:
        expected = _manual_encoder_layer(layer, expected, padding, False)
    assert (out - expected).abs().max() <= 1e-12


def test_from_config_takes_every_maha_field():
    config = maha.MAHAConfig(
        d_model=D, n_head=H, num_scales=2, ratio=3, window=5, strategy="convex", block_size=40
    )
    attn = maha.MAHAMultiheadAttention.from_config(config, batch_first=True)
    layer = attn.layer
    assert (layer.num_scales, layer.ratio, layer.window, layer.strategy) == (2, 3, 5, "convex")
    assert layer.causal and layer.max_length == 40 and attn.batch_first
    x = torch.randn(1, 10, D)
    out, _ = attn(x, x, x)
    y = x.clone()
    y[:, 6:] = torch.randn(1, 4, D)  # changing the future leaves the past unchanged
    assert torch.equal(attn(y, y, y)[0][:, :6], out[:, :6])
    with pytest.raises(TypeError, match="config must be a MAHAConfig"):
        maha.MAHAMultiheadAttention.from_config({"d_model": D})


def test_attributes_that_torch_reads():
    attn = _adapter(True)
    assert attn.embed_dim == D and attn.num_heads == H and attn.head_dim == D // H
    assert attn.in_proj_weight is None and attn.in_proj_bias is None
    assert attn._qkv_same_embed_dim is False
    assert attn.out_proj is attn.layer.out_proj
    # parameters are the wrapped layer's, counted once
    assert sum(p.numel() for p in attn.parameters()) == sum(
        p.numel() for p in attn.layer.parameters()
    )
    default = maha.MAHAMultiheadAttention(D, H)
    assert default.batch_first is False and not default.layer.causal


def test_bad_input():
    attn = _adapter(True)
    x = torch.randn(2, 8, D, dtype=torch.float64)
    other = x.clone()
    with pytest.raises(ValueError, match="cross-attention is not supported"):
        attn(x, other, other)
    with pytest.raises(ValueError, match="cross-attention is not supported"):
        attn(x, x, other)
    with pytest.raises(TypeError, match="query must be a tensor"):
        attn([1.0], [1.0], [1.0])
    with pytest.raises(TypeError, match="need_weights must be a bool"):
        attn(x, x, x, need_weights=1)
    with pytest.raises(ValueError, match="query must be"):
        q = torch.randn(1, 2, 8, D)
        attn(q, q, q)
    with pytest.raises(ValueError, match="only 0 \\(keep\\) and -inf"):
        attn(x, x, x, key_padding_mask=torch.full((2, 8), -1.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="attn_mask must be None or the causal mask"):
        attn(x, x, x, attn_mask=torch.zeros(8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="attn_mask must have shape"):
        attn(x, x, x, attn_mask=torch.ones(4, 8, 8, dtype=torch.bool).triu(1))
    with pytest.raises(ValueError, match="add_bias_kv must be False"):
        maha.MAHAMultiheadAttention(D, H, 0.0, True, True)
    with pytest.raises(ValueError, match="add_zero_attn must be False"):
        maha.MAHAMultiheadAttention(D, H, add_zero_attn=True)
    with pytest.raises(ValueError, match="kdim must be None or embed_dim"):
        maha.MAHAMultiheadAttention(D, H, kdim=8)
    with pytest.raises(ValueError, match="dropout must be a number"):
        maha.MAHAMultiheadAttention(D, H, dropout=1.5)
    with pytest.raises(TypeError, match="batch_first must be a bool"):
        maha.MAHAMultiheadAttention(D, H, batch_first="yes")
    with pytest.raises(ValueError, match="d_model must be divisible"):
        maha.MAHAMultiheadAttention(D, 3)
