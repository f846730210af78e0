"""The numba scale-game kernels (``lcp_kernel``) against the PyTorch phases of ``active_set``.

Both pivot the same way (block pivots, then Murty's rule) with the same arithmetic, and
certify the profile with the same formula: on monotone, masked, non-monotone, singular and
non-finite games, in float32 and float64, the profiles, supports, pivot counts, flags and
certificates are the same bits; so are the implicit gradients. The exact solver gives
bit-identical results (enumeration fallback included) with and without the kernels, the
kernels are taken where they apply, and torch's thread count is left alone.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings

from aggregation import ScaleGame, solve_scale_game
from aggregation.accel import use_numba
from aggregation.scale import active_set as AS
from aggregation.scale import lcp_kernel
from aggregation.scale.exact import pivot_lcp
from aggregation.small_linalg import outer_threads, serial_ops
from aggregation.testing import degenerate_scale_game_params, scale_game_params

pytest.importorskip("numba")


def _games(B, L, dtype, kind, seed):
    """``(C, a)``: ``B`` games of ``L`` players of one ``kind``."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "monotone":  # positive definite symmetric part, asymmetric C
        G = torch.randn(B, L, L, generator=gen, dtype=dtype)
        S = torch.randn(B, L, L, generator=gen, dtype=dtype).triu(1)
        C = G @ G.mT / L + 0.1 * torch.eye(L, dtype=dtype) + S - S.mT
    else:  # any C with a positive diagonal: several equilibria or none, singular supports
        C = torch.randn(B, L, L, generator=gen, dtype=dtype)
        C.diagonal(dim1=-2, dim2=-1).copy_(torch.rand(B, L, generator=gen, dtype=dtype) + 0.01)
        if L > 1:
            C[: B // 8, 1] = C[: B // 8, 0]  # two equal rows: singular supports
    a = torch.randn(B, L, generator=gen, dtype=dtype)
    a[B // 8 : B // 4, 0] = 0.0  # a player exactly indifferent to staying out
    if kind == "nonfinite":
        a[: B // 16] = float("nan")
        C[B // 16 : B // 8, 0, -1] = float("inf")
    return C, a


def _both(fn, *args):
    with use_numba(True):
        fast = fn(*args)
    with use_numba(False):
        slow = fn(*args)
    return fast, slow


def _assert_same_bits(fast, slow):
    for f, s in zip(fast, slow):
        assert f.dtype == s.dtype and f.shape == s.shape
        same = (f == s) | (f.isnan() & s.isnan()) if f.is_floating_point() else f == s
        assert bool(same.all()), f"{int((~same).sum())} entries differ"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("L", [1, 2, 4, 8])
@pytest.mark.parametrize("kind", ["monotone", "general", "nonfinite"])
@pytest.mark.parametrize("masked", [False, True])
def test_pivoting_and_certificate_equal_pytorch_bit_for_bit(dtype, L, kind, masked):
    C, a = _games(700, L, dtype, kind, seed=L)
    present = None
    if masked:
        present = torch.rand(700, L, generator=torch.Generator().manual_seed(1)) > 0.3
        present[:, 0] = True
    tol = 1e-5 if dtype == torch.float32 else 1e-9
    fast, slow = _both(pivot_lcp, C, a, present, 3 + 2 * L, tol)
    _assert_same_bits((*fast[:4], *fast[4]), (*slow[:4], *slow[4]))
    if kind == "monotone":
        assert bool(fast[3].all())  # a P-matrix: pivoting always resolves


def test_few_pivots_leave_games_unresolved_the_same_way():
    C, a = _games(500, 6, torch.float64, "general", seed=3)
    fast, slow = _both(pivot_lcp, C, a, None, 2, 1e-9)
    _assert_same_bits((*fast[:4], *fast[4]), (*slow[:4], *slow[4]))
    assert not bool(fast[3].all())  # two solves do not resolve every general game


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("L", [1, 3, 8])
def test_implicit_backward_equals_pytorch_bit_for_bit(dtype, L):
    C, a = _games(600, L, dtype, "general", seed=10 + L)
    x, S, *_ = pivot_lcp(C, a, None, 3 + 2 * L, 1e-6)
    S = S.clone()
    S[:7] = True  # full supports of games with two equal rows among them
    v = torch.randn(600, L, dtype=dtype, generator=torch.Generator().manual_seed(2))
    fused = AS.fused_backward(S, bordered=False)
    ((ga, gM), ok), ((ga0, gM0), ok0) = _both(fused, x, v, a, C)
    _assert_same_bits((ga, gM, ok), (ga0, gM0, ok0))


@settings(max_examples=40, deadline=None)
@given(params=scale_game_params(batch_shape=(9,), masked=True, dtype=torch.float32))
def test_exact_solver_is_the_same_with_and_without_the_kernels(params):
    a = params.a.clone().requires_grad_(True)
    C = params.C.clone().requires_grad_(True)
    g = torch.randn(a.shape, generator=torch.Generator().manual_seed(0))
    out = []
    for fast in (True, False):
        with use_numba(fast):
            res = solve_scale_game(ScaleGame(a, C, params.mask), method="exact")
            da, dC = torch.autograd.grad((res.weights * g).sum(), (a, C))
        out.append((res.x, res.weights, res.regret, res.converged, res.support, da, dC))
    _assert_same_bits(*out)
    assert bool(out[0][3].all())


@settings(max_examples=40, deadline=None)
@given(params=degenerate_scale_game_params(batch_shape=(7,)))
def test_degenerate_games_take_the_same_fallback_with_and_without_the_kernels(params):
    out = []
    for fast in (True, False):
        with use_numba(fast):
            res = solve_scale_game(ScaleGame(params.a, params.C, params.mask), method="exact")
        out.append((res.x, res.regret, res.converged, res.iterations, *res.info.values()))
    _assert_same_bits(*out)


def test_kernels_are_taken_where_they_apply(monkeypatch):
    calls = []
    real = lcp_kernel.pivot_certify
    monkeypatch.setattr(lcp_kernel, "pivot_certify", lambda *a: calls.append(1) or real(*a))
    C, a = _games(50, 3, torch.float32, "monotone", seed=0)
    pivot_lcp(C, a, None, 9, 1e-5)
    assert calls
    seen = len(calls)
    with use_numba(False):
        pivot_lcp(C, a, None, 9, 1e-5)
    assert len(calls) == seen
    assert lcp_kernel.applies(C, a)
    assert not lcp_kernel.applies(C.half(), a.half())
    assert not lcp_kernel.applies(C, a.double())  # one dtype for all
    assert not lcp_kernel.applies(torch.zeros(2, 3, 3, device="meta"), torch.zeros(2, 3))


def test_empty_batches():
    x, S, it, ok, *cert = lcp_kernel.pivot_certify(
        torch.zeros(0, 3, 3), torch.zeros(0, 3), None, 5, 1e-5
    )
    assert x.shape == (0, 3) and S.shape == (0, 3) and it.shape == (0,) and cert[0].shape == (0, 3)
    ga, gM, ok = lcp_kernel.kkt_backward(
        torch.zeros(0, 3, 3), torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, 3, dtype=bool)
    )
    assert ga.shape == (0, 3) and gM.shape == (0, 3, 3) and ok.shape == (0,)


def test_no_solve_is_refused():
    with pytest.raises(ValueError, match="max_iter"):
        lcp_kernel.pivot_certify(torch.eye(2).expand(3, 2, 2), torch.ones(3, 2), None, 0, 1e-5)


def test_outer_threads_sees_past_serial_ops():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with serial_ops():
            assert torch.get_num_threads() == 1
            assert outer_threads() == 2
            with serial_ops():
                assert outer_threads() == 2
        assert outer_threads() == 2 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


_THREADS_CODE = """
from aggregation import ScaleGame, solve_scale_game
a = torch.randn(300, 4, requires_grad=True)
C = torch.eye(4) * 2 + 0.1 * torch.randn(300, 4, 4)
solve_scale_game(ScaleGame(a, C), method="exact").x.sum().backward()
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_the_kernels_leave_torch_thread_count_as_it_was(threads, torch_threads_after):
    """In a fresh process: numba's OpenMP layer resets the count when it starts."""
    assert torch_threads_after(_THREADS_CODE, threads) == threads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [(), (0,), (7,), (3, 5)])
def test_effective_game_kernel_equals_the_where_path(dtype, batch, monkeypatch):
    """``ScaleGame.effective`` through the kernels gives the bits of the ``where`` path:
    values (NaN kept where present, replaced where absent) and gradients (the cotangents of
    the present entries, zero elsewhere, NaN cotangents of absent entries included), in a
    single and a double backward; a broadcast (not full-batch) mask takes the ``where`` path."""
    gen = torch.Generator().manual_seed(len(batch))
    L = 4
    a = torch.randn(*batch, L, dtype=dtype, generator=gen)
    C = torch.randn(*batch, L, L, dtype=dtype, generator=gen)
    mask = torch.rand(*batch, L, generator=gen) < 0.6
    if a.numel():
        a.view(-1)[0] = float("nan")
        C.view(-1)[1] = float("nan")
    ga = torch.randn(a.shape, dtype=dtype, generator=gen)
    gC = torch.randn(C.shape, dtype=dtype, generator=gen)
    if ga.numel():
        ga.view(-1)[-1] = float("nan")
    calls = []
    kernel = lcp_kernel.effective_game
    monkeypatch.setattr(
        lcp_kernel,
        "effective_game",
        lambda *t: calls.append(lcp_kernel.applies(*t[:2])) or kernel(*t),
    )
    results = []
    for fast in (True, False):
        ai, Ci = a.clone().requires_grad_(), C.clone().requires_grad_()
        with use_numba(fast):
            ae, Ce = ScaleGame(ai, Ci, mask, check_values=False).effective()
            grads = torch.autograd.grad((ae * ga).sum() + (Ce * gC).sum(), (ai, Ci))
            ae2, Ce2 = ScaleGame(ai, Ci, mask, check_values=False).effective()
            first = torch.autograd.grad((ae2 * ga).sum() + (Ce2 * gC).sum(), ai, create_graph=True)
        results.append((ae, Ce, *grads, first[0]))
    for fast, slow in zip(*results):
        torch.testing.assert_close(fast, slow, rtol=0, atol=0, equal_nan=True)
    assert calls == [True, True]  # the kernel ran for both games, with numba on
    if batch:  # a mask that broadcasts takes the where path, with the kernel's bits
        one = torch.tensor([[True, False, True, False]])
        calls.clear()
        broadcast = ScaleGame(a, C, one, check_values=False).effective()
        expanded = ScaleGame(a, C, one.expand(*batch, L).clone(), check_values=False).effective()
        assert calls == [True]
        for x, y in zip(broadcast, expanded):
            torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True)
