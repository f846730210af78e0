"""The fused kernels pinned to the plain compositions they replace.

- ``maha.fusion_ops``: the chunked Gram matrices, utility scores and mix, read from
  the per-scale outputs without building the stack, equal the same products of the
  stack built by ``maha.scales.upsample`` (values and gradients, float64), for
  causal and non-causal geometry, several ratios and lengths, padding, one chunk
  and many chunks.
- ``maha.attention.local_attention``: one chunk of query blocks equals many, it
  passes ``gradcheck``, and the compact window bias equals the mask built
  position by position (values and gradients against dense masked attention:
  ``tests/maha/test_maha_layer.py``).
- ``maha.decomposition._DepthwiseBlocks``: the in-place depthwise level equals the
  broadcast product and sum it replaces.
"""

from __future__ import annotations

import pytest
import torch

import maha.fusion_ops as fops
from maha.attention import local_attention
from maha.blocked import window_bias as _window_bias
from maha.fusion_ops import game_features, mix, scale_rows, stack_scales
from maha.scales import scale_lengths, upsample


def _outs(n, L, r, *, batch=2, heads=2, dh=3, seed=0, has_keys=False):
    gen = torch.Generator().manual_seed(seed)
    lengths = scale_lengths(n, L, r)
    outs = [
        torch.randn(batch, m, heads, dh, dtype=torch.float64, generator=gen, requires_grad=True)
        for m in lengths
    ]
    keys = [None] * L
    if has_keys:
        keys = [torch.rand(batch, m, generator=gen) > 0.3 for m in lengths]
    return outs, keys


def _reference_stack(outs, keys, n, r, causal):
    ups, presents = [], []
    for l, (out, key) in enumerate(zip(outs, keys)):
        if key is not None:
            out = out.masked_fill(~key[:, :, None, None], 0.0)
        up, present = upsample(out, key, n, r**l, causal=causal)
        ups.append(up)
        presents.append(present)
    return torch.stack(ups, dim=3), torch.stack(presents, dim=-1)


GEOMETRY = [
    (1, 1, 2),
    (1, 3, 2),
    (2, 3, 2),
    (7, 3, 2),
    (9, 4, 2),
    (64, 4, 2),
    (65, 4, 2),
    (100, 3, 3),
    (257, 4, 2),
    (50, 2, 5),
]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("n", "L", "r"), GEOMETRY)
@pytest.mark.parametrize("chunk", [1, 1 << 18])
def test_chunked_features_and_mix_equal_the_stack(n, L, r, causal, chunk, monkeypatch):
    """Values and gradients of (s, G, y) equal those computed on the upsampled stack."""
    monkeypatch.setattr(fops, "_CHUNK_ELEMENTS", chunk)  # 1: one coarsest block per chunk
    outs, keys = _outs(n, L, r, has_keys=n > 5, seed=n)
    gen = torch.Generator().manual_seed(1)
    u = torch.randn(2, L, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.rand(2, n, 2, L, dtype=torch.float64, generator=gen, requires_grad=True)
    rows, present = scale_rows(outs, keys, n, r, causal=causal)
    F = r ** (L - 1)  # every interior chunk boundary is a block boundary of every scale
    assert rows.chunks[0][0] == 0 and rows.chunks[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(rows.chunks, rows.chunks[1:]))
    assert all((lo + causal) % F == 0 and lo > 0 for lo, _ in rows.chunks[1:])
    if chunk == 1:  # one coarsest block per chunk
        assert all(hi - lo <= F for lo, hi in rows.chunks)
    s, G = game_features(rows, u)
    y = mix(rows, w)

    stack, ref_present = _reference_stack(outs, keys, n, r, causal)
    assert torch.equal(present, ref_present)
    torch.testing.assert_close(stack_scales(rows), stack, rtol=0, atol=0)
    ref_s = (stack * u).sum(-1)
    ref_G = stack @ stack.transpose(-1, -2)
    ref_y = (w.unsqueeze(-1) * stack).sum(-2)
    torch.testing.assert_close(s, ref_s, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(G, ref_G, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(y, ref_y, rtol=1e-13, atol=1e-13)

    cot = [torch.randn_like(t, generator=gen) for t in (s, G, y)]
    inputs = [*outs, u, w]
    ours = torch.autograd.grad([s, G, y], inputs, cot)
    theirs = torch.autograd.grad([ref_s, ref_G, ref_y], inputs, cot)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_fusion_ops_gradcheck(causal):
    outs, keys = _outs(11, 3, 2, batch=1, heads=1, dh=2, has_keys=True, seed=3)
    u = torch.randn(1, 3, 2, dtype=torch.float64, requires_grad=True)
    w = torch.rand(1, 11, 1, 3, dtype=torch.float64, requires_grad=True)

    def f(u, w, *outs):
        rows, _ = scale_rows(outs, keys, 11, 2, causal=causal)
        s, G = game_features(rows, u)
        return s, G, mix(rows, w)

    assert torch.autograd.gradcheck(f, (u, w, *outs))
    assert torch.autograd.gradgradcheck(lambda *a: f(*a)[1], (u, w, *outs))


def test_stack_input_equals_rows_input():
    """ScaleFusion accepts the stack itself; the result equals the per-scale path."""
    import maha

    torch.manual_seed(0)
    layer = maha.MAHAAttention(8, 2, 3, 2, 4, "nash", True, dtype=torch.float64)
    outs, keys = _outs(21, 3, 2, batch=2, heads=2, dh=4, seed=5)
    rows, present = scale_rows(outs, keys, 21, 2, causal=True)
    a = layer.fusion(rows, present)
    b = layer.fusion(stack_scales(rows), present)
    torch.testing.assert_close(a.output, b.output, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a.diagnostics.weights, b.diagnostics.weights)


def test_small_stack_is_read_directly_and_equals_the_chunked_kernels(monkeypatch):
    """A stack in one chunk (a streamed position) skips the chunk buffers: same values, grads."""
    outs, keys = _outs(5, 3, 2, batch=1, heads=2, dh=3, seed=7)
    stack = stack_scales(scale_rows(outs, keys, 5, 2, causal=True)[0]).detach()  # (1, 5, 2, 3, 3)
    stack.requires_grad_(True)
    u = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(1, 5, 2, 3, dtype=torch.float64, requires_grad=True)

    def f(u, w, stack):
        rows = fops.ScaleRows.from_stack(stack)
        return (*game_features(rows, u), mix(rows, w))

    assert fops.ScaleRows.from_stack(stack).small_stack() is stack
    direct = f(u, w, stack)
    grads = torch.autograd.grad([t.sum() for t in direct], (u, w, stack))
    assert torch.autograd.gradcheck(f, (u, w, stack))
    monkeypatch.setattr(fops, "_CHUNK_ELEMENTS", 1)  # one position per chunk
    assert fops.ScaleRows.from_stack(stack).small_stack() is None
    chunked = f(u, w, stack)
    for a, b in zip(direct, chunked):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads, torch.autograd.grad([t.sum() for t in chunked], (u, w, stack))):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_local_attention_one_chunk_equals_many(causal, padded, monkeypatch):
    import maha.blocked as blocked

    gen = torch.Generator().manual_seed(11)
    q, k, v = (
        torch.randn(2, 3, 53, 4, dtype=torch.float64, generator=gen, requires_grad=True)
        for _ in range(3)
    )
    valid = torch.rand(2, 53, generator=gen) > 0.2 if padded else None
    cot = torch.randn(2, 3, 53, 4, dtype=torch.float64, generator=gen)
    results = []
    for chunk in (1, 1 << 18):  # one query block per chunk, then all blocks in one
        monkeypatch.setattr(blocked, "CHUNK_ELEMENTS", chunk)
        out, _ = local_attention(q, k, v, 5, causal=causal, valid=valid)
        results.append((out, *torch.autograd.grad(out, (q, k, v), cot)))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_local_attention_gradcheck(causal, padded):
    gen = torch.Generator().manual_seed(7)
    q, k, v = (
        torch.randn(1, 2, 10, 3, dtype=torch.float64, generator=gen, requires_grad=True)
        for _ in range(3)
    )
    valid = torch.rand(1, 10, generator=gen) > 0.3 if padded else None

    def f(q, k, v):
        return local_attention(q, k, v, 3, causal=causal, valid=valid)[0]

    assert torch.autograd.gradcheck(f, (q, k, v))


def _window_mask(nb, w, span, n, causal):
    """The allowed (query, key slot) pairs of the blocked layout, position by position."""
    qpos = torch.arange(nb * w).view(nb, w, 1)  # query j of block i at i w + j
    kpos = (torch.arange(nb) * w - w).view(nb, 1, 1) + torch.arange(span)  # slot m: i w - w + m
    rel = qpos - kpos
    allowed = (rel >= 0) & (rel < w) if causal else rel.abs() < w
    return allowed & (kpos >= 0) & (kpos < n)  # (nb, w, S)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("w", [1, 2, 3, 5, 8, 64])
def test_window_bias_equals_positional_mask(causal, w):
    for n in [1, 2, 3, w - 1, w, w + 1, 2 * w + 3, 5 * w, 130]:
        if n < 1:
            continue
        nb = -(-n // w)
        span = (2 if causal else 3) * w
        allowed = _window_mask(nb, w, span, n, causal)
        expected = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))
        assert torch.equal(_window_bias(nb, w, span, n, causal, "cpu", torch.float32), expected)


@pytest.mark.parametrize("ratio", [2, 3])
@pytest.mark.parametrize("bias", [False, True])
def test_depthwise_decomposition_equals_broadcast_product(ratio, bias, monkeypatch):
    """The in-place depthwise level equals ``(blocks * w).sum(2) + b``, values and gradients,
    with one chunk or many in the weight-gradient reduction."""
    import maha.decomposition as decomposition
    from maha.decomposition import _DepthwiseBlocks

    gen = torch.Generator().manual_seed(ratio)
    blocks = torch.randn(2, 9, ratio, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(ratio, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, generator=gen, requires_grad=True) if bias else None
    expected = (blocks * weight).sum(2) + (0 if b is None else b)
    cot = torch.randn(expected.shape, dtype=torch.float64, generator=gen)
    inputs = [t for t in (blocks, weight, b) if t is not None]
    theirs = torch.autograd.grad(expected, inputs, cot)
    for chunk in (1, 1 << 18):
        monkeypatch.setattr(decomposition, "_CHUNK_ELEMENTS", chunk)
        out = _DepthwiseBlocks.apply(blocks, weight, b)
        torch.testing.assert_close(out, expected, rtol=1e-14, atol=1e-14)
        for a, t in zip(torch.autograd.grad(out, inputs, cot), theirs):
            torch.testing.assert_close(a, t, rtol=1e-13, atol=1e-13)
    assert torch.autograd.gradcheck(lambda *a: _DepthwiseBlocks.apply(*a), (blocks, weight, b))


def test_fusion_rejects_bad_inputs_by_name():
    import maha

    fusion = maha.MAHAAttention(8, 2, 3, 2, 4, "nash", True).fusion
    present = torch.ones(1, 5, 3, dtype=torch.bool)
    with pytest.raises(TypeError, match="o must be a tensor"):
        fusion([torch.zeros(1, 5, 2, 4)], present)
    with pytest.raises(ValueError, match=r"o must be a floating stack of shape \(batch, length, 2"):
        fusion(torch.zeros(1, 5, 2, 4, 4), present)  # 4 scales for a 3-scale fusion
    with pytest.raises(ValueError, match="present must have shape"):
        fusion(torch.zeros(1, 5, 2, 3, 4), present[:, :4])
    with pytest.raises(TypeError, match="present must be a bool tensor"):
        fusion(torch.zeros(1, 5, 2, 3, 4), present.float())
