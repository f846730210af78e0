"""Statement 2 (proofs/02_potential.md): symmetric C => potential maximiser."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from _proof_reference import d_norm, distance_from_regret, scale_regret
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from aggregation import ScaleGame, solve_scale_game
from aggregation.testing import assert_scale_equilibrium, scale_game_params

FAST = settings(max_examples=25, deadline=None)


def _potential(a, C, x):
    return a @ x - 0.5 * x @ C @ x


@FAST
@given(scale_game_params(st.integers(1, 5), batch_shape=(2,), symmetric=True, margin=0.1))
def test_symmetric_equilibrium_maximises_potential(params):
    a, C, _ = params
    game = ScaleGame(a, C)
    nash = solve_scale_game(game, method="exact")
    potential = solve_scale_game(game, method="potential", tol=1e-10)
    assert_scale_equilibrium(game, nash, tol=1e-9)
    assert_scale_equilibrium(game, potential, tol=1e-8)
    for b in range(2):
        ab, Cb = a[b].numpy(), C[b].numpy()
        # The potential maximiser is the equilibrium, up to what its regret allows.
        # (Both are float64 points: allow rounding amplified by the conditioning.)
        gap = d_norm(Cb, potential.x[b].numpy() - nash.x[b].numpy())
        slack = distance_from_regret(ab, Cb, nash.x[b].numpy()) + 1e-7
        assert gap <= distance_from_regret(ab, Cb, potential.x[b].numpy()) + slack
        # Independent maximiser of the potential over the orthant (L-BFGS-B).
        res = minimize(
            lambda x, ab=ab, Cb=Cb: -_potential(ab, Cb, x),
            np.zeros(len(ab)),
            jac=lambda x, ab=ab, Cb=Cb: -(ab - Cb @ x),
            bounds=[(0, None)] * len(ab),
            method="L-BFGS-B",
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 2000},
        )
        x_star = nash.x[b].numpy()
        assert _potential(ab, Cb, x_star) >= -res.fun - 1e-9
        assert d_norm(Cb, res.x - x_star) <= distance_from_regret(ab, Cb, res.x) + 1e-7


@FAST
@given(scale_game_params(st.integers(1, 5), symmetric=True, margin=0.1), st.data())
def test_regret_bounded_by_potential_gap(params, data):
    a, C, _ = (t.numpy() if t is not None else None for t in params)
    x_star = solve_scale_game(ScaleGame(params.a, params.C), method="exact").x.numpy()
    x = np.asarray(data.draw(st.lists(st.floats(0, 3), min_size=len(a), max_size=len(a))))
    gap = _potential(a, C, x_star) - _potential(a, C, x)
    assert gap >= -1e-12
    assert scale_regret(a, C, x).max() <= gap + 1e-9
    # (i) exact potential: a unilateral change moves u_l and the potential equally.
    l = data.draw(st.integers(0, len(a) - 1))
    y = x.copy()
    y[l] = data.draw(st.floats(0, 3))
    u = lambda z: z[l] * (a[l] - C[l] @ z + C[l, l] * z[l]) - 0.5 * C[l, l] * z[l] ** 2  # noqa: E731
    assert abs((u(y) - u(x)) - (_potential(a, C, y) - _potential(a, C, x))) <= 1e-9


def test_asymmetric_counterexample():
    a = torch.tensor([1.0, 1.0], dtype=torch.float64)
    C = torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    game = ScaleGame(a, C)
    nash = solve_scale_game(game, method="exact")
    torch.testing.assert_close(nash.x, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert_scale_equilibrium(game, nash, tol=1e-12)
    # The maximiser of a^T x - x^T C x / 2 (it only sees sym(C)) is not an equilibrium:
    # the helper rejects it, and both regrets are exactly 1/18.
    sym = 0.5 * (C + C.T)
    x_phi = torch.linalg.solve(sym, a)
    torch.testing.assert_close(x_phi, torch.full((2,), 2 / 3, dtype=torch.float64))
    with pytest.raises(AssertionError, match="regret 0.0555556"):
        assert_scale_equilibrium(game, x_phi, tol=1e-6)
    regret = scale_regret(a.numpy(), C.numpy(), x_phi.numpy())
    assert [Fraction(float(r)).limit_denominator(100) for r in regret] == [Fraction(1, 18)] * 2
    # The potential solver refuses an asymmetric C instead of answering wrongly.
    with pytest.raises(ValueError, match="symmetric"):
        solve_scale_game(game, method="potential")
