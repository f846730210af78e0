"""Zero-sum games by linear programming: values against scipy, properties, bad input."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from aggregation import NormalFormGame, linear_program, support_enumeration
from aggregation.testing import assert_nash, zero_sum_games

TOL = 1e-9


def scipy_value(A):
    """The row player's maximin value: max v s.t. x^T A >= v 1, x in the simplex."""
    m, n = A.shape
    c = np.zeros(m + 1)
    c[-1] = -1.0
    res = linprog(
        c,
        A_ub=np.hstack([-A.T, np.ones((n, 1))]),
        b_ub=np.zeros(n),
        A_eq=np.hstack([np.ones((1, m)), np.zeros((1, 1))]),
        b_eq=[1.0],
        bounds=[(0, None)] * m + [(None, None)],
    )
    return res.x[-1]


@pytest.mark.parametrize("m,n", [(1, 1), (1, 4), (3, 1), (2, 2), (3, 3), (4, 6), (6, 6), (8, 5)])
def test_value_and_strategies_against_scipy(m, n):
    rng = np.random.default_rng(m * 10 + n)
    A = rng.normal(size=(100, m, n))
    res = linear_program(NormalFormGame.zero_sum(A))
    assert bool(res.converged.all())
    want = np.array([scipy_value(a) for a in A])
    np.testing.assert_allclose(res.info["value"].numpy(), want, atol=1e-9, rtol=0)
    x, y = res.strategies[0].numpy(), res.strategies[1].numpy()
    # Maximin / minimax: x guarantees the value against every column and y caps every row.
    assert (np.einsum("bm,bmn->bn", x, A).min(-1) >= want - 1e-9).all()
    assert (np.einsum("bmn,bn->bm", A, y).max(-1) <= want + 1e-9).all()
    assert (res.residual <= 1e-9).all()


def test_literature_games():
    pennies = linear_program(NormalFormGame.zero_sum([[1.0, -1.0], [-1.0, 1.0]]))
    torch.testing.assert_close(pennies.strategies[0], torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert abs(float(pennies.info["value"])) <= 1e-12
    rps = linear_program(NormalFormGame.zero_sum([[0, -1, 1], [1, 0, -1], [-1, 1, 0]]))
    torch.testing.assert_close(rps.strategies[1], torch.full((3,), 1 / 3, dtype=torch.float64))
    # A saddle point: pure strategies, value 2.
    saddle = linear_program(NormalFormGame.zero_sum([[3.0, 2.0, 4.0], [1.0, 0.0, 5.0]]))
    assert saddle.strategies[0].tolist() == [1.0, 0.0]
    assert saddle.strategies[1].tolist() == [0.0, 1.0, 0.0]
    assert float(saddle.info["value"]) == pytest.approx(2.0, abs=1e-12)
    # Degenerate: a constant game (every profile optimal) and duplicated rows.
    flat = linear_program(NormalFormGame.zero_sum(torch.full((3, 4), 7.0, dtype=torch.float64)))
    assert bool(flat.converged) and float(flat.info["value"]) == pytest.approx(7.0)
    dup = linear_program(NormalFormGame.zero_sum([[1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]]))
    assert bool(dup.converged) and abs(float(dup.info["value"])) <= 1e-12


def test_value_matches_support_enumeration_set():
    g = torch.Generator().manual_seed(4)
    A = torch.randn(200, 4, 5, generator=g, dtype=torch.float64)
    game = NormalFormGame.zero_sum(A)
    res, eqs = linear_program(game), support_enumeration(game)
    # Every equilibrium of a zero-sum game pays the value.
    pay = torch.einsum("bem,bmn,ben->be", eqs.strategies[0], A, eqs.strategies[1])
    gap = (pay - res.info["value"][:, None]).abs()
    assert (gap[eqs.valid] <= 1e-9).all()


@settings(max_examples=40, deadline=None)
@given(zero_sum_games(num_actions=st.integers(1, 5), batch_shape=(3,)))
def test_every_result_is_an_equilibrium(game):
    res = linear_program(game, tol=TOL)
    assert bool(res.converged.all())
    assert_nash(game, res, tol=TOL)


@settings(max_examples=25, deadline=None)
@given(zero_sum_games(num_actions=st.integers(1, 5), batch_shape=(4,), jitter=0.0))
def test_batched_equals_per_game_loop(game):
    batched = linear_program(game)
    for i in range(4):
        alone = linear_program(game[i])
        torch.testing.assert_close(batched.strategies[0][i], alone.strategies[0])
        torch.testing.assert_close(batched.strategies[1][i], alone.strategies[1])
        torch.testing.assert_close(batched.info["value"][i], alone.info["value"])


@settings(max_examples=25, deadline=None)
@given(
    zero_sum_games(num_actions=st.integers(1, 5), batch_shape=(2,)),
    st.floats(0.01, 100.0),
    st.floats(-50.0, 50.0),
)
def test_value_moves_affinely_and_strategies_stay_optimal(game, a, b):
    moved = NormalFormGame.zero_sum(a * game.A + b)
    before, after = linear_program(game), linear_program(moved, tol=1e-6)
    torch.testing.assert_close(after.info["value"], a * before.info["value"] + b)
    assert_nash(moved, before, tol=1e-6)  # optimal strategies are invariant (as a set)
    assert_nash(game, after, tol=1e-6 / a)


def test_pivot_limit_and_dtype():
    game = NormalFormGame.zero_sum(torch.randn(40, 6, 6))
    with pytest.warns(RuntimeWarning, match="linear_program"):
        cut = linear_program(game, max_pivots=1, tol=1e-5)
    assert bool(cut.info["hit_pivot_limit"].any())
    assert not bool(cut.converged[cut.info["hit_pivot_limit"]].any())
    res = linear_program(game, tol=1e-5)
    assert res.strategies[0].dtype == res.info["value"].dtype == torch.float32
    assert bool(res.converged.all())


def test_bad_input():
    with pytest.raises(ValueError, match="game must be zero-sum"):
        linear_program(NormalFormGame.bimatrix([[1.0, 0.0]], [[1.0, 0.0]]))
    with pytest.raises(ValueError, match="game must be a two-player"):
        linear_program(NormalFormGame(torch.zeros(3, 2, 2, 2), num_players=3))
    with pytest.raises(TypeError, match="game must be a NormalFormGame"):
        linear_program(torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match="tol"):
        linear_program(NormalFormGame.zero_sum([[1.0]]), tol=-1.0)
    with pytest.raises(ValueError, match="max_pivots"):
        linear_program(NormalFormGame.zero_sum([[1.0]]), max_pivots=0)
