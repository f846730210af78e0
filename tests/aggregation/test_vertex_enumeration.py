"""Vertex enumeration: exact extreme equilibria of degenerate games (vs Gambit), properties."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import NormalFormGame, vertex_enumeration
from aggregation.testing import assert_nash, degenerate_games, normal_form_games

pygambit = pytest.importorskip("pygambit")

TOL = 1e-9


def profiles(eqs, index=()):
    one = eqs[index] if index != () else eqs
    return [
        np.concatenate(
            [one.strategies[0][e].double().numpy(), one.strategies[1][e].double().numpy()]
        )
        for e in torch.nonzero(one.valid).flatten().tolist()
    ]


def same_set(a, b, tol=1e-6):
    return len(a) == len(b) and all(any(np.abs(p - q).max() <= tol for q in b) for p in a)


def gambit_extreme(A, B):
    """Gambit's exact (rational) extreme equilibria, duplicates removed."""
    game = pygambit.Game.from_arrays(A.astype(int), B.astype(int))
    found = []
    for eq in pygambit.nash.enummixed_solve(game, rational=True).equilibria:
        p = np.array([float(eq[pl][s]) for pl in game.players for s in pl.strategies])
        if not any(np.abs(p - q).max() < 1e-9 for q in found):
            found.append(p)
    return found


@pytest.mark.parametrize("m,n", [(2, 2), (2, 3), (3, 3), (3, 4), (4, 4)])
def test_degenerate_integer_games_match_gambit_rational(m, n):
    # Payoffs in {0, 1, 2}: most of these games are degenerate (ties, continua).
    rng = np.random.default_rng(100 + 10 * m + n)
    A = rng.integers(0, 3, (60, m, n)).astype(float)
    B = rng.integers(0, 3, (60, m, n)).astype(float)
    eqs = vertex_enumeration(NormalFormGame.bimatrix(A, B), tol=TOL)
    assert int(eqs.degenerate.sum()) > 30
    assert int(eqs.info["rejected"].sum()) == 0
    for i in range(60):
        assert same_set(profiles(eqs, i), gambit_extreme(A[i], B[i])), i


def test_nondegenerate_flag_and_counts_are_odd():
    # A nondegenerate game has an odd number of equilibria (Lemke-Howson / index theory).
    g = torch.Generator().manual_seed(5)
    game = NormalFormGame.bimatrix(
        torch.rand(300, 5, 4, generator=g, dtype=torch.float64),
        torch.rand(300, 5, 4, generator=g, dtype=torch.float64),
    )
    eqs = vertex_enumeration(game)
    assert not bool(eqs.degenerate.any())
    assert (eqs.count % 2 == 1).all()


@settings(max_examples=30, deadline=None)
@given(degenerate_games(num_players=2, batch_shape=(3,)))
def test_batched_equals_per_game_loop_on_degenerate_games(game):
    batched = vertex_enumeration(game)
    assert_nash(game, batched, tol=TOL)
    for i in range(3):
        alone = vertex_enumeration(game[i])
        assert same_set(profiles(batched, i), profiles(alone), tol=1e-12)
        assert bool(batched.degenerate[i]) == bool(alone.degenerate)


@settings(max_examples=25, deadline=None)
@given(
    degenerate_games(num_players=2, batch_shape=(2,)),
    st.floats(0.01, 100.0),
    st.floats(-50.0, 50.0),
    st.floats(0.01, 100.0),
    st.floats(-50.0, 50.0),
)
def test_invariant_under_positive_affine_payoff_changes(game, a, b, c, d):
    moved = NormalFormGame.bimatrix(a * game.A + b, c * game.B + d)
    before, after = vertex_enumeration(game), vertex_enumeration(moved, tol=1e-7)
    assert (before.degenerate == after.degenerate).all()
    for i in range(2):
        assert same_set(profiles(before, i), profiles(after, i), tol=1e-8)


@settings(max_examples=20, deadline=None)
@given(normal_form_games(num_players=2, num_actions=st.integers(1, 5), batch_shape=(2,)))
def test_every_profile_is_an_equilibrium(game):
    eqs = vertex_enumeration(game, tol=TOL)
    regrets = assert_nash(game, eqs, tol=TOL)
    assert (regrets[eqs.valid] <= TOL).all()
    assert (eqs.count >= 1).all()
