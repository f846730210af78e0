"""replicator_dynamics: exponential-weights replicator dynamics, one or many populations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from aggregation import NormalFormGame, replicator_dynamics
from aggregation.testing import assert_nash, normal_form_games, potential_games

HAWK_DOVE = torch.tensor([[0.0, 3.0], [1.0, 2.0]], dtype=torch.float64)


def test_symmetric_hawk_dove_reaches_the_mixed_ess():
    g = NormalFormGame.bimatrix(HAWK_DOVE, HAWK_DOVE.T)
    out = replicator_dynamics(g, symmetric=True, initial=([0.9, 0.1], [0.9, 0.1]))
    assert bool(out.converged)
    half = torch.tensor([0.5, 0.5], dtype=torch.float64)
    torch.testing.assert_close(out.strategies[0], half, atol=1e-5, rtol=0)  # regret <= 1e-6
    assert torch.equal(out.strategies[0], out.strategies[1])
    # two populations: the same game has a repelling mixed point and stable pure equilibria
    two = replicator_dynamics(g, initial=([0.9, 0.1], [0.8, 0.2]))
    assert bool(two.converged)
    assert sorted(round(float(s[0])) for s in two.strategies) == [0, 1]


def test_zero_sum_interior_equilibrium_does_not_converge():
    pennies = NormalFormGame.zero_sum(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
    out = replicator_dynamics(pennies, initial=([0.6, 0.4], [0.5, 0.5]), max_iter=3000)
    assert not bool(out.converged) and int(out.iterations) == 3000
    # the uniform start is already the equilibrium: zero steps
    assert int(replicator_dynamics(pennies).iterations) == 0


def test_faces_of_the_simplex_are_invariant():
    g = NormalFormGame.bimatrix(
        torch.eye(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)
    )
    start = ([0.5, 0.5, 0.0], [0.2, 0.3, 0.5])
    out = replicator_dynamics(g, initial=start, max_iter=50, tol=0.0)
    assert float(out.strategies[0][2]) == 0.0
    for s in out.strategies:
        assert float(s.min()) >= 0.0 and float(s.sum()) == pytest.approx(1.0, abs=1e-12)


def test_small_steps_follow_the_continuous_replicator_equation():
    rng = np.random.default_rng(5)
    P = rng.normal(size=(2, 3, 3))
    g = NormalFormGame(torch.from_numpy(P))
    x0, y0 = np.array([0.2, 0.3, 0.5]), np.array([0.6, 0.3, 0.1])
    step, steps = 1e-3, 2000
    out = replicator_dynamics(g, step=step, max_iter=steps, tol=0.0, initial=(x0, y0))
    span = P.reshape(2, -1).max(1) - P.reshape(2, -1).min(1)  # time runs at rate 1 / R_i

    def flow(_, z):
        x, y = z[:3], z[3:]
        u, v = P[0] @ y, P[1].T @ x
        return np.concatenate([x * (u - x @ u) / span[0], y * (v - y @ v) / span[1]])

    exact = solve_ivp(flow, (0, step * steps), np.concatenate([x0, y0]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out.strategies[0].numpy(), exact.y[:3, -1], atol=2e-3)
    np.testing.assert_allclose(out.strategies[1].numpy(), exact.y[3:, -1], atol=2e-3)


def test_validation_names_the_argument():
    g = NormalFormGame.bimatrix(HAWK_DOVE, HAWK_DOVE)
    with pytest.raises(ValueError, match="symmetric two-player game"):
        replicator_dynamics(g, symmetric=True)
    three = NormalFormGame(torch.zeros(3, 2, 2, 2), num_players=3)
    with pytest.raises(ValueError, match="symmetric two-player game"):
        replicator_dynamics(three, symmetric=True)
    with pytest.raises(TypeError, match="symmetric must be a bool"):
        replicator_dynamics(g, symmetric=1)
    with pytest.raises(ValueError, match="step must be a finite number > 0"):
        replicator_dynamics(g, step=0.0)
    with pytest.raises(ValueError, match="max_iter must be an integer >= 0"):
        replicator_dynamics(g, max_iter=-5)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        replicator_dynamics(g, tol=-1.0)
    with pytest.raises(ValueError, match=r"initial\[0\] must lie on the probability simplex"):
        replicator_dynamics(g, initial=([0.5, 0.4], [0.5, 0.5]))


@settings(max_examples=10, deadline=None)
@given(potential_games(st.integers(2, 3), st.integers(2, 3), batch_shape=(3,)))
def test_converged_means_equilibrium_and_batched_equals_per_game(game):
    out = replicator_dynamics(game, step=1.0, max_iter=200, tol=1e-6)
    done = out.converged
    assert_nash(game[done], tuple(s[done] for s in out.strategies), tol=1e-6)
    for b in (0, 2):
        single = replicator_dynamics(game[b], step=1.0, max_iter=200, tol=1e-6)
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
    moved = NormalFormGame(
        game.payoffs * scale_t.reshape(view)
        + torch.tensor(shift, dtype=torch.float64).reshape(view),
        num_players=n,
    )
    a = replicator_dynamics(game, max_iter=200, tol=0.0)
    b = replicator_dynamics(moved, max_iter=200, tol=0.0)
    for s, t in zip(a.strategies, b.strategies):
        torch.testing.assert_close(s, t, atol=1e-8, rtol=0)
    torch.testing.assert_close(b.regret, a.regret * scale_t, atol=1e-7, rtol=1e-7)
