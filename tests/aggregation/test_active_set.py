"""The active-set engine (aggregation.scale.active_set), phase by phase, for both problems.

Each phase is pinned to a dense reference (torch.linalg on the support system,
autograd on the KKT function) and the whole engine to the support enumeration;
``bordered=False`` is the scale game's LCP, ``bordered=True`` the simplex QP.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings

from aggregation.implicit_diff import implicit_root, jacobian_rows
from aggregation.scale.active_set import (
    active_set,
    attach_kkt,
    certify_chunk,
    enumerate_supports,
    fused_backward,
    initial_support,
    kkt_jacobian,
    kkt_optimality,
    kkt_residual,
    pivot,
    slack,
    solve_support,
    support_solve_graph,
    sym,
    violations,
)
from aggregation.simplex import all_supports
from aggregation.testing.strategies import scale_game_params, simplex_qps

D = torch.float64
BOTH = pytest.mark.parametrize("bordered", [False, True])


def _problems(L: int, B: int, bordered: bool, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``a (B, L)`` and a positive definite ``M (B, L, L)`` (symmetric for the QP)."""
    g = torch.Generator().manual_seed(seed)
    R = torch.randn(B, L, L, generator=g, dtype=D)
    M = R @ R.mT / L + 0.3 * torch.eye(L, dtype=D)
    if not bordered:
        M = M + 0.2 * (R - R.mT)  # the scale game: not symmetric, still a P-matrix
    return torch.randn(B, L, generator=g, dtype=D), M


def _soa(a: torch.Tensor, M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return a.T.contiguous(), M.permute(1, 2, 0).contiguous()


def _dense_candidate(a, M, S, bordered):
    """The KKT point of support ``S`` (B, L) by ``torch.linalg.solve`` on the subsystem."""
    xs, nus = [], []
    for b in range(a.shape[0]):
        idx = S[b].nonzero().squeeze(-1)
        k = idx.numel()
        x = torch.zeros(a.shape[1], dtype=D)
        if bordered:
            K = torch.zeros(k + 1, k + 1, dtype=D)
            K[:k, :k] = M[b][idx][:, idx]
            K[:k, k] = 1
            K[k, :k] = 1
            sol = torch.linalg.solve(K, torch.cat([a[b, idx], torch.ones(1, dtype=D)]))
            x[idx], nu = sol[:k], sol[k]
        else:
            x[idx] = torch.linalg.solve(M[b][idx][:, idx], a[b, idx])
            nu = torch.zeros((), dtype=D)
        xs.append(x)
        nus.append(nu)
    return torch.stack(xs), torch.stack(nus)


def _effective(a, M, present):
    """The scale game's effective game (as ``ScaleGame.effective``): absent players sit out."""
    both = present.unsqueeze(-1) & present.unsqueeze(-2)
    eye = torch.eye(a.shape[-1], dtype=D)
    return torch.where(present, a, -1.0), torch.where(both, M, eye)


# ------------------------------------------------------------------ phases
def test_initial_support():
    a = torch.tensor([[1.0, -1.0, 0.0, 2.0]], dtype=D).T  # (L, n=1)
    present = torch.tensor([[True, True, True, False]]).T
    assert initial_support(a, None, False)[:, 0].tolist() == [True, False, False, True]
    assert initial_support(a, present, False)[:, 0].tolist() == [True, False, False, False]
    assert initial_support(a, present, True)[:, 0].tolist() == [True, True, True, False]
    assert initial_support(a, None, True).all()


@BOTH
@pytest.mark.parametrize("L", [1, 3, 5])
def test_solve_support_equals_dense_solve(bordered, L):
    a, M = _problems(L, 7, bordered, seed=L)
    S = torch.rand(7, L, generator=torch.Generator().manual_seed(1)) < 0.6
    S[:, 0] = True  # a nonempty support (the QP needs one)
    aT, MT = _soa(a, M)
    rtol = float(torch.finfo(D).eps) ** 0.5
    x, nu, bad = solve_support(MT, aT, S.T.to(D), rtol, bordered)
    x_ref, nu_ref = _dense_candidate(a, M, S, bordered)
    assert not bad.any()
    torch.testing.assert_close(x.T, x_ref, atol=1e-10, rtol=0)
    assert (x.T[~S] == 0).all()  # exactly zero off the support
    if bordered:
        torch.testing.assert_close(nu, nu_ref, atol=1e-10, rtol=0)
    else:
        assert nu is None
    full, nu_full, _ = solve_support(MT, aT, None, rtol, bordered)  # None: every coordinate
    x_all, _ = _dense_candidate(a, M, torch.ones_like(S), bordered)
    torch.testing.assert_close(full.T, x_all, atol=1e-10, rtol=0)


def test_solve_support_flags_a_singular_support():
    M = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[2.0, 0.0], [0.0, 1.0]]], dtype=D)
    a = torch.ones(2, 2, dtype=D)
    aT, MT = _soa(a, M)
    _, _, bad = solve_support(MT, aT, torch.ones(2, 2, dtype=D), 1e-8, False)
    assert bad.tolist() == [True, False]


@BOTH
def test_slack_equals_dense_and_is_batch_invariant(bordered):
    a, M = _problems(4, 9, bordered)
    x = torch.randn(9, 4, dtype=D)
    nu = torch.randn(9, dtype=D) if bordered else None
    aT, MT = _soa(a, M)
    w = slack(MT, x.T.contiguous(), aT, nu)
    ref = (M @ x.unsqueeze(-1)).squeeze(-1) - a + (nu.unsqueeze(-1) if bordered else 0)
    torch.testing.assert_close(w.T, ref, atol=1e-12, rtol=0)
    for b in (0, 5):  # one element alone: the same bits
        alone = slack(
            MT[:, :, b : b + 1],
            x[b : b + 1].T,
            aT[:, b : b + 1],
            None if nu is None else nu[b : b + 1],
        )
        assert torch.equal(alone[:, 0], w[:, b])


@BOTH
def test_violations_flag_exactly_the_infeasible_signs(bordered):
    # element 0: x_1 < 0 in S; element 1: w_2 < 0 off S; element 2: feasible;
    # element 3: w_2 < 0 off S but coordinate 2 absent
    S = torch.tensor([[1, 1, 0], [1, 1, 0], [1, 1, 0], [1, 1, 0]], dtype=torch.bool).T
    x = torch.tensor(
        [[0.5, -0.2, 0.0], [0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.5, 0.5, 0.0]], dtype=D
    ).T
    w = torch.tensor(
        [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0], [0.0, 0.0, -1.0]], dtype=D
    ).T
    present = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 0]], dtype=torch.bool).T
    nu = torch.zeros(4, dtype=D) if bordered else None
    scales = (torch.ones(4, dtype=D), torch.ones(4, dtype=D))
    viol = violations(S, x, w, nu, present, scales, 64 * float(torch.finfo(D).eps))
    assert viol.T.tolist() == [
        [False, True, False],
        [False, False, True],
        [False, False, False],
        [False, False, False],
    ]


def test_pivot_block_then_least_index():
    S = torch.tensor([[1, 0, 1, 0]], dtype=torch.bool).T
    viol = torch.tensor([[0, 1, 1, 1]], dtype=torch.bool).T
    assert pivot(S, viol, 1)[:, 0].tolist() == [True, True, False, True]  # every violator
    assert pivot(S, viol, 3)[:, 0].tolist() == [True, True, True, False]  # the first one only


# ------------------------------------------------------------------ the engine
def _lcp_best(a, M, present):
    """The certified LCP candidate of least regret among all supports (float64)."""
    supports = all_supports(a.shape[-1])

    def judge(Mc, ac, pc, S, x, nu, solved):
        x = x.clamp_min(0)
        w = (Mc.unsqueeze(1) @ x.unsqueeze(-1)).squeeze(-1) - ac.unsqueeze(1)
        ok = solved & (torch.where(S, x, w) >= -1e-9).all(-1)
        res = torch.where(ok, torch.minimum(x, w).abs().amax(-1), torch.inf)
        best = res.argmin(-1)
        return (x[torch.arange(x.shape[0]), best],)

    return enumerate_supports(M, a, present, supports, bordered=False, judge=judge)[0]


def _qp_best(a, Q, present):
    supports = all_supports(a.shape[-1])[1:]

    def judge(Qc, ac, pc, S, w, nu, solved):
        w = w.clamp_min(0)
        res = kkt_residual(Qc.unsqueeze(1), ac.unsqueeze(1), w, nu, pc.unsqueeze(1))
        res = torch.where(solved, res, torch.inf)
        best = res.argmin(-1)
        return (w[torch.arange(w.shape[0]), best],)

    return enumerate_supports(Q, a, present, supports, bordered=True, judge=judge)[0]


def _qp_judge(Q, a, p, w, nu, row_max):
    everyone = torch.ones((), dtype=torch.bool)
    res = kkt_residual(Q.permute(2, 0, 1), a.T, w.T, nu, everyone if p is None else p.T)
    return torch.isfinite(res), res


def _judge(bordered):
    return _qp_judge if bordered else certify_chunk(1e-9)


@BOTH
@pytest.mark.parametrize("L", [2, 4, 6])
def test_engine_equals_enumeration(bordered, L):
    a, M = _problems(L, 40, bordered, seed=10 + L)
    present = torch.rand(40, L, generator=torch.Generator().manual_seed(L)) < 0.8
    present[:, 0] = True
    if not bordered:  # the scale game's effective game: absent players sit out
        a, M = _effective(a, M, present)
    judge = _judge(bordered)
    x, nu, S, it, ok, *_ = active_set(M, a, present, 3 + 2 * L, bordered=bordered, judge=judge)
    assert ok.all()
    assert (S <= present).all() and (x[~present] == 0).all()
    ref = (_qp_best if bordered else _lcp_best)(a, M, present)
    torch.testing.assert_close(x, ref, atol=1e-10, rtol=0)
    if bordered:
        torch.testing.assert_close(x.sum(-1), torch.ones(40, dtype=D), atol=1e-12, rtol=0)


@settings(max_examples=25, deadline=None)
@given(p=scale_game_params(num_scales=4, batch_shape=(6,), masked=True))
def test_engine_solves_monotone_games(p):
    present = torch.ones_like(p.a, dtype=torch.bool) if p.mask is None else p.mask
    a, C = _effective(p.a, p.C, present)
    x, _, _, _, ok, regret, residual, converged, _ = active_set(
        C, a, present, 11, bordered=False, judge=certify_chunk(1e-9)
    )
    assert ok.all() and converged.all()
    w = (C @ x.unsqueeze(-1)).squeeze(-1) - a
    assert (x >= 0).all() and (w[present] >= -1e-9).all()
    assert (torch.minimum(x, w).abs() * present).amax() <= 1e-9


@settings(max_examples=25, deadline=None)
@given(qp=simplex_qps(num_scales=5, batch_shape=(6,)))
def test_engine_satisfies_the_qp_kkt_conditions(qp):
    w, nu, _, _, ok, res = active_set(qp.Q, qp.a, None, 13, bordered=True, judge=_qp_judge)
    assert ok.all() and (res <= 1e-9).all()
    everyone = torch.ones((), dtype=torch.bool)
    torch.testing.assert_close(kkt_residual(sym(qp.Q), qp.a, w, nu, everyone), res, atol=0, rtol=0)


@BOTH
def test_engine_is_batch_invariant(bordered):
    a, M = _problems(5, 33, bordered, seed=3)
    judge = _judge(bordered)
    full = active_set(M, a, None, 13, bordered=bordered, judge=judge)
    for b in (0, 17, 32):
        alone = active_set(M[b : b + 1], a[b : b + 1], None, 13, bordered=bordered, judge=judge)
        for f, s in zip(full, alone):
            assert torch.equal(f[b : b + 1], s)


@BOTH
def test_empty_batch(bordered):
    a, M = _problems(3, 0, bordered)
    judge = _judge(bordered)
    out = active_set(M, a, None, 9, bordered=bordered, judge=judge)
    assert out[0].shape == (0, 3) and out[2].shape == (0, 3) and out[4].shape == (0,)


# ------------------------------------------------------------------ gradients
def _solved(B, bordered, seed):
    """``a, M``, the solution ``x``, its support ``S`` and ``z`` (``x``; QP: ``(x, nu)``), L = 4."""
    a, M = _problems(4, B, bordered, seed=seed)
    x, nu, S, *_ = active_set(M, a, None, 11, bordered=bordered, judge=_judge(bordered))
    return a, M, x, S, torch.cat([x, nu.unsqueeze(-1)], -1) if bordered else x


@BOTH
def test_kkt_function_vanishes_and_jacobian_is_its_derivative(bordered):
    a, M, x, S, z = _solved(5, bordered, seed=7)
    F = kkt_optimality(S, bordered)
    torch.testing.assert_close(F(z, a, M), torch.zeros_like(z), atol=1e-12, rtol=0)
    J = kkt_jacobian(S, bordered)(z, a, M)
    torch.testing.assert_close(J, jacobian_rows(lambda z_: F(z_, a, M), z), atol=1e-12, rtol=0)


@BOTH
def test_fused_implicit_and_unrolled_gradients_agree(bordered):
    a, M, x, S, z = _solved(6, bordered, seed=5)
    v = torch.randn_like(z)
    if bordered:
        v[..., -1] = 0  # the unrolled solve returns x only
    valid = torch.ones(6, dtype=torch.bool)
    (ga, gM), ok = fused_backward(S, bordered)(z, v, a, M)
    assert ok.all()
    a_, M_ = a.clone().requires_grad_(), M.clone().requires_grad_()
    generic = implicit_root(
        kkt_optimality(S, bordered), z, (a_, M_), jacobian_fn=kkt_jacobian(S, bordered), valid=valid
    )
    g_generic = torch.autograd.grad((generic * v).sum(), (a_, M_))
    torch.testing.assert_close(ga, g_generic[0], atol=1e-10, rtol=0)
    torch.testing.assert_close(gM, g_generic[1], atol=1e-10, rtol=0)
    attached = attach_kkt(z, a_, M_, S, valid, "test", bordered=bordered)
    g_attached = torch.autograd.grad((attached * v).sum(), (a_, M_))  # the fused path
    torch.testing.assert_close(g_attached[0], ga, atol=0, rtol=0)
    unrolled = support_solve_graph(a_, M_, S, bordered)  # autograd through the support solve
    g_unrolled = torch.autograd.grad((unrolled * v[..., :4]).sum(), (a_, M_))
    torch.testing.assert_close(g_unrolled[0], ga, atol=1e-10, rtol=0)
    torch.testing.assert_close(g_unrolled[1], gM, atol=1e-10, rtol=0)
    torch.testing.assert_close(unrolled, x, atol=1e-12, rtol=0)
