"""Statement 1 (proofs/01_existence_uniqueness.md): existence, uniqueness, LCP."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from _proof_reference import d_norm, distance_from_regret, lcp_solutions, lcp_solve, scale_regret
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import ScaleGame, solve_scale_game
from aggregation.testing import (
    assert_scale_equilibrium,
    assert_strongly_monotone,
    planted_scale_games,
    scale_game_params,
)

FAST = settings(max_examples=25, deadline=None)


@FAST
@given(
    planted_scale_games(
        st.integers(1, 5), batch_shape=(3,), masked=True, symmetric=False, margin=0.05
    ),
    st.integers(0, 4),
)
def test_lcp_solution_is_unique_nash_equilibrium(game, player):
    # The planted point solves the LCP, so (i) it is an equilibrium ...
    regret = assert_scale_equilibrium(game[:3], game.x, tol=1e-10)
    assert float(regret.max()) <= 1e-10
    for b in range(3):
        present = game.mask[b].numpy()
        idx = np.flatnonzero(present)
        a, C = game.a[b].numpy()[idx], game.C[b].numpy()[np.ix_(idx, idx)]
        # ... (ii) and the only one: brute force finds exactly one LCP solution.
        (x,) = lcp_solutions(a, C)
        np.testing.assert_allclose(x, game.x[b].numpy()[idx], atol=1e-9)
    # The exact solver returns it.
    result = solve_scale_game(ScaleGame(game.a, game.C, game.mask), method="exact")
    assert bool(result.converged.all())
    torch.testing.assert_close(result.x, game.x, atol=1e-9, rtol=0)
    # A wrong solution is rejected: move one present player off its strategy.
    L = game.x.shape[-1]
    l = player % L
    wrong = game.x.clone()
    wrong[..., l] = wrong[..., l] + 0.5
    wrong = torch.where(game.mask, wrong, torch.zeros_like(wrong))
    if bool(game.mask[..., l].any()):
        with pytest.raises(AssertionError, match="player"):
            assert_scale_equilibrium(game[:3], wrong, tol=1e-10)


@FAST
@given(scale_game_params(st.integers(1, 5), batch_shape=(2,), margin=0.05), st.data())
def test_solver_matches_reference_and_error_bound(params, data):
    a, C, _ = params
    mu = assert_strongly_monotone(C, margin=0.0)  # sym(C) > 0 by construction
    result = solve_scale_game(ScaleGame(a, C), method="exact")
    for b in range(2):
        x_ref = lcp_solve(a[b].numpy(), C[b].numpy())
        np.testing.assert_allclose(result.x[b].numpy(), x_ref, atol=1e-9)
        assert scale_regret(a[b].numpy(), C[b].numpy(), x_ref).max() <= 1e-9
        # Error bound of (ii): ||x - x*|| <= ||x - T(x)|| (1 + eta ||C||) / (eta mu).
        Cb = C[b].numpy()
        norm = np.linalg.norm(Cb, 2)
        eta = data.draw(st.floats(0.05, 2.0)) / norm
        x = np.asarray(
            data.draw(st.lists(st.floats(0, 3), min_size=len(x_ref), max_size=len(x_ref)))
        )
        t = np.maximum(0.0, x - eta * (Cb @ x - a[b].numpy()))
        bound = np.linalg.norm(x - t) * (1 + eta * norm) / (eta * float(mu[b]))
        assert np.linalg.norm(x - x_ref) <= bound * (1 + 1e-9) + 1e-12
        # Its corollary: the distance (D-norm) is bounded by the regrets of x.
        limit = distance_from_regret(a[b].numpy(), Cb, x)
        assert d_norm(Cb, x - x_ref) <= limit * (1 + 1e-9) + 1e-12


def test_counterexamples_outside_assumptions():
    dt = torch.float64
    ones = torch.ones(2, dtype=dt)
    # Three equilibria when sym(C) is indefinite: the monotonicity check rejects C,
    # every one of the three passes the equilibrium check (so uniqueness really fails).
    C = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=dt)
    with pytest.raises(AssertionError, match="eigenvalue -1"):
        assert_strongly_monotone(C)
    sols = lcp_solutions(ones.numpy(), C.numpy())
    assert len(sols) == 3
    for x in sols:
        assert_scale_equilibrium((ones, C), torch.from_numpy(x), tol=1e-12)
    result = solve_scale_game(ScaleGame(ones, C), method="exact")
    assert any(np.allclose(result.x.numpy(), x, atol=1e-9) for x in sols)
    # No equilibrium: the exact solver must say so, and its output must fail the check.
    C = torch.tensor([[1.0, -2.0], [-2.0, 1.0]], dtype=dt)
    assert lcp_solutions(ones.numpy(), C.numpy()) == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = solve_scale_game(ScaleGame(ones, C), method="exact")
    assert not bool(result.converged)
    with pytest.raises(AssertionError, match="regret"):
        assert_scale_equilibrium((ones, C), result.x, tol=1e-6)
    with pytest.raises(ValueError, match="monotone"):
        solve_scale_game(ScaleGame(ones, C), method="extragradient", validate=True)
