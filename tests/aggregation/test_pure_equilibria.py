"""pure_equilibria: exact, vectorised enumeration of pure Nash equilibria."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import NormalFormGame, pure_equilibria
from aggregation.testing import assert_nash, degenerate_games, normal_form_games


def _brute_force(P: np.ndarray, tol: float = 0.0) -> list[tuple[int, ...]]:
    """Pure equilibria by checking every unilateral deviation (an explicit loop)."""
    n, counts = P.shape[0], P.shape[1:]
    found = []
    for a in itertools.product(*(range(c) for c in counts)):
        stable = True
        for i in range(n):
            for b in range(counts[i]):
                dev = list(a)
                dev[i] = b
                if P[(i, *dev)] > P[(i, *a)] + tol:
                    stable = False
        if stable:
            found.append(a)
    return found


def _listed(eqs, index=()) -> list[tuple[int, ...]]:
    actions = eqs.actions[index]
    valid = eqs.valid[index]
    return [tuple(row) for row, v in zip(actions.tolist(), valid.tolist()) if v]


def test_classic_games():
    pd = NormalFormGame.bimatrix([[3.0, 0.0], [5.0, 1.0]], [[3.0, 5.0], [0.0, 1.0]])
    out = pure_equilibria(pd)
    assert _listed(out) == [(1, 1)] and bool(out.info["strict"][0])
    bos = NormalFormGame.bimatrix([[2.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 2.0]])
    assert _listed(pure_equilibria(bos)) == [(0, 0), (1, 1)]
    pennies = NormalFormGame.zero_sum([[1.0, -1.0], [-1.0, 1.0]])
    out = pure_equilibria(pennies)
    assert int(out.count) == 0 and out.strategies[0].shape == (0, 2) and len(out) == 0
    assert not bool(out.degenerate)


def test_one_hot_strategies_regret_and_padding():
    A = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[1.0, -1.0], [-1.0, 1.0]]])
    g = NormalFormGame.bimatrix(A, torch.stack([A[0], -A[1]]))  # coordination, pennies
    out = pure_equilibria(g)
    assert out.count.tolist() == [2, 0]
    assert out.valid.tolist() == [[True, True], [False, False]]
    torch.testing.assert_close(out.strategies[0][0], torch.eye(2))
    assert float(out.strategies[0][1].abs().sum()) == 0.0  # padding is zero
    assert out.actions[1].tolist() == [[-1, -1], [-1, -1]]
    assert float(out.regret.abs().max()) == 0.0
    assert [len(r.strategies) for r in out[0]] == [2, 2]


def test_tolerance_admits_epsilon_equilibria():
    # (0, 0) is a 0.1-equilibrium: the row player gains 0.1 by deviating
    g = NormalFormGame.bimatrix([[1.0, 0.0], [1.1, 0.0]], [[1.0, 0.0], [1.0, 0.0]])
    assert (0, 0) not in _listed(pure_equilibria(g))
    loose = pure_equilibria(g, tol=0.1 + 1e-12)
    assert (0, 0) in _listed(loose)
    assert float(loose.regret.max()) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        pure_equilibria(g, tol=-0.1)
    with pytest.raises(TypeError, match="game must be a NormalFormGame"):
        pure_equilibria(torch.zeros(2, 2, 2))


def test_degenerate_flag_and_strictness():
    # the column player is indifferent: a continuum of equilibria, two of them pure
    g = NormalFormGame.bimatrix([[1.0, 1.0], [0.0, 0.0]], [[2.0, 2.0], [1.0, 1.0]])
    out = pure_equilibria(g)
    assert _listed(out) == [(0, 0), (0, 1)]
    assert bool(out.degenerate) and not bool(out.info["strict"].any())


def test_matches_gambit_enumpure_on_three_player_games():
    gbt = pytest.importorskip("pygambit")
    rng = np.random.default_rng(3)
    for _ in range(10):
        counts = tuple(rng.integers(2, 4, size=3))
        P = rng.integers(-2, 3, size=(3, *counts)).astype(float)  # ties on purpose
        ours = _listed(pure_equilibria(NormalFormGame(torch.from_numpy(P), num_players=3)))
        gg = NormalFormGame(torch.from_numpy(P), num_players=3).to_gambit()
        theirs = []
        for eq in gbt.nash.enumpure_solve(gg).equilibria:
            theirs.append(
                tuple(
                    next(k for k, s in enumerate(pl.strategies) if float(eq[s]) == 1.0)
                    for pl in gg.players
                )
            )
        assert sorted(ours) == sorted(theirs)


@settings(max_examples=25, deadline=None)
@given(
    st.one_of(
        normal_form_games(st.integers(1, 3), st.integers(1, 3), batch_shape=(3,), jitter=0.0),
        degenerate_games(st.integers(2, 3), st.integers(1, 3), batch_shape=(3,)),
    )
)
def test_exact_complete_and_batched(game):
    out = pure_equilibria(game)
    assert_nash(game, out, tol=0.0)
    P = game.payoffs.numpy()
    for b in range(3):
        assert _listed(out, b) == _brute_force(P[b])  # complete, lexicographic
        single = pure_equilibria(game[b])
        assert _listed(single) == _listed(out, b)
        assert bool(single.degenerate) == bool(out.degenerate[b])
        assert torch.equal(out[b].actions, out.actions[b])
    # the indices are the one-hot strategies' positions (-1 on padding)
    for i, s in enumerate(out.strategies):
        expected = torch.where(
            out.valid, s.argmax(-1), torch.full_like(out.valid, -1, dtype=torch.int64)
        )
        assert torch.equal(out.actions[..., i], expected)


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_invariant_under_positive_affine_payoff_changes(data):
    game = data.draw(normal_form_games(st.integers(1, 3), st.integers(1, 3), jitter=0.0))
    n = game.num_players
    scale = torch.tensor(
        data.draw(st.lists(st.sampled_from([0.5, 2.0, 3.0]), min_size=n, max_size=n))
    )
    shift = torch.tensor(data.draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n)))
    view = (n,) + (1,) * n
    moved = NormalFormGame(
        game.payoffs * scale.reshape(view).double() + shift.reshape(view).double(), num_players=n
    )
    assert _listed(pure_equilibria(moved)) == _listed(pure_equilibria(game))
