"""Statement 7 (proofs/07_implicit_gradient.md): gradients on a fixed active support."""

from __future__ import annotations

import numpy as np
import torch
from _proof_reference import lcp_solve
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import ScaleGame, convex_aggregate, solve_scale_game
from aggregation.testing import planted_scale_games, simplex_qps

FAST = settings(max_examples=20, deadline=None)


def _closed_form(a: np.ndarray, C: np.ndarray, x: np.ndarray, v: np.ndarray):
    """(i)-(ii): VJP of <v, x*> with respect to a and C on the support of x."""
    S = np.flatnonzero(x > 0)
    grad_a = np.zeros_like(a)
    grad_C = np.zeros_like(C)
    if len(S):
        u = np.linalg.solve(C[np.ix_(S, S)].T, v[S])
        grad_a[S] = u
        grad_C[np.ix_(S, S)] = -np.outer(u, x[S])
    return grad_a, grad_C


def _fd(fn, z: np.ndarray, h: float) -> np.ndarray:
    """Central finite differences of a scalar function of an array."""
    out = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        e = np.zeros_like(z)
        e[idx] = h
        out[idx] = (fn(z + e) - fn(z - e)) / (2 * h)
    return out


@FAST
@given(planted_scale_games(st.integers(1, 4), strict=True, margin=0.2), st.data())
def test_closed_form_matches_finite_differences(game, data):
    a, C, x = game.a.numpy(), game.C.numpy(), game.x.numpy()
    v = np.asarray(data.draw(st.lists(st.floats(-1, 1), min_size=len(a), max_size=len(a))))
    grad_a, grad_C = _closed_form(a, C, x, v)
    h = 1e-6
    fd_a = _fd(lambda z: v @ lcp_solve(z, C), a, h)
    fd_C = _fd(lambda Z: v @ lcp_solve(a, Z), C, h)
    np.testing.assert_allclose(grad_a, fd_a, atol=1e-6)
    np.testing.assert_allclose(grad_C, fd_C, atol=1e-6)
    # Only a_S and C_SS matter to first order.
    N = x == 0
    assert np.all(grad_a[N] == 0) and np.all(grad_C[N, :] == 0) and np.all(grad_C[:, N] == 0)


@FAST
@given(planted_scale_games(st.integers(1, 5), strict=True, margin=0.2), st.floats(0.05, 3.0))
def test_fixed_point_ift_equals_support_formula(game, eta):
    a, C, x = game.a.numpy(), game.C.numpy(), game.x.numpy()
    L = len(a)
    P = np.diag((x > 0).astype(float))
    dT_dx = P @ (np.eye(L) - eta * C)  # (iii): T is affine near x*
    dT_da = eta * P
    system = np.eye(L) - dT_dx
    jac_ift = np.linalg.solve(system, dT_da)  # dx*/da by the IFT
    S = np.flatnonzero(x > 0)
    jac = np.zeros((L, L))
    if len(S):
        jac[np.ix_(S, S)] = np.linalg.inv(C[np.ix_(S, S)])
    np.testing.assert_allclose(jac_ift, jac, atol=1e-10)
    # I - dT/dx is invertible iff C_SS is: its determinant is eta^|S| det(C_SS).
    expected = eta ** len(S) * (np.linalg.det(C[np.ix_(S, S)]) if len(S) else 1.0)
    assert np.isclose(np.linalg.det(system), expected, rtol=1e-8, atol=1e-12)


@settings(max_examples=12, deadline=None)
@given(planted_scale_games(st.integers(1, 4), batch_shape=(3,), strict=True, margin=0.2))
def test_library_gradient_matches_closed_form(game):
    a = game.a.clone().requires_grad_(True)
    C = game.C.clone().requires_grad_(True)
    v = torch.linspace(-1, 1, a.shape[-1], dtype=torch.float64).expand_as(a)
    result = solve_scale_game(ScaleGame(a, C), method="exact")
    grad_a, grad_C = torch.autograd.grad((result.x * v).sum(), (a, C))
    for b in range(3):
        ref_a, ref_C = _closed_form(
            game.a[b].numpy(), game.C[b].numpy(), game.x[b].numpy(), v[b].numpy()
        )
        np.testing.assert_allclose(grad_a[b].numpy(), ref_a, atol=1e-9)
        np.testing.assert_allclose(grad_C[b].numpy(), ref_C, atol=1e-9)


@FAST
@given(simplex_qps(st.integers(1, 5), margin=0.2))
def test_convex_aggregator_gradient_matches_closed_form(problem):
    a = problem.a.clone().requires_grad_(True)
    result = convex_aggregate(a, problem.Q)
    w = result.weights.detach().numpy()
    S = np.flatnonzero(w > 0)
    Q = problem.Q.numpy()
    Qi = np.linalg.inv(Q[np.ix_(S, S)])
    one = np.ones(len(S))
    P = Qi - np.outer(Qi @ one, one @ Qi) / (one @ Qi @ one)
    jac = np.zeros((len(w), len(w)))
    jac[np.ix_(S, S)] = P
    rows = [torch.autograd.grad(result.weights[l], a, retain_graph=True)[0] for l in range(len(w))]
    np.testing.assert_allclose(torch.stack(rows).numpy(), jac, atol=1e-9)


def test_degenerate_and_wrong_gradients_are_detected():
    # A weakly inactive player: x* = (1, 0) with (Cx* - a)_2 = 0 exactly.
    C = np.array([[2.0, 0.5], [0.5, 1.0]])
    a = np.array([2.0, 0.5])
    x = lcp_solve(a, C)
    np.testing.assert_allclose(x, [1.0, 0.0], atol=1e-12)
    assert abs((C @ x - a)[1]) < 1e-12  # strict complementarity fails
    h = 1e-6
    e = np.array([0.0, 1.0])
    right = (lcp_solve(a + h * e, C) - x) / h
    left = (x - lcp_solve(a - h * e, C)) / h
    # The one-sided derivatives differ: there is no gradient, only pieces.
    assert np.abs(right - left).max() > 0.1
    central = (lcp_solve(a + h * e, C) - lcp_solve(a - h * e, C)) / (2 * h)
    for piece in (right, left):
        assert np.abs(central - piece).max() > 0.05  # the kink's average matches neither
    # The library's gradient at the kink is one of the two pieces (a documented choice).
    at = torch.from_numpy(a).requires_grad_(True)
    out = solve_scale_game(ScaleGame(at, torch.from_numpy(C)), method="exact")
    g = torch.autograd.grad(out.x[0], at)[0].numpy()  # d x_1 / d a
    assert min(np.abs(g[1] - right[0]), np.abs(g[1] - left[0])) < 1e-5
    # A wrong gradient is rejected by the finite-difference check: using the full
    # C^{-1} (ignoring the support) on a strictly complementary game.
    C = np.array([[2.0, 0.5, 0.1], [0.3, 1.0, 0.4], [0.2, 0.6, 1.5]])
    a = np.array([1.0, 0.8, -0.5])
    x = lcp_solve(a, C)
    v = np.array([0.3, -0.7, 1.0])
    fd_a = _fd(lambda z: v @ lcp_solve(z, C), a, h)
    good, _ = _closed_form(a, C, x, v)
    wrong = np.linalg.solve(C.T, v)
    np.testing.assert_allclose(good, fd_a, atol=1e-6)
    assert np.abs(wrong - fd_a).max() > 0.1
