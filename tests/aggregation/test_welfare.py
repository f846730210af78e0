"""Welfare, social optimum and price of anarchy of the scale game."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import ScaleGame, price_of_anarchy, solve_scale_game, welfare
from aggregation.scale.welfare import STATUS, welfare_matrix
from aggregation.testing.strategies import scale_game_params

D = torch.float64


def test_cournot_duopoly_by_hand():
    game = ScaleGame(
        torch.tensor([1.0, 1.0], dtype=D), torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=D)
    )
    out = price_of_anarchy(game)
    assert bool(out.defined) and int(out.status) == 0 and int(out.num_equilibria) == 1
    torch.testing.assert_close(out.welfare_nash, torch.tensor(2 / 9, dtype=D))
    torch.testing.assert_close(out.welfare_optimum, torch.tensor(0.25, dtype=D))
    torch.testing.assert_close(out.ratio, torch.tensor(9 / 8, dtype=D))
    torch.testing.assert_close(out.x_nash, torch.tensor([1 / 3, 1 / 3], dtype=D))
    torch.testing.assert_close(welfare(game, out.x_optimum), out.welfare_optimum)
    assert out.describe_status() == [STATUS[0]]


def test_welfare_is_the_sum_of_utilities_and_uses_M():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 3, generator=g, dtype=D)
    C = torch.randn(4, 3, 3, generator=g, dtype=D).abs() + torch.eye(3, dtype=D)
    x = torch.rand(4, 3, generator=g, dtype=D)
    game = ScaleGame(a, C)
    M = welfare_matrix(C)
    direct = (a * x).sum(-1) - 0.5 * (x * (M @ x.unsqueeze(-1)).squeeze(-1)).sum(-1)
    torch.testing.assert_close(welfare(game, x), direct)
    torch.testing.assert_close(welfare(game, x), game.utilities(x).sum(-1))


@settings(max_examples=20, deadline=None)
@given(scale_game_params(st.integers(1, 4), batch_shape=(5,), nonnegative=True, masked=True))
def test_nash_welfare_never_exceeds_the_optimum(params):
    """Nonnegative C: M is strictly copositive, so the optimum exists."""
    game = ScaleGame(params.a, params.C, params.mask)
    out = price_of_anarchy(game)
    assert bool(out.defined.all())
    assert bool((out.welfare_nash <= out.welfare_optimum + 1e-10).all())
    assert bool((out.welfare_best_nash <= out.welfare_optimum + 1e-10).all())
    assert bool((out.ratio >= 1).all()) and bool((out.price_of_stability <= out.ratio).all())
    nash = solve_scale_game(game)
    torch.testing.assert_close(out.x_nash, nash.x, atol=1e-9, rtol=0)  # unique equilibrium
    # no random feasible point beats the optimum
    probe = torch.rand(200, *params.a.shape, dtype=D) * 3 * game.present()
    assert bool((welfare(game, probe) <= out.welfare_optimum + 1e-9).all())


def test_unbounded_welfare_is_reported_not_a_number():
    # strong complements: M = [[1, -3], [-3, 1]] is not copositive, W(t(1,1)) -> inf
    C = torch.tensor([[1.0, -1.5], [-1.5, 1.0]], dtype=D)
    out = price_of_anarchy((torch.ones(2, dtype=D), C))
    assert not bool(out.defined) and int(out.status) == 1
    assert float(out.ratio) == float("inf") and float(out.welfare_optimum) == float("inf")
    assert not bool(torch.isnan(out.ratio).any())


def test_copositive_but_not_strictly_is_undetermined():
    # M = [[1, -1], [-1, 1]] (C with off-diagonal -1/2 ... here C = M's halves): x^T M x = (x1-x2)^2
    C = torch.tensor([[1.0, -1.0], [0.0, 1.0]], dtype=D)  # M = [[1, -1], [-1, 1]]
    torch.testing.assert_close(welfare_matrix(C), torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=D))
    out = price_of_anarchy((torch.tensor([1.0, -1.0], dtype=D), C))
    assert int(out.status) == 2 and not bool(out.defined)
    grows = price_of_anarchy((torch.tensor([1.0, 1.0], dtype=D), C))  # W(t(1,1)) = 2t
    assert int(grows.status) == 1


def test_several_equilibria_worst_and_best():
    # coordination: C = [[1, 2], [2, 1]] has equilibria (1, 0), (0, 1) and (1/3, 1/3)
    C = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=D)
    out = price_of_anarchy((torch.ones(2, dtype=D), C))
    assert int(out.num_equilibria) == 3
    assert float(out.welfare_best_nash) == pytest.approx(0.5)
    assert float(out.welfare_nash) <= float(out.welfare_best_nash)


def test_no_equilibrium_is_status_3():
    # M = C + C^T - D = [[1, 0], [0, 1]] is positive definite, but the game has no equilibrium
    C = torch.tensor([[1.0, -3.0], [3.0, 1.0]], dtype=D) * 0 + torch.tensor(
        [[1.0, 1.0], [-1.0, 1.0]], dtype=D
    )
    out = price_of_anarchy((torch.tensor([1.0, 1.0], dtype=D), C))
    assert int(out.num_equilibria) >= 1  # a P-matrix: here there is one
    C_bad = torch.tensor([[1.0, -2.0], [-2.0, 1.0]], dtype=D)
    bad = price_of_anarchy((torch.tensor([1.0, 1.0], dtype=D), C_bad))
    assert int(bad.num_equilibria) == 0 and not bool(bad.defined)


def test_large_L_positive_definite_case():
    g = torch.Generator().manual_seed(1)
    o = torch.rand(2, 10, 10, generator=g, dtype=D)
    C = o @ o.mT / 10 + torch.eye(10, dtype=D)
    a = torch.rand(2, 10, generator=g, dtype=D)
    out = price_of_anarchy((a, C))
    assert bool(out.defined.all())
    assert bool((out.welfare_nash <= out.welfare_optimum + 1e-8).all())


def test_bad_input():
    with pytest.raises(TypeError, match="game must be a ScaleGame or a pair"):
        price_of_anarchy(np.eye(2))
    with pytest.raises(ValueError, match="game must be a ScaleGame or a pair"):
        price_of_anarchy((torch.ones(2),))
    with pytest.raises(TypeError, match="game must be a ScaleGame"):
        welfare((torch.ones(2), torch.eye(2)), torch.ones(2))
