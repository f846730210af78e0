"""Constructors of aggregation.games: classic games against their textbook equilibria,
random and covariance games against their distributions, symmetric games."""

from __future__ import annotations

import doctest
import itertools

import pytest
import torch

from aggregation import (
    NormalFormGame,
    anti_coordination_game,
    battle_of_the_sexes,
    coordination_game,
    covariance_game,
    is_symmetric,
    matching_pennies,
    prisoners_dilemma,
    pure_equilibria,
    random_game,
    rock_paper_scissors,
    shapley_game,
    support_enumeration,
    symmetric_game,
)
from aggregation.finite import dominance


def _equilibria(game: NormalFormGame) -> list[tuple[tuple[float, ...], tuple[float, ...]]]:
    """All equilibria of a float64 two-player game, sorted, rounded to 9 digits."""
    found = []
    for e in support_enumeration(game):
        found.append(tuple(tuple(round(p, 9) + 0.0 for p in s.tolist()) for s in e.strategies))
    return sorted(found)


def _expected(*profiles) -> list:
    return sorted(
        tuple(tuple(round(float(p), 9) + 0.0 for p in s) for s in profile) for profile in profiles
    )


def test_prisoners_dilemma():
    for kwargs in ({}, {"temptation": 4.0, "reward": 2.0, "punishment": -1.0, "sucker": -3.0}):
        pd = prisoners_dilemma(**kwargs, dtype=torch.float64)
        assert pure_equilibria(pd).actions.tolist() == [[1, 1]]
        assert _equilibria(pd) == _expected(((0, 1), (0, 1)))
        assert bool(is_symmetric(pd))
    pd = prisoners_dilemma()
    assert pd.A.tolist() == [[3.0, 0.0], [5.0, 1.0]] and pd.B.tolist() == [[3.0, 5.0], [0.0, 1.0]]
    with pytest.raises(ValueError, match="temptation > reward > punishment > sucker"):
        prisoners_dilemma(reward=6.0)


def test_matching_pennies():
    game = matching_pennies(stake=2.0, dtype=torch.float64)
    assert bool(game.is_zero_sum()) and int(pure_equilibria(game).count) == 0
    assert _equilibria(game) == _expected(((0.5, 0.5), (0.5, 0.5)))
    with pytest.raises(ValueError, match="stake"):
        matching_pennies(stake=0.0)


@pytest.mark.parametrize("high, low", [(2.0, 1.0), (3.0, 1.0), (5.0, 4.5)])
def test_battle_of_the_sexes(high, low):
    game = battle_of_the_sexes(high=high, low=low, dtype=torch.float64)
    assert pure_equilibria(game).actions.tolist() == [[0, 0], [1, 1]]
    p, q = high / (high + low), low / (high + low)
    assert _equilibria(game) == _expected(
        ((1, 0), (1, 0)), ((0, 1), (0, 1)), ((p, 1 - p), (q, 1 - q))
    )
    with pytest.raises(ValueError, match="high > low > 0"):
        battle_of_the_sexes(high=1.0, low=2.0)


@pytest.mark.parametrize("win, loss", [(1.0, 1.0), (2.0, 1.0), (1.0, 3.0)])
def test_rock_paper_scissors(win, loss):
    game = rock_paper_scissors(win=win, loss=loss, dtype=torch.float64)
    third = (1 / 3, 1 / 3, 1 / 3)
    assert _equilibria(game) == _expected((third, third))
    assert int(pure_equilibria(game).count) == 0 and bool(is_symmetric(game))
    assert bool(game.is_zero_sum()) == (win == loss)
    eq = support_enumeration(game)
    value = (win - loss) / 3
    torch.testing.assert_close(
        game.expected_payoffs([s[0] for s in eq.strategies]),
        torch.tensor([value, value], dtype=torch.float64),
    )
    with pytest.raises(ValueError, match="win and loss"):
        rock_paper_scissors(loss=-1.0)


@pytest.mark.parametrize("beta", [-0.5, 0.0, 0.3, 0.9])
def test_shapley_game(beta):
    game = shapley_game(beta=beta, dtype=torch.float64)
    third = (1 / 3, 1 / 3, 1 / 3)
    assert _equilibria(game) == _expected((third, third))
    assert int(pure_equilibria(game).count) == 0
    with pytest.raises(ValueError, match="beta"):
        shapley_game(beta=1.0)


@pytest.mark.parametrize("values", [(2.0, 1.0), (3.0, 2.0, 1.0), (1.0, 1.0, 1.0)])
def test_coordination_game(values):
    game = coordination_game(values, dtype=torch.float64)
    m = len(values)
    assert pure_equilibria(game).actions.tolist() == [[k, k] for k in range(m)]
    expected = []
    for r in range(1, m + 1):
        for support in itertools.combinations(range(m), r):
            weights = [1 / values[k] if k in support else 0.0 for k in range(m)]
            mix = tuple(w / sum(weights) for w in weights)
            expected.append((mix, mix))
    assert len(expected) == 2**m - 1
    assert _equilibria(game) == _expected(*expected)
    with pytest.raises(ValueError, match="> 0"):
        coordination_game((1.0, 0.0))


@pytest.mark.parametrize("first, second", [(1.0, 1.0), (3.0, 1.0)])
def test_anti_coordination_game(first, second):
    game = anti_coordination_game(first=first, second=second, dtype=torch.float64)
    assert pure_equilibria(game).actions.tolist() == [[0, 1], [1, 0]]
    p = first / (first + second)
    assert _equilibria(game) == _expected(
        ((1, 0), (0, 1)), ((0, 1), (1, 0)), ((p, 1 - p), (p, 1 - p))
    )
    assert bool(is_symmetric(game))


def test_constructor_dtype_device_and_types():
    assert matching_pennies().dtype == torch.get_default_dtype()
    assert shapley_game(dtype=torch.float16).dtype == torch.float16
    assert prisoners_dilemma(device="cpu").device.type == "cpu"
    with pytest.raises(TypeError, match="dtype"):
        matching_pennies(dtype=torch.int64)
    with pytest.raises(TypeError, match="beta"):
        shapley_game(beta="0.1")


# ------------------------------------------------------------------ random games
def test_random_game_shape_range_and_seeding():
    g = random_game((3, 2, 4), batch_shape=(5, 2), low=-2.0, high=3.0, seed=1)
    assert g.payoffs.shape == (5, 2, 3, 3, 2, 4) and g.num_players == 3
    assert float(g.payoffs.min()) >= -2.0 and float(g.payoffs.max()) < 3.0
    again = random_game((3, 2, 4), batch_shape=(5, 2), low=-2.0, high=3.0, seed=1)
    assert torch.equal(g.payoffs, again.payoffs)
    other = random_game((3, 2, 4), batch_shape=(5, 2), low=-2.0, high=3.0, seed=2)
    assert not torch.equal(g.payoffs, other.payoffs)
    big = random_game((4, 4), batch_shape=4000, dtype=torch.float64, seed=0).payoffs
    assert abs(float(big.mean()) - 0.5) < 0.01 and abs(float(big.var()) - 1 / 12) < 0.005
    assert random_game((2, 2), batch_shape=(0,)).payoffs.shape == (0, 2, 2, 2)
    assert random_game((2, 2), dtype=torch.bfloat16, seed=0).dtype == torch.bfloat16


def test_random_game_generator_equals_seed_and_bad_input():
    gen = torch.Generator().manual_seed(7)
    a = random_game((2, 3), batch_shape=(4,), generator=gen).payoffs
    b = random_game((2, 3), batch_shape=(4,), seed=7).payoffs
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="either generator or seed"):
        random_game((2, 2), seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="low must be < high"):
        random_game((2, 2), low=1.0, high=1.0)
    with pytest.raises(TypeError, match="num_actions"):
        random_game(3)
    with pytest.raises(ValueError, match="num_actions\\[1\\]"):
        random_game((2, 0))


@pytest.mark.parametrize("n", [2, 3])
def test_covariance_game_empirical_correlation(n):
    for rho in (-1.0 / (n - 1), -0.2, 0.0, 0.6, 1.0):
        g = covariance_game((4,) * n, rho, batch_shape=(2000,), dtype=torch.float64, seed=3)
        x = g.payoffs.movedim(1, -1).reshape(-1, n)  # (samples, N)
        assert abs(float(x.mean())) < 0.02
        torch.testing.assert_close(x.var(0), torch.ones(n, dtype=torch.float64), atol=0.04, rtol=0)
        corr = torch.corrcoef(x.T)  # (N, N)
        off = corr[~torch.eye(n, dtype=torch.bool)]
        assert (off - rho).abs().max() < 0.03, (rho, off)
    same = covariance_game((3, 3), 1.0, seed=0).payoffs
    torch.testing.assert_close(same[0], same[1])  # common interest
    zero_sum = covariance_game((3, 3), -1.0, dtype=torch.float64, seed=0)
    assert bool(zero_sum.is_zero_sum())


def test_covariance_game_bad_rho():
    with pytest.raises(ValueError, match=r"rho must lie in \[-1/\(N-1\), 1\]"):
        covariance_game((2, 2, 2), -0.6)
    with pytest.raises(ValueError, match="rho"):
        covariance_game((2, 2), 1.1)
    with pytest.raises(ValueError, match="at least 2 players"):
        covariance_game((3,), 0.0)


# ------------------------------------------------------------------ symmetric games
def test_symmetric_game_is_symmetric_and_its_equilibria_too():
    A = torch.randn(20, 3, 3, dtype=torch.float64)
    game = symmetric_game(A)
    assert torch.equal(game.B, A.transpose(-1, -2)) and bool(is_symmetric(game).all())
    eqs = pure_equilibria(game)
    for b in range(20):
        found = {tuple(r) for r in eqs.actions[b][eqs.valid[b]].tolist()}
        assert found == {(c, r) for r, c in found}  # closed under swapping the players
    assert not bool(is_symmetric(NormalFormGame.bimatrix(A, A)).any())
    assert not bool(is_symmetric(random_game((2, 3), seed=0)))
    with pytest.raises(ValueError, match="square"):
        symmetric_game(torch.zeros(2, 3))


def test_is_symmetric_three_players():
    # P_i(a) = f(a_i, multiset of the others' actions) is symmetric
    f = torch.randn(2, 3, dtype=torch.float64)  # own action x number of others playing 1
    P = torch.zeros(3, 2, 2, 2, dtype=torch.float64)
    for a in itertools.product(range(2), repeat=3):
        for i in range(3):
            P[(i, *a)] = f[a[i], sum(a) - a[i]]
    game = NormalFormGame(P, num_players=3)
    assert bool(is_symmetric(game))
    bumped = P.clone()
    bumped[0, 0, 1, 0] += 1e-3  # breaks the symmetry between players 1 and 2
    assert not bool(is_symmetric(NormalFormGame(bumped, num_players=3)))
    assert bool(is_symmetric(NormalFormGame(bumped, num_players=3), tol=1e-2))


def test_docstring_examples_run():
    from aggregation.games import classic, random_games

    for module in (classic, random_games, dominance):
        result = doctest.testmod(module)
        assert result.attempted >= 2 and result.failed == 0, module.__name__
