"""regret_matching: Hart & Mas-Colell regret matching and regret-matching+, batched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import NormalFormGame, regret_matching
from aggregation.testing import assert_nash, normal_form_games, zero_sum_games


def _reference(P: np.ndarray, rounds: int, plus: bool) -> list[np.ndarray]:
    """Regret matching written out in numpy for a two-player game (A, B)."""
    A, B = P[0], P[1]
    x, y = np.full(A.shape[0], 1 / A.shape[0]), np.full(A.shape[1], 1 / A.shape[1])
    qx, qy = np.zeros_like(x), np.zeros_like(y)
    sx, sy, total = np.zeros_like(x), np.zeros_like(y), 0.0
    for t in range(rounds):
        w = t + 1.0 if plus else 1.0
        sx, sy, total = sx + w * x, sy + w * y, total + w
        u, v = A @ y, B.T @ x
        qx, qy = qx + u - x @ u, qy + v - y @ v
        if plus:
            qx, qy = np.maximum(qx, 0), np.maximum(qy, 0)

        def match(q):
            pos = np.maximum(q, 0)
            return pos / pos.sum() if pos.sum() > 0 else np.full(q.shape, 1 / q.size)

        x, y = match(qx), match(qy)
    return [sx / total, sy / total]


@pytest.mark.parametrize("plus", [False, True])
def test_matches_numpy_reference(plus):
    rng = np.random.default_rng(6)
    P = rng.normal(size=(3, 2, 3, 4))
    game = NormalFormGame(torch.from_numpy(P), num_players=2)
    out = regret_matching(game, iterations=150, plus=plus, tol=0.0)
    for b in range(3):
        for got, want in zip(out.strategies, _reference(P[b], 150, plus)):
            np.testing.assert_allclose(got[b].numpy(), want, rtol=1e-10, atol=1e-12)
    assert out.method == ("regret_matching_plus" if plus else "regret_matching")


@settings(max_examples=10, deadline=None)
@given(zero_sum_games(st.integers(2, 4), batch_shape=(4,)), st.booleans())
def test_zero_sum_average_converges(game, plus):
    span = float(game.payoffs.amax() - game.payoffs.amin()) or 1.0
    out = regret_matching(game, iterations=2000, plus=plus, tol=0.0)
    # external regret O(span * sqrt(A / T)) for each player; the average is an eps-equilibrium
    assert float(out.max_regret.max()) <= 0.1 * span
    assert_nash(game, out, tol=0.1 * span)


@settings(max_examples=15, deadline=None)
@given(normal_form_games(st.integers(1, 3), st.integers(1, 3), batch_shape=(3,)), st.booleans())
def test_batched_equals_per_game_and_converged_means_equilibrium(game, plus):
    out = regret_matching(game, iterations=100, plus=plus, tol=0.05)
    done = out.converged
    assert_nash(game[done], tuple(s[done] for s in out.strategies), tol=0.05)
    for b in range(3):
        single = regret_matching(game[b], iterations=100, plus=plus, tol=0.05)
        for s, t in zip(out.strategies, single.strategies):
            torch.testing.assert_close(s[b], t, atol=1e-12, rtol=0)
        assert int(single.iterations) == int(out.iterations[b])


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_invariant_under_positive_affine_payoff_changes(data):
    game = data.draw(normal_form_games(st.integers(2, 3), st.integers(2, 3)))
    n = game.num_players
    scale = data.draw(st.lists(st.floats(0.25, 4.0), min_size=n, max_size=n))
    shift = data.draw(st.lists(st.floats(-10.0, 10.0), min_size=n, max_size=n))
    view = (n,) + (1,) * n
    scale_t = torch.tensor(scale, dtype=torch.float64)
    shift_t = torch.tensor(shift, dtype=torch.float64)
    moved = NormalFormGame(
        game.payoffs * scale_t.reshape(view) + shift_t.reshape(view), num_players=n
    )
    a = regret_matching(game, iterations=100, tol=0.0)
    b = regret_matching(moved, iterations=100, tol=0.0)
    for s, t in zip(a.strategies, b.strategies):
        torch.testing.assert_close(s, t, atol=1e-8, rtol=0)


def test_validation_names_the_argument():
    g = NormalFormGame.zero_sum([[1.0, -1.0], [-1.0, 1.0]])
    with pytest.raises(ValueError, match="iterations must be an integer >= 0"):
        regret_matching(g, iterations=-1)
    with pytest.raises(TypeError, match="plus must be a bool"):
        regret_matching(g, plus="yes")
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        regret_matching(g, tol=-0.1)
    with pytest.raises(ValueError, match=r"initial\[0\] must lie on the probability simplex"):
        regret_matching(g, initial=([2.0, -1.0], [0.5, 0.5]))
    out = regret_matching(g, iterations=0)
    assert int(out.iterations) == 0 and bool(out.converged)  # uniform is the equilibrium
