"""Statement 3 (proofs/03_convergence.md): best-response and extragradient rates."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from _proof_reference import d_norm, extragradient, gauss_seidel, lcp_solve, scale_regret
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import ScaleGame, solve_scale_game
from aggregation.testing import assert_scale_equilibrium, scale_game_params

FAST = settings(max_examples=25, deadline=None)


def _gs_rate(C: np.ndarray) -> float:
    """q = 4||N||^2 / (mu^ + 4||N||^2) for the normalised matrix (statement 3(i))."""
    d = np.sqrt(np.diag(C))
    Ch = C / np.outer(d, d)
    mu = np.linalg.eigvalsh(Ch)[0]
    n2 = np.linalg.norm(np.tril(Ch, -1), 2) ** 2
    # The eigenvalue-only bound ||N||^2 <= sum_i (lambda_i - 1)^2 / 2 holds too.
    assert n2 <= 0.5 * np.sum((np.linalg.eigvalsh(Ch) - 1) ** 2) + 1e-12
    return 4 * n2 / (mu + 4 * n2)


def _phi(a, C, x):
    return a @ x - 0.5 * x @ C @ x


@FAST
@given(scale_game_params(st.integers(1, 6), symmetric=True, margin=0.05), st.data())
def test_gauss_seidel_rate_bound(params, data):
    a, C = params.a.numpy(), params.C.numpy()
    q = _gs_rate(C)
    x_star = lcp_solve(a, C)
    x0 = np.asarray(data.draw(st.lists(st.floats(0, 3), min_size=len(a), max_size=len(a))))
    iterates = gauss_seidel(a, C, x0, 25)
    gaps = [_phi(a, C, x_star) - _phi(a, C, x) for x in iterates]
    for e0, e1 in zip(gaps, gaps[1:]):
        assert e1 <= q * e0 + 1e-12
    # Regret <= potential gap (statement 2), so the regret decays at the same rate.
    for x, e in zip(iterates, gaps):
        assert scale_regret(a, C, x).max() <= e + 1e-10


@FAST
@given(scale_game_params(st.integers(1, 6), symmetric=True, margin=0.05), st.data())
def test_jacobi_contraction(params, data):
    a, C = params.a.numpy(), params.C.numpy()
    d = np.sqrt(np.diag(C))
    lam = np.linalg.eigvalsh(C / np.outer(d, d))
    rho = max(abs(1 - lam[0]), abs(lam[-1] - 1))
    x_star = lcp_solve(a, C)
    x = np.asarray(data.draw(st.lists(st.floats(0, 3), min_size=len(a), max_size=len(a))))
    br = np.maximum(a - C @ x + np.diag(C) * x, 0.0) / np.diag(C)  # all players at once
    assert d_norm(C, br - x_star) <= rho * d_norm(C, x - x_star) + 1e-10


@FAST
@given(scale_game_params(st.integers(1, 6), symmetric=False, margin=0.05), st.data())
def test_extragradient_rate_bound(params, data):
    a, C = params.a.numpy(), params.C.numpy()
    mu = np.linalg.eigvalsh(0.5 * (C + C.T))[0]
    ell = np.linalg.norm(C, 2)
    eta = data.draw(st.floats(0.05, 1.0)) * (math.sqrt(2) - 1) / ell
    x_star = lcp_solve(a, C)
    x0 = np.asarray(data.draw(st.lists(st.floats(0, 3), min_size=len(a), max_size=len(a))))
    dist = [np.sum((x - x_star) ** 2) for x in extragradient(a, C, x0, eta, 40)]
    for d0, d1 in zip(dist, dist[1:]):
        assert d1 <= (1 - eta * mu) * d0 + 1e-14


@settings(max_examples=10, deadline=None)
@given(scale_game_params(st.integers(1, 5), batch_shape=(3,), symmetric=True, margin=0.3))
def test_library_solvers_converge_within_bound(params):
    a, C = params.a, params.C
    # payoff unit U = max_l a_l^2 / C_ll made 1: the solvers' tol (relative to U) is then
    # the statement's absolute regret bound
    unit = ScaleGame(a, C).payoff_unit()
    a = a / torch.where(unit > 0, unit, torch.ones_like(unit)).sqrt().unsqueeze(-1)
    game = ScaleGame(a, C)
    tol = 1e-9
    # Gauss-Seidel from x = 0: regret <= e_k <= q^k e_0 <= tol after k_bound sweeps.
    k_bound = 1
    for b in range(3):
        ab, Cb = a[b].numpy(), C[b].numpy()
        e0 = _phi(ab, Cb, lcp_solve(ab, Cb))  # Phi(0) = 0
        q = _gs_rate(Cb)
        if e0 > tol and q > 0:
            k_bound = max(k_bound, math.ceil(math.log(e0 / tol) / math.log(1 / q)))
    result = solve_scale_game(
        game,
        method="best_response",
        variant="gauss_seidel",
        damping=1.0,
        tol=tol,
        max_iter=k_bound + 5,
        check_every=1,
    )
    assert bool(result.converged.all()), (k_bound, result.max_regret)
    assert int(result.iterations.max()) <= k_bound
    assert_scale_equilibrium(game, result, tol=tol)
    # The library's iterations are the analysed ones: pin them to the reference.
    for method, options, reference in (
        ("best_response", {"variant": "gauss_seidel", "damping": 1.0}, None),
        ("extragradient", {"step_size": 0.4}, "eg"),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # tol=0: runs all 7 steps
            out = solve_scale_game(
                game, method=method, tol=0.0, max_iter=7, check_every=1, **options
            )
        for b in range(3):
            ab, Cb = a[b].numpy(), C[b].numpy()
            if reference is None:
                ref = gauss_seidel(ab, Cb, np.zeros(len(ab)), 7)
            else:
                eta = 0.4 / np.linalg.norm(Cb)  # step_size / ||C||_F <= (sqrt 2 - 1)/||C||_2
                ref = extragradient(ab, Cb, np.zeros(len(ab)), eta, 7)
            k = int(out.iterations[b])  # == 7 unless the iterate was already exact
            np.testing.assert_allclose(out.x[b].numpy(), ref[k], atol=1e-10)


def test_best_response_cycles_on_asymmetric_game():
    a = torch.tensor([3.0, -1.0], dtype=torch.float64)
    C = torch.tensor([[1.0, 2.0], [-2.0, 1.0]], dtype=torch.float64)  # sym(C) = I
    game = ScaleGame(a, C)
    assert_scale_equilibrium(game, torch.tensor([1.0, 1.0], dtype=torch.float64), tol=0.0)
    iterates = gauss_seidel(a.numpy(), C.numpy(), np.zeros(2), 6)
    assert [x.tolist() for x in iterates] == [
        [0, 0],
        [3, 5],
        [0, 0],
        [3, 5],
        [0, 0],
        [3, 5],
        [0, 0],
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        br = solve_scale_game(game, method="best_response", damping=1.0, max_iter=200)
    assert not bool(br.converged)  # reported, not hidden
    with pytest.raises(AssertionError, match="regret"):
        assert_scale_equilibrium(game, br, tol=1e-6)
    eg = solve_scale_game(game, method="extragradient", tol=1e-10, max_iter=5000)
    assert bool(eg.converged)
    assert_scale_equilibrium(game, eg, tol=1e-10)
    torch.testing.assert_close(eg.x, torch.ones(2, dtype=torch.float64), atol=1e-5, rtol=0)
