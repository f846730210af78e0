"""Rotary position embeddings (:mod:`maha.rotary`) and the layers that use them.

The rotation is pinned to its definition (relative scores, norms, a tensor start ==
an int start) and the layers with ``rotary=True`` to their own other paths:
streaming == parallel for every chunking, causality, left padding == the unpadded
sequence, and the block index of scale ``l`` as the rotation (a dense reference of
one coarse scale).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import maha
from maha.attention import MultiscaleAttention
from maha.rotary import apply_rotary, rotary_angles, rotate_queries_keys

F64 = torch.float64


def _rot(t, p):
    return apply_rotary(t.unsqueeze(0), p).squeeze(0)


@settings(max_examples=40, deadline=None)
@given(p=st.integers(0, 5000), s=st.integers(0, 5000), seed=st.integers(0, 2**16))
def test_scores_depend_on_the_offset_alone(p, s, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 1, 16, generator=g, dtype=F64)
    lhs = (_rot(q, p) * _rot(k, s)).sum()
    rhs = (q * _rot(k, s - p if s >= p else 0)).sum() if s >= p else (_rot(q, p - s) * k).sum()
    assert abs(float(lhs - rhs)) <= 1e-9 * (1 + abs(float(lhs)))
    # a rotation keeps the norm
    assert abs(float(_rot(q, p).norm() - q.norm())) <= 1e-12 * float(q.norm())


def test_position_zero_is_the_identity_and_a_tensor_start_is_an_int_start():
    t = torch.randn(2, 3, 7, 8, dtype=F64)
    assert torch.equal(apply_rotary(t[:, :, :1]), t[:, :, :1])
    assert torch.equal(apply_rotary(t, 11), apply_rotary(t, torch.tensor([[11]])))
    # rows are positions start, start + 1, ...: row i of start 0 is row 0 of start i
    assert torch.allclose(apply_rotary(t, 0)[:, :, 5:6], apply_rotary(t[:, :, 5:6], 5))
    cos, sin = rotary_angles(3, 4, 8, dtype=torch.bfloat16, device=t.device)
    assert cos.dtype == torch.bfloat16 and cos.shape == (4, 4)
    ref = torch.cos(torch.tensor(6.0) * 10000.0 ** (-torch.arange(4) / 4.0))  # position 6
    assert torch.allclose(cos[3].float(), ref, atol=1e-2)


def test_queries_and_keys_share_one_set_of_angles():
    q, k = torch.randn(2, 2, 3, 9, 8, dtype=F64)
    rq, rk = rotate_queries_keys(q, k, 4)
    assert torch.equal(rq, apply_rotary(q, 4)) and torch.equal(rk, apply_rotary(k, 4))


def test_odd_head_width_is_refused():
    with pytest.raises(ValueError, match="even last dimension"):
        apply_rotary(torch.randn(1, 2, 3, 5))
    with pytest.raises(ValueError, match="even head width"):
        maha.MAHAConfig(d_model=12, n_head=4, rotary=True)
    with pytest.raises(ValueError, match="even head width"):
        maha.StandardAttention(12, 4, rotary=True)
    with pytest.raises(TypeError, match="rotary must be a bool"):
        maha.MAHAConfig(rotary=1)
    with pytest.raises(TypeError, match="rotary must be a bool"):
        MultiscaleAttention(16, 2, rotary="yes")


def test_coarse_scale_rotates_by_its_block_index():
    """Scale l's attention == dense attention of rotated Q_l, K_l at positions 0..n_l-1."""
    torch.manual_seed(0)
    att = MultiscaleAttention(16, 2, num_scales=2, window=None, rotary=True).double()
    x = [torch.randn(2, 12, 16, dtype=F64), torch.randn(2, 6, 16, dtype=F64)]
    v = [torch.randn(2, 12, 16, dtype=F64), torch.randn(2, 6, 16, dtype=F64)]
    out = att(x, v, causal=True)
    q, k = (t.view(2, 6, 2, 8).transpose(1, 2) for t in att.qk[1](x[1]).chunk(2, -1))
    pos = torch.arange(6, dtype=F64)
    inv = 10000.0 ** (-torch.arange(4, dtype=F64) / 4.0)
    ang = pos[:, None] * inv
    cos, sin = ang.cos(), ang.sin()

    def rot(t):
        a, b = t[..., :4], t[..., 4:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin], -1)

    scores = rot(q) @ rot(k).transpose(-1, -2) / 8**0.5  # (B, H, 6, 6)
    scores = scores.masked_fill(torch.ones(6, 6, dtype=torch.bool).triu(1), float("-inf"))
    ref = scores.softmax(-1) @ v[1].view(2, 6, 2, 8).transpose(1, 2)  # (B, H, 6, d_h)
    assert torch.allclose(out[1][0], ref.transpose(1, 2), atol=1e-12)


def _model(variant, **changes):
    torch.manual_seed(0)
    config = maha.MAHAConfig(
        vocab_size=40, block_size=96, n_layer=2, n_head=2, d_model=16, num_scales=3,
        window=4, rotary=True, **changes,
    )  # fmt: skip
    return maha.build_model(variant, config).double().eval()


@pytest.mark.parametrize("variant", ["maha-nash", "maha-softmax", "local", "full"])
@settings(max_examples=6, deadline=None)
@given(cuts=st.lists(st.integers(1, 13), min_size=1, max_size=6))
def test_streaming_equals_parallel_with_rotary(variant, cuts):
    model = _model(variant)
    idx = torch.randint(0, 40, (2, 45), generator=torch.Generator().manual_seed(len(cuts)))
    with torch.no_grad():
        parallel = model(idx)
        cache = model.init_cache(2)
        outs, p = [], 0
        for c in [*cuts, 45]:
            if p >= 45:
                break
            outs.append(model(idx[:, p : p + c], cache=cache))
            p += c
    assert float((torch.cat(outs, 1)[:, :45] - parallel).abs().max()) <= 1e-10


@pytest.mark.parametrize("variant", ["maha-nash", "full"])
def test_rotary_models_are_causal_and_padding_free(variant):
    model = _model(variant)
    idx = torch.randint(0, 40, (2, 40), generator=torch.Generator().manual_seed(7))
    changed = idx.clone()
    changed[:, 25:] = (changed[:, 25:] + 1) % 40
    with torch.no_grad():
        a, b = model(idx), model(changed)
        assert float((a[:, :25] - b[:, :25]).abs().max()) == 0.0
        assert float((a[:, 25:] - b[:, 25:]).abs().max()) > 1e-6
        # left padding: each row equals its unpadded sequence at the real positions
        kpm = torch.zeros(2, 40, dtype=torch.bool)
        kpm[1, :9] = True
        padded = model(idx, key_padding_mask=kpm)
        assert float((padded[1, 9:] - model(idx[1:, 9:])[0]).abs().max()) <= 1e-10
        plain = maha.build_model(variant, model.config.replace(rotary=False)).double()
        plain.load_state_dict(model.state_dict())  # no new parameter, the same checkpoint
        assert float((plain.eval()(idx) - a).abs().max()) > 1e-6
