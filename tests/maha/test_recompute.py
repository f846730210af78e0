"""What the layer's autograd functions keep for backward, and that recomputing the rest is exact.

- ``maha.blocked._BlockedAttention`` saves no attention probabilities: it
  recomputes them chunk by chunk in backward. Its values and gradients equal plain
  autograd through ``softmax(Q K_S^T / sqrt(d_h) + bias) V_S`` built densely
  (float64), it passes ``gradcheck``, masked keys get exactly zero gradient, and
  one chunk equals many.
- ``maha.decomposition._DepthwiseChain`` saves only ``X_0`` and recomputes the
  other levels: values and gradients equal the level-by-level composition bit
  for bit, with and without padding masks and bias.
- ``maha.fusion_ops`` kernels keep the scale outputs only through
  ``save_for_backward``, so they are freed once the backward has run.
"""

from __future__ import annotations

import gc
import math
import weakref

import pytest
import torch

import maha.blocked as blocked
from maha.blocked import _BlockedAttention, _Geometry
from maha.blocked import window_bias as _window_bias
from maha.decomposition import HierarchicalDecomposition, _DepthwiseChain, downsample_valid
from maha.fused_cpu import use_fused_cpu
from maha.fusion_ops import game_features, mix, scale_rows


def _saved(fn):
    """Run ``fn()`` and return it with the tensors autograd saved meanwhile."""
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, saved


def _blocked_inputs(nb, w, causal, *, seed, extra_mask=True, batch=2, heads=2, dh=3):
    """``q, k, v`` ``(B, H, nb, w, d_h)`` float64 and a 0 / -inf bias ``(B, 1, nb, w, S)``.

    The bias is the window mask of ``nb w`` positions, with (``extra_mask``) random
    further keys masked; the key at the query's own position stays allowed, so
    every row has a key.
    """
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (
        torch.randn(batch, heads, nb, w, dh, dtype=torch.float64, generator=gen) for _ in range(3)
    )
    span = (2 if causal else 3) * w
    bias = _window_bias(nb, w, span, nb * w, causal, "cpu", torch.float64)  # (nb, w, S)
    bias = bias.expand(batch, nb, w, span).clone()
    if extra_mask:
        drop = torch.rand(batch, nb, w, span, generator=gen) < 0.3
        own = torch.arange(w).view(w, 1) + w == torch.arange(span)  # slot of the query itself
        bias = bias.masked_fill(drop & ~own, -math.inf)
    return q, k, v, bias.unsqueeze(1)  # bias: (B, 1, nb, w, S)


def _pack(q, k, v):
    """``q, k, v`` ``(B, H, nb, w, d_h)`` as the packed ``[Q | K]`` ``(B, n, 2 H d_h)`` and
    ``V`` ``(B, n, H d_h)`` that :class:`_BlockedAttention` reads (``n = nb w``)."""
    batch, heads, nb, w, dh = q.shape
    rows = [t.flatten(2, 3).transpose(1, 2) for t in (q, k, v)]  # (B, n, H, d_h)
    qk = torch.stack(rows[:2], dim=2).reshape(batch, nb * w, 2 * heads * dh)
    return qk, rows[2].reshape(batch, nb * w, heads * dh)


def _blocked(q, k, v, bias, offsets):
    """``_BlockedAttention`` on the blocks ``(B, H, nb, w, d_h)`` (packed as the layer packs
    them), its output as blocks again."""
    batch, heads, nb, w, dh = q.shape
    qk, v_rows = _pack(q, k, v)
    out = _BlockedAttention.apply(qk, v_rows, bias, heads, w, len(offsets))  # (B, H, n, d_h)
    return out.unflatten(2, (nb, w))


def _dense_reference(q, k, v, bias, offsets):
    """``softmax(Q_i K_S^T / sqrt(d_h) + bias_i) V_S`` by plain autograd ops only."""
    nb = q.shape[2]
    zero = torch.zeros_like(k[:, :, :1])

    def neighbours(t):
        groups = []
        for o in offsets:  # slot group o of block i holds block i + o (zeros outside)
            idx = [t[:, :, i + o : i + o + 1] if 0 <= i + o < nb else zero for i in range(nb)]
            groups.append(torch.cat(idx, dim=2))  # (B, H, nb, w, d_h)
        return torch.cat(groups, dim=3)  # (B, H, nb, S, d_h)

    scores = q @ neighbours(k).transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
    return torch.softmax(scores, dim=-1) @ neighbours(v)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk", [1, 1 << 18])
def test_blocked_attention_equals_dense_autograd_reference(causal, chunk, monkeypatch):
    """Values and gradients of the recomputing backward equal plain autograd (float64)."""
    monkeypatch.setattr(blocked, "CHUNK_ELEMENTS", chunk)  # 1: one block per chunk
    offsets = (-1, 0) if causal else (-1, 0, 1)
    q, k, v, bias = _blocked_inputs(5, 4, causal, seed=3)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    out = _blocked(q, k, v, bias, offsets)
    expected = _dense_reference(q, k, v, bias, offsets)
    torch.testing.assert_close(out, expected, rtol=1e-13, atol=1e-13)
    cot = torch.randn_like(out)
    ours = torch.autograd.grad(out, (q, k, v), cot)
    theirs = torch.autograd.grad(expected, (q, k, v), cot)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_blocked_attention_gradcheck(causal):
    offsets = (-1, 0) if causal else (-1, 0, 1)
    q, k, v, bias = _blocked_inputs(3, 2, causal, seed=5, batch=1)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    assert torch.autograd.gradcheck(lambda q, k, v: _blocked(q, k, v, bias, offsets), (q, k, v))


@pytest.mark.parametrize("causal", [False, True])
def test_masked_keys_get_exactly_zero_gradient(causal):
    """The output of one query row has gradient exactly 0 on every key it may not see."""
    offsets = (-1, 0) if causal else (-1, 0, 1)
    nb, w = 4, 3
    q, k, v, bias = _blocked_inputs(nb, w, causal, seed=9, batch=1, heads=1)
    k, v = k.requires_grad_(), v.requires_grad_()
    out = _blocked(q, k, v, bias, offsets)  # (1, 1, nb, w, d_h)
    span = len(offsets) * w
    for block in range(nb):
        for row in range(w):
            dk, dv = torch.autograd.grad(out[0, 0, block, row].sum(), (k, v), retain_graph=True)
            allowed = torch.zeros(nb * w, dtype=torch.bool)
            for slot in range(span):  # slot m of block i holds key position i w - w + m
                pos = block * w - w + slot
                if 0 <= pos < nb * w and not torch.isneginf(bias[0, 0, block, row, slot]):
                    allowed[pos] = True
            hidden = ~allowed.view(nb, w)
            assert torch.equal(dk[0, 0][hidden], torch.zeros_like(dk[0, 0][hidden]))
            assert torch.equal(dv[0, 0][hidden], torch.zeros_like(dv[0, 0][hidden]))
            assert dv[0, 0][~hidden].abs().sum() > 0  # the seen keys do get gradient


def test_blocked_attention_saves_no_probabilities():
    """Only the packed ``[Q | K]``, ``V`` (the caller's own tensors: no copy), the output and
    a bool mask are saved: nothing of the scores' size."""
    q, k, v, bias = _blocked_inputs(6, 4, True, seed=1)
    qk, v_rows = (t.requires_grad_() for t in _pack(q, k, v))
    span = bias.shape[-1]
    out, saved = _saved(lambda: _BlockedAttention.apply(qk, v_rows, bias, 2, 4, 2))
    assert not [t for t in saved if t.is_floating_point() and t.shape[-1] == span]
    assert {t.data_ptr() for t in saved} >= {qk.data_ptr(), v_rows.data_ptr()}
    assert sum(t.numel() * t.element_size() for t in saved) <= (
        4 * q.numel() * q.element_size() + bias.numel()
    )
    out.sum().backward()  # the recomputation runs from what was saved
    assert qk.grad is not None and torch.isfinite(qk.grad).all()


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("n", [1, 37, 64])
def test_depthwise_chain_equals_level_by_level(bias, padded, n):
    """One chain function == the levels composed one by one, bit for bit (values, gradients)."""
    gen = torch.Generator().manual_seed(n)
    dec = HierarchicalDecomposition(5, 4, 2, "conv", bias=bias).double()
    with torch.no_grad():
        dec.weight.copy_(torch.randn(dec.weight.shape, dtype=torch.float64, generator=gen))
        if dec.bias is not None:
            dec.bias.copy_(torch.randn(dec.bias.shape, dtype=torch.float64, generator=gen))
    x = torch.randn(2, n, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    valid = torch.rand(2, n, generator=gen) > 0.3 if padded else None
    with use_fused_cpu(False):  # the chain's own loops (its numba kernels: test_fused_cpu)
        ours = dec(x, valid)
    masks = None if valid is None else downsample_valid(valid, 4, 2)
    reference = [x if masks is None else x * masks[0].unsqueeze(-1).double()]
    for level in range(3):
        nxt = dec.level(reference[-1], level)
        reference.append(nxt if masks is None else nxt * masks[level + 1].unsqueeze(-1).double())
    assert all(torch.equal(a, b) for a, b in zip(ours, reference))
    cots = [torch.randn(t.shape, dtype=torch.float64, generator=gen) for t in ours]
    params = [x, *dec.parameters()]
    with use_fused_cpu(False):
        ours_grads = torch.autograd.grad(ours, params, cots)
    for a, b in zip(ours_grads, torch.autograd.grad(reference, params, cots)):
        assert torch.equal(a, b)


def test_depthwise_chain_gradcheck_and_saves_only_its_input():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 11, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(3, 2, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    masks = [torch.tensor([1.0, 1, 0, 1, 1, 1], dtype=torch.float64).view(1, 6, 1)]
    masks += [torch.ones(1, 3, 1, dtype=torch.float64), torch.ones(1, 2, 1, dtype=torch.float64)]
    for extra in ([], masks):
        assert torch.autograd.gradcheck(
            lambda x, w, b, extra=extra: _DepthwiseChain.apply(2, x, w, b, *extra),
            (x, weight, bias),
        )
    outs, saved = _saved(lambda: _DepthwiseChain.apply(2, x, weight, bias))
    levels = {o.data_ptr() for o in outs}
    assert not [t for t in saved if t.data_ptr() in levels]  # no level is kept


@pytest.mark.parametrize("kernel", ["mix", "game_features"])
def test_fusion_kernels_free_the_scale_outputs_after_backward(kernel):
    """The scale outputs are freed by the backward, not held by the graph until it dies."""
    gen = torch.Generator().manual_seed(0)
    outs = [
        torch.randn(1, m, 2, 3, generator=gen, requires_grad=True) for m in (16, 8, 4)
    ]  # (B, n_l, H, d_h)
    moved = [o * 1.0 for o in outs]  # non-leaf copies: only the graph may hold them
    rows, _ = scale_rows(moved, [None] * 3, 16, 2, causal=True)
    if kernel == "mix":
        y = mix(rows, torch.rand(1, 16, 2, 3, generator=gen))
    else:
        y = game_features(rows, torch.randn(2, 3, 3, generator=gen))[1]
    refs = [weakref.ref(t) for t in moved]
    del rows, moved
    y.sum().backward()  # y, and with it the graph, stays alive
    gc.collect()
    assert all(r() is None for r in refs)
    assert all(o.grad is not None for o in outs)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", [1, 3, 8, 13, 40])
def test_blockwise_bias_equals_the_full_bias(causal, n):
    """The layer's bias (one shared pattern) is ``_window_bias`` on every interior block and
    on the slots of each edge block that hold a key (the rest are ``-inf`` there); with it,
    values and gradients equal the full-bias path, and no bias of the (nb, w, S) size is
    saved."""
    offsets = (-1, 0) if causal else (-1, 0, 1)
    w, dh = 4, 3
    nb = -(-n // w)
    span = len(offsets) * w
    full = _window_bias(nb, w, span, n, causal, "cpu", torch.float64)
    blockwise = blocked.BlockBias.build(w, span, causal, "cpu", torch.float64)
    geometry = _Geometry(n, w, len(offsets))
    for lo, hi in geometry.chunks(2):  # interior blocks: exactly the shared pattern
        assert torch.equal(blockwise.rows(lo, hi), full[lo:hi])
    for i in geometry.edges():  # edge blocks: the pattern on the slots that hold keys
        rows, _, first, end = geometry.edge_rows(i)
        assert torch.equal(blockwise.pattern[:rows, first:end], full[i, :rows, first:end])
        assert torch.isneginf(full[i, :, :first]).all() and torch.isneginf(full[i, :, end:]).all()
    gen = torch.Generator().manual_seed(n)
    qk = torch.randn(2, n, 2 * 3 * dh, dtype=torch.float64, generator=gen).requires_grad_()
    v = torch.randn(2, n, 3 * dh, dtype=torch.float64, generator=gen).requires_grad_()
    groups = len(offsets)
    out, saved = _saved(lambda: _BlockedAttention.apply(qk, v, blockwise, 3, w, groups))
    assert not [t for t in saved if t.shape[-1] == span]
    ref = _BlockedAttention.apply(qk, v, full, 3, w, groups)
    assert torch.equal(out, ref)
    cot = torch.randn_like(out)
    ours = torch.autograd.grad(out, (qk, v), cot)
    theirs = torch.autograd.grad(ref, (qk, v), cot)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
