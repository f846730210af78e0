"""best_response_dynamics: pure best-response dynamics with exact cycle detection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import NormalFormGame, best_response_dynamics, pure_equilibria
from aggregation.testing import assert_nash, normal_form_games, potential_games

COORDINATION = NormalFormGame.bimatrix([[2.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [0.0, 1.0]])
SHAPLEY = NormalFormGame.bimatrix(torch.eye(3), torch.roll(torch.eye(3), 1, dims=1))


def _reference(P: np.ndarray, start, mode: str, max_iter: int):
    """A plain-Python run of the same dynamics, detecting cycles with a visited dict."""
    n = P.shape[0]
    a = list(start)
    seen = {tuple(a): 0}
    for t in range(1, max_iter + 1):

        def respond(i, prof):
            index = list(prof)
            index[i] = slice(None)
            values = P[(i, *index)]
            return prof[i] if values[prof[i]] >= values.max() else int(np.argmax(values))

        if all(respond(i, a) == a[i] for i in range(n)):
            return tuple(a), True, 0
        if mode == "simultaneous":
            a = [respond(i, a) for i in range(n)]
        else:
            for i in range(n):
                a[i] = respond(i, a)
        if tuple(a) in seen:
            return tuple(a), False, t - seen[tuple(a)]
        seen[tuple(a)] = t
    return tuple(a), all(respond(i, a) == a[i] for i in range(n)), 0


def test_prisoners_dilemma_and_coordination():
    pd = NormalFormGame.bimatrix([[3.0, 0.0], [5.0, 1.0]], [[3.0, 5.0], [0.0, 1.0]])
    out = best_response_dynamics(pd)
    assert out.info["actions"].tolist() == [1, 1] and bool(out.converged)
    assert int(out.iterations) == 1
    # simultaneous play from a miscoordinated start flips forever: a 2-cycle
    sim = best_response_dynamics(COORDINATION, initial=(0, 1))
    assert not bool(sim.converged) and int(sim.info["cycle_length"]) == 2
    alt = best_response_dynamics(COORDINATION, mode="alternating", initial=(0, 1))
    assert bool(alt.converged) and alt.info["actions"].tolist() == [1, 1]


def test_shapley_game_cycles():
    out = best_response_dynamics(SHAPLEY, mode="alternating")
    assert not bool(out.converged) and int(out.info["cycle_length"]) > 0
    assert float(out.max_regret) == pytest.approx(1.0)
    short = best_response_dynamics(SHAPLEY, max_iter=0)
    assert int(short.iterations) == 0 and short.info["actions"].tolist() == [0, 0]


def test_batched_initial_and_validation():
    g = NormalFormGame(COORDINATION.payoffs.expand(4, 2, 2, 2))
    out = best_response_dynamics(g, initial=(torch.tensor([0, 1, 0, 1]), 1))
    assert out.converged.tolist() == [False, True, False, True]
    with pytest.raises(ValueError, match=r"initial\[0\] must be action indices in \[0, 2\)"):
        best_response_dynamics(g, initial=(2, 0))
    with pytest.raises(ValueError, match="one action per player"):
        best_response_dynamics(g, initial=(0,))
    with pytest.raises(TypeError, match="integer action indices"):
        best_response_dynamics(g, initial=(torch.tensor([0.5, 0.5]), 0))
    with pytest.raises(ValueError, match="broadcastable"):
        best_response_dynamics(g, initial=(torch.zeros(3, dtype=torch.long), 0))
    with pytest.raises(ValueError, match="mode must be one of"):
        best_response_dynamics(g, mode="random")
    with pytest.raises(ValueError, match="max_iter must be an integer >= 0"):
        best_response_dynamics(g, max_iter=-1)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        best_response_dynamics(g, tol=-1.0)


@settings(max_examples=20, deadline=None)
@given(
    potential_games(st.integers(2, 3), st.integers(1, 3), batch_shape=(3,)),
    st.sampled_from(["simultaneous", "alternating"]),
)
def test_potential_games_alternating_converges_to_a_pure_equilibrium(game, mode):
    out = best_response_dynamics(game, mode=mode, max_iter=200)
    if mode == "alternating":  # finite improvement property (Monderer & Shapley 1996)
        assert bool(out.converged.all())
    done = out.converged
    assert_nash(game[done], tuple(s[done] for s in out.strategies), tol=1e-8)
    pure = pure_equilibria(game, tol=1e-8)
    for b in torch.nonzero(done).flatten().tolist():
        listed = pure.actions[b][pure.valid[b]].tolist()
        assert out.info["actions"][b].tolist() in listed


@settings(max_examples=25, deadline=None)
@given(
    normal_form_games(st.integers(2, 3), st.integers(2, 3), batch_shape=(3,), jitter=0.0),
    st.sampled_from(["simultaneous", "alternating"]),
    st.integers(0, 1),
)
def test_matches_reference_loop_batched_and_affine_invariant(game, mode, start):
    out = best_response_dynamics(game, mode=mode, initial=(start,) * game.num_players)
    P = game.payoffs.numpy()
    for b in range(3):
        actions, converged, cycle = _reference(P[b], (start,) * game.num_players, mode, 1000)
        assert bool(out.converged[b]) == converged
        assert int(out.info["cycle_length"][b]) == cycle
        if converged:
            assert tuple(out.info["actions"][b].tolist()) == actions
        single = best_response_dynamics(game[b], mode=mode, initial=(start,) * game.num_players)
        assert single.info["actions"].tolist() == out.info["actions"][b].tolist()
    n = game.num_players
    view = (n,) + (1,) * n
    scale = torch.arange(1, n + 1, dtype=torch.float64).reshape(view)
    moved = NormalFormGame(game.payoffs * scale - 3.0, num_players=n)
    again = best_response_dynamics(moved, mode=mode, initial=(start,) * n)
    assert torch.equal(again.info["actions"], out.info["actions"])
    assert torch.equal(again.converged, out.converged)
