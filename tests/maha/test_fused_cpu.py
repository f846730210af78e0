"""The numba kernels of the layer (``maha.fused_cpu``) against the PyTorch loops.

Both paths of ``maha.fusion_ops`` compute the same scores, Gram matrices, mix and
gradients (of the scale outputs, the mixing weights and the utility directions ``u``):
values and gradients agree (float64 to rounding, float32 within 1e-5) on every geometry
(lengths that are not multiples of the block size, one to four scales, ratios 2 and 3,
causal or not, several batch rows and heads), the kernels are actually taken where they
apply, and a double backward (which they do not provide) falls back to the loops.

The decomposition chain's kernels (``chain_forward``, ``chain_backward``) equal
``maha.decomposition._DepthwiseChain``'s PyTorch loops likewise (levels, and the gradients
of the input, weights and biases), with and without bias and padding masks, for 2 to 5
scales, ratios 2 and 3 and lengths that leave partial blocks; the decomposition takes them
where they apply and falls back to the loops in a double backward.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import maha
from maha import fused_cpu
from maha.decomposition import HierarchicalDecomposition
from maha.fusion_ops import game_features, mix, scale_rows

pytest.importorskip("numba")


def _case(n, L, r, causal, dtype, batch=2, heads=3, dh=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lengths = [n]
    for _ in range(L - 1):
        lengths.append(-(-lengths[-1] // r))
    outs = [  # head-major storage, as the attention writes it: (B, n_l, H, d_h) views
        torch.randn(batch, heads, m, dh, dtype=dtype, generator=gen).transpose(1, 2)
        for m in lengths
    ]
    w = torch.rand(batch, n, heads, L, dtype=dtype, generator=gen)
    u = torch.randn(heads, L, dh, dtype=dtype, generator=gen)
    return outs, w, u


def _run(outs, w, u, n, r, causal, fused, create_graph=False):
    outs = [o.detach().requires_grad_() for o in outs]
    w = w.detach().requires_grad_()
    u = u.detach().requires_grad_()
    with fused_cpu.use_fused_cpu(fused):
        rows, _ = scale_rows(outs, [None] * len(outs), n, r, causal=causal)
        scores, gram = game_features(rows, u)
        y = mix(rows, w)
        gen = torch.Generator().manual_seed(7)
        loss = (gram * torch.randn(gram.shape, dtype=gram.dtype, generator=gen)).sum()
        loss = loss + (y * torch.randn(y.shape, dtype=y.dtype, generator=gen)).sum()
        loss = loss + (scores * torch.randn(scores.shape, dtype=y.dtype, generator=gen)).sum()
        grads = torch.autograd.grad(loss, [w, u, *outs], create_graph=create_graph)
    return [scores, gram, y, *grads]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    L=st.integers(1, 4),
    r=st.sampled_from([2, 3]),
    causal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_kernels_equal_the_pytorch_loops_float64(n, L, r, causal, seed):
    outs, w, u = _case(n, L, r, causal, torch.float64, seed=seed)
    ref = _run(outs, w, u, n, r, causal, fused=False)
    got = _run(outs, w, u, n, r, causal, fused=True)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_kernels_equal_the_pytorch_loops_float32(causal):
    outs, w, u = _case(300, 4, 2, causal, torch.float32, batch=1, heads=4, dh=64)
    ref = _run(outs, w, u, 300, 2, causal, fused=False)
    got = _run(outs, w, u, 300, 2, causal, fused=True)
    for a, b in zip(got, ref):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


def test_the_kernels_are_taken_where_they_apply(monkeypatch):
    calls = []
    for name in ("gram_forward", "gram_backward", "mix_forward", "mix_backward"):
        original = getattr(fused_cpu, name)
        monkeypatch.setattr(
            fused_cpu, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k)
        )
    outs, w, u = _case(17, 3, 2, True, torch.float64)
    _run(outs, w, u, 17, 2, True, fused=True)
    assert sorted(calls) == ["gram_backward", "gram_forward", "mix_backward", "mix_forward"]
    calls.clear()
    _run(outs, w, u, 17, 2, True, fused=False)
    assert calls == []
    many = fused_cpu.MAX_SCALES + 1  # more scales than the kernels take: the loops
    outs, w, u = _case(20, many, 2, False, torch.float64)
    _run(outs, w, u, 20, 2, False, fused=True)
    assert calls == []


def test_the_gram_backward_takes_the_mix_gradient_over(monkeypatch):
    """With a mix of the same rows, the mix's backward writes no output gradient: the
    Gram's kernel adds ``sum w dy`` to the rows in its pass (``maha.fusion_ops._MixLink``)."""
    seen = {}
    for name in ("gram_backward", "mix_backward"):
        original = getattr(fused_cpu, name)

        def record(*a, _f=original, _n=name, **k):
            seen[_n] = a[7] if _n == "gram_backward" and len(a) > 7 else k
            return _f(*a, **k)

        monkeypatch.setattr(fused_cpu, name, record)
    outs, w, u = _case(23, 3, 2, True, torch.float64)
    got = _run(outs, w, u, 23, 2, True, fused=True)
    assert seen["mix_backward"] == {"write_grads": False}
    assert seen["gram_backward"] is not None  # the (w, dy) term
    ref = _run(outs, w, u, 23, 2, True, fused=False)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def _partial(outs, w, u, fused, case):
    """Gradients of the scale outputs, ``w`` and ``u`` when the fusion's pieces are used
    in part: the mix alone, the Gram alone, a mix with weights that do not depend on the
    Gram, two mixes of the same rows."""
    n, r, causal = outs[0].shape[1], 2, True
    outs = [o.detach().requires_grad_() for o in outs]
    w = w.detach().requires_grad_()
    u = u.detach().requires_grad_()
    gen = torch.Generator().manual_seed(3)

    def dot(t):
        return (t * torch.randn(t.shape, dtype=t.dtype, generator=gen)).sum()

    with fused_cpu.use_fused_cpu(fused):
        rows, _ = scale_rows(outs, [None] * len(outs), n, r, causal=causal)
        if case == "mix only":
            loss = dot(mix(rows, w))
        elif case == "gram only":
            loss = dot(game_features(rows, u)[1])
        elif case == "mix unused":
            scores, gram = game_features(rows, u)
            mix(rows, w)
            loss = dot(scores) + dot(gram)
        elif case == "independent weights":
            _, gram = game_features(rows, u)
            loss = dot(mix(rows, w))
        elif case == "weights from the gram":
            scores, gram = game_features(rows, u)
            weights = torch.softmax(scores + gram.diagonal(dim1=-2, dim2=-1), -1)
            loss = dot(mix(rows, weights))
        else:  # two mixes: the second takes no link
            scores, gram = game_features(rows, u)
            loss = dot(mix(rows, w)) + dot(mix(rows, torch.softmax(scores, -1)))
        inputs = [*outs, w, u]
        grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]


@pytest.mark.parametrize(
    "case",
    [
        "mix only",
        "gram only",
        "mix unused",
        "independent weights",
        "weights from the gram",
        "two mixes",
    ],
)
def test_the_mix_link_holds_for_partial_uses(case):
    outs, w, u = _case(29, 3, 2, True, torch.float64)
    ref = _partial(outs, w, u, False, case)
    got = _partial(outs, w, u, True, case)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_double_backward_falls_back_to_the_loops():
    outs, w, u = _case(13, 3, 2, True, torch.float64)
    ref = _run(outs, w, u, 13, 2, True, fused=False, create_graph=True)
    got = _run(outs, w, u, 13, 2, True, fused=True, create_graph=True)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert got[3].requires_grad  # a graph of the gradient: the loops' backward ran


@pytest.mark.parametrize("strategy", ["nash", "softmax"])
def test_the_layer_with_and_without_kernels(strategy):
    torch.manual_seed(0)
    layer = maha.MAHAAttention(16, 2, 3, 2, 4, strategy, True).double()
    x = torch.randn(2, 37, 16, dtype=torch.float64, requires_grad=True)
    results = []
    for fused in (False, True):
        with fused_cpu.use_fused_cpu(fused):
            y = layer(x)
            (g,) = torch.autograd.grad(y.square().sum(), x)
        results.append((y, g))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_use_fused_cpu_takes_a_bool():
    with pytest.raises(TypeError, match="enabled must be a bool"):
        with fused_cpu.use_fused_cpu(1):
            pass


_THREADS_CODE = """
import maha
layer = maha.MAHAAttention(16, 2, 3, 2, 4, "nash", True)
layer(torch.randn(1, 40, 16, requires_grad=True)).sum().backward()  # numba starts its threads
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_the_kernels_leave_torch_thread_count_as_it_was(threads, torch_threads_after):
    """In a fresh process: numba's OpenMP layer resets the count when it starts."""
    assert torch_threads_after(_THREADS_CODE, threads) == threads


def _chain(dec, x, valid, fused, create_graph=False):
    """The levels of ``dec`` and the gradients of a fixed random loss (inputs, weights, bias)."""
    with fused_cpu.use_fused_cpu(fused):
        levels = dec(x, valid)[1:]
        gen = torch.Generator().manual_seed(3)
        loss = sum((t * torch.randn(t.shape, dtype=t.dtype, generator=gen)).sum() for t in levels)
        params = [x, *dec.parameters()]
        grads = torch.autograd.grad(loss, params, create_graph=create_graph)
    return [*levels, *grads]


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 70),
    L=st.integers(2, 5),
    r=st.sampled_from([2, 3]),
    bias=st.booleans(),
    padded=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_chain_kernels_equal_the_pytorch_loops(n, L, r, bias, padded, seed):
    gen = torch.Generator().manual_seed(seed)
    dec = HierarchicalDecomposition(7, L, r, "conv", bias=bias).double()
    with torch.no_grad():
        for p in dec.parameters():
            p.copy_(torch.randn(p.shape, dtype=torch.float64, generator=gen))
    x = torch.randn(2, n, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    valid = torch.rand(2, n, generator=gen) > 0.3 if padded else None
    ref = _chain(dec, x, valid, False)
    got = _chain(dec, x, valid, True)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_chain_kernels_float32_and_taken(monkeypatch):
    dec = HierarchicalDecomposition(64, 4, 2, "conv")
    x = torch.randn(3, 301, 64, requires_grad=True)
    valid = torch.rand(3, 301, generator=torch.Generator().manual_seed(0)) > 0.2
    ref = _chain(dec, x, valid, False)
    calls = []
    for name in ("chain_forward", "chain_backward"):
        original = getattr(fused_cpu, name)
        monkeypatch.setattr(
            fused_cpu, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k)
        )
    got = _chain(dec, x, valid, True)
    assert calls[:2] == ["chain_forward", "chain_backward"]  # (backward recomputes the levels)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_chain_double_backward_falls_back_to_the_loops():
    dec = HierarchicalDecomposition(5, 3, 2, "conv").double()
    x = torch.randn(1, 13, 5, dtype=torch.float64, requires_grad=True)
    ref = _chain(dec, x, None, False, create_graph=True)
    got = _chain(dec, x, None, True, create_graph=True)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert got[2].requires_grad  # the gradient of x has a graph: the loops' backward ran


def test_chain_kernels_take_a_strided_input():
    """A sequence-first input seen batch-first (a transposed view): the kernels read it
    through a contiguous copy and write a gradient of its shape, equal to the loops'."""
    dec = HierarchicalDecomposition(6, 3, 2, "conv").double()
    x = torch.randn(17, 2, 6, dtype=torch.float64).transpose(0, 1).requires_grad_()
    assert not x.is_contiguous()
    for a, b in zip(_chain(dec, x, None, True), _chain(dec, x, None, False)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
