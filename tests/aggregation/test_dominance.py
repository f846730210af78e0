"""Dominated actions and iterated elimination against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from aggregation import (
    NormalFormGame,
    iterated_elimination,
    pure_equilibria,
    strictly_dominated_actions,
    support_enumeration,
    weakly_dominated_actions,
)
from aggregation.games import prisoners_dilemma
from aggregation.testing import degenerate_games, normal_form_games


def _random_games(batch: int, actions: tuple[int, ...], seed: int, values: int = 4):
    """Small integer payoffs: many ties, so weak and strict dominance both occur."""
    gen = torch.Generator().manual_seed(seed)
    n = len(actions)
    p = torch.randint(0, values, (batch, n, *actions), generator=gen).to(torch.float64)
    return NormalFormGame(p, num_players=n)


def _own(P: np.ndarray, i: int, alive: list[list[int]]) -> np.ndarray:
    """Player i's payoffs ``(A_i, K)`` over the surviving opponent profiles."""
    n = P.shape[0]
    others = [j for j in range(n) if j != i]
    cols = []
    for rest in itertools.product(*(alive[j] for j in others)):
        profile = [0] * n
        for j, a in zip(others, rest):
            profile[j] = a
        col = []
        for a in range(P.shape[1 + i]):
            profile[i] = a
            col.append(P[(i, *profile)])
        cols.append(col)
    return np.array(cols).T  # (A_i, K)


def _pure_dominated(M: np.ndarray, rows: list[int], weak: bool) -> list[int]:
    out = []
    for a in rows:
        for b in rows:
            if b == a:
                continue
            if weak and all(M[b] >= M[a]) and any(M[b] > M[a]):
                out.append(a)
                break
            if not weak and all(M[b] > M[a]):
                out.append(a)
                break
    return out


def _mixed_dominated(M: np.ndarray, rows: list[int]) -> list[int]:
    """max eps s.t. sum_b x_b M[b] - M[a] >= eps, x on the simplex of ``rows`` (scipy)."""
    out = []
    for a in rows:
        k = M.shape[1]
        c = np.zeros(len(rows) + 1)
        c[-1] = -1.0  # maximise eps
        A_ub = np.hstack([-M[rows].T, np.ones((k, 1))])  # eps - x^T M[:, s] <= -M[a, s]
        b_ub = -M[a]
        A_eq = np.hstack([np.ones((1, len(rows))), np.zeros((1, 1))])
        bounds = [(0, None)] * len(rows) + [(None, None)]
        res = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=[1.0], bounds=bounds)
        assert res.status == 0
        if -res.fun > 1e-7:
            out.append(a)
    return out


def _brute_elimination(P: np.ndarray, mixed: bool) -> list[list[int]]:
    """Remove ONE dominated action at a time (the first found), until none is left."""
    n = P.shape[0]
    alive = [list(range(P.shape[1 + i])) for i in range(n)]
    while True:
        for i in range(n):
            M = _own(P, i, alive)
            found = _mixed_dominated(M, alive[i]) if mixed else _pure_dominated(M, alive[i], False)
            if found:
                alive[i].remove(found[0])
                break
        else:
            return alive


def _mask(indices: list[int], a: int) -> list[bool]:
    return [k in indices for k in range(a)]


@pytest.mark.parametrize("actions", [(2, 2), (3, 3), (2, 4), (2, 2, 3)])
def test_one_step_dominance_against_brute_force(actions):
    games = _random_games(40, actions, seed=sum(actions))
    strict = strictly_dominated_actions(games)
    weak = weakly_dominated_actions(games)
    mixed = strictly_dominated_actions(games, mixed=True)
    full = [list(range(a)) for a in actions]
    for b in range(40):
        P = games.payoffs[b].numpy()
        for i, a in enumerate(actions):
            M = _own(P, i, full)
            assert strict[i][b].tolist() == _mask(_pure_dominated(M, full[i], False), a)
            assert weak[i][b].tolist() == _mask(_pure_dominated(M, full[i], True), a)
            assert mixed[i][b].tolist() == _mask(_mixed_dominated(M, full[i]), a)
    # strict implies weak implies nothing; pure strict implies mixed strict
    for s, w, m in zip(strict, weak, mixed):
        assert not (s & ~w).any() and not (s & ~m).any()


@pytest.mark.parametrize("actions", [(3, 3), (4, 3), (2, 2, 3)])
@pytest.mark.parametrize("mixed", [False, True])
def test_iterated_elimination_against_one_at_a_time_brute_force(actions, mixed):
    # the simultaneous batched rounds and the one-at-a-time loop reach the same
    # game: the order of removing strictly dominated actions does not matter
    games = _random_games(30, actions, seed=7 + len(actions), values=6)
    out = iterated_elimination(games, mixed=mixed)
    assert out.rounds.shape == (30,)
    eliminated = 0
    for b in range(30):
        alive = _brute_elimination(games.payoffs[b].numpy(), mixed)
        for i, a in enumerate(actions):
            assert out.survivors[i][b].tolist() == _mask(alive[i], a)
        single = out[b]
        assert [x.tolist() for x in single.actions] == alive
        reduced = single.game
        assert reduced.num_actions == tuple(len(x) for x in alive)
        # no strictly dominated action is left in the reduced game
        for d in strictly_dominated_actions(reduced, mixed=mixed):
            assert not d.any()
        eliminated += sum(a - len(x) for a, x in zip(actions, alive))
    assert eliminated > 0  # the sample exercises elimination


def test_equilibria_survive_elimination():
    games = _random_games(40, (3, 3), seed=11, values=5)
    out = iterated_elimination(games, mixed=True)
    pure = pure_equilibria(games)
    for b in range(40):
        for row in pure.actions[b][pure.valid[b]].tolist():
            assert all(bool(out.survivors[i][b][a]) for i, a in enumerate(row))
    # nondegenerate games: every equilibrium's support survives
    gen = torch.Generator().manual_seed(5)
    A = torch.randn(50, 4, 4, generator=gen, dtype=torch.float64)
    A[:, 0] = A[:, 1] - 0.5  # row 0 strictly dominated by row 1
    games = NormalFormGame.bimatrix(A, torch.randn(50, 4, 4, generator=gen, dtype=torch.float64))
    out = iterated_elimination(games)
    assert not out.survivors[0][:, 0].any()
    eqs = support_enumeration(games)
    for i in range(2):
        support = (eqs.strategies[i] > 0) & eqs.valid[..., None]  # (50, E, A_i)
        assert not (support & ~out.survivors[i][:, None, :]).any()


def test_mixed_domination_without_pure_domination():
    g = NormalFormGame.bimatrix([[3.0, 0.0], [0.0, 3.0], [1.0, 1.0]], [[1.0, 0.0]] * 3)
    assert strictly_dominated_actions(g)[0].tolist() == [False, False, False]
    assert strictly_dominated_actions(g, mixed=True)[0].tolist() == [False, False, True]
    # dominated by 1/2 (row 0) + 1/2 (row 1), which earns 1.5 > 1 + tol only for tol < 0.5
    assert strictly_dominated_actions(g, mixed=True, tol=0.49)[0].tolist()[2]
    assert not strictly_dominated_actions(g, mixed=True, tol=0.51)[0].tolist()[2]


def test_tolerance_and_ties():
    # row 1 is worse by 1e-3 everywhere: strictly dominated at tol 0, not at tol 1e-2
    g = NormalFormGame.bimatrix([[1.0, 2.0], [1.0 - 1e-3, 2.0 - 1e-3]], [[0.0, 0.0]] * 2)
    assert strictly_dominated_actions(g)[0].tolist() == [False, True]
    assert strictly_dominated_actions(g, tol=1e-2)[0].tolist() == [False, False]
    # duplicate actions dominate nothing, weakly or strictly
    dup = NormalFormGame.bimatrix([[1.0, 2.0], [1.0, 2.0]], [[0.0, 1.0]] * 2)
    assert weakly_dominated_actions(dup)[0].tolist() == [False, False]
    assert weakly_dominated_actions(dup)[1].tolist() == [True, False]


def test_prisoners_dilemma_and_batched_indexing():
    out = iterated_elimination(prisoners_dilemma())
    assert [a.tolist() for a in out.actions] == [[1], [1]] and int(out.rounds) == 1
    assert out.game.payoffs.tolist() == [[[1.0]], [[1.0]]]
    batched = iterated_elimination(_random_games(3, (2, 2), seed=0))
    with pytest.raises(ValueError, match="index it first"):
        _ = batched.game
    with pytest.raises(IndexError):
        _ = out[0]


def test_bad_input():
    with pytest.raises(TypeError, match="game must be a NormalFormGame"):
        strictly_dominated_actions(torch.zeros(2, 2, 2))
    with pytest.raises(TypeError, match="mixed must be a bool"):
        iterated_elimination(prisoners_dilemma(), mixed=1)
    with pytest.raises(ValueError, match="tol"):
        weakly_dominated_actions(prisoners_dilemma(), tol=-1.0)
    with pytest.raises(ValueError, match="below the resolution"):
        strictly_dominated_actions(prisoners_dilemma(dtype=torch.float32), mixed=True, tol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    st.one_of(
        normal_form_games(st.integers(2, 3), st.integers(1, 3), batch_shape=(2,), jitter=0.0),
        degenerate_games(st.integers(2, 3), st.integers(2, 3), batch_shape=(2,)),
    )
)
def test_dominance_properties(game):
    # strict (pure) => strict (mixed) and strict (pure) => weak; no pure equilibrium
    # uses a strictly dominated action, before or after iterated elimination
    strict = strictly_dominated_actions(game)
    mixed = strictly_dominated_actions(game, mixed=True)
    weak = weakly_dominated_actions(game)
    for s, m, w in zip(strict, mixed, weak):
        assert not (s & ~m).any() and not (s & ~w).any()
    pure = pure_equilibria(game)
    for elimination in (iterated_elimination(game), iterated_elimination(game, mixed=True)):
        for i, alive in enumerate(elimination.survivors):
            assert alive.any(-1).all()  # every player keeps an action
            used = pure.actions[..., i]  # (2, E)
            for b in range(2):
                for a in used[b][pure.valid[b]].tolist():
                    assert bool(alive[b, a]) and not bool(mixed[i][b, a])
    for flag in (False, True):  # batched == one by one
        batched = iterated_elimination(game, mixed=flag)
        for b in range(2):
            single = iterated_elimination(game[b], mixed=flag)
            assert int(single.rounds) == int(batched.rounds[b])
            for x, y in zip(batched.survivors, single.survivors):
                assert torch.equal(x[b], y)
