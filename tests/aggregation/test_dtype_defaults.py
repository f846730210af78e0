"""Default tolerances follow the dtype (aggregation.tolerance): float32 and half games
give the same equilibria as float64 on random games; a tolerance below the dtype's
resolution is refused."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import (
    NormalFormGame,
    default_tol,
    differentiable_bimatrix_nash,
    lemke_howson,
    lemke_howson_enumeration,
    linear_program,
    logit_qre,
    support_enumeration,
    vertex_enumeration,
)

LOW = [torch.float32, torch.float16, torch.bfloat16]


def _random_games(seed: int, batch: int, m: int, n: int, dtype: torch.dtype) -> NormalFormGame:
    """Standard normal payoffs rounded to ``dtype`` (nondegenerate with probability 1)."""
    rng = np.random.default_rng(seed)
    payoffs = torch.from_numpy(rng.standard_normal((batch, 2, m, n))).to(dtype)
    return NormalFormGame(payoffs, num_players=2)


def test_the_table():
    assert [default_tol(d) for d in (torch.float64, *LOW)] == [1e-9, 1e-5, 1e-2, 3e-2]
    with pytest.raises(TypeError, match="dtype must be one of"):
        default_tol(torch.int64)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(2, 5),
    n=st.integers(2, 5),
    dtype=st.sampled_from(LOW),
)
def test_low_precision_counts_equal_float64_counts(seed, m, n, dtype):
    game = _random_games(seed, 20, m, n, dtype)
    exact = game.to(torch.float64)  # the same numbers, in float64
    for solver in (support_enumeration, vertex_enumeration, lemke_howson_enumeration):
        low, ref = solver(game), solver(exact)
        assert low.tol == default_tol(dtype) and ref.tol == 1e-9
        assert low.strategies[0].dtype == dtype
        assert torch.equal(low.count, ref.count), solver.__name__
        assert int(low.info["rejected"].sum()) == 0
        assert bool((low.regret[low.valid].double() <= default_tol(dtype)).all())
        # every game has an equilibrium; rounding to half precision can tie payoffs, so a
        # game may be degenerate and its count even: equal counts are the property here
        assert bool((ref.count >= 1).all())
    lh = lemke_howson(game)
    assert bool(lh.converged.all()) and bool((lh.regret.double() <= lh.tol).all())
    assert torch.equal(lh.converged, lemke_howson(exact).converged)


def test_issue_reproduction_float32_4x4():
    # torch.randn float32 4x4 games: before dtype defaults 39 of 200 games had no
    # equilibrium and Lemke-Howson flagged 53 unconverged
    gen = torch.Generator().manual_seed(0)
    game = NormalFormGame(torch.randn(200, 2, 4, 4, generator=gen), num_players=2)
    eqs = support_enumeration(game)
    assert bool((eqs.count >= 1).all())
    assert torch.equal(eqs.count, support_enumeration(game.to(torch.float64)).count)
    assert bool(lemke_howson(game).converged.all())


def test_other_solvers_default_to_the_table():
    gen = torch.Generator().manual_seed(1)
    zero_sum = NormalFormGame.zero_sum(torch.randn(10, 3, 3, generator=gen))
    assert linear_program(zero_sum).tol == 1e-5
    assert bool(linear_program(zero_sum).converged.all())
    assert linear_program(zero_sum.to(torch.float64)).tol == 1e-9
    three = NormalFormGame(torch.randn(4, 3, 2, 2, 2, generator=gen), num_players=3)
    assert logit_qre(three).tol == 1e-5 and logit_qre(three.to(torch.float64)).tol == 1e-9
    A = torch.randn(3, 3, generator=gen)
    assert differentiable_bimatrix_nash(A, -A).tol == 1e-5


@pytest.mark.parametrize(
    "solver",
    [support_enumeration, vertex_enumeration, lemke_howson, lemke_howson_enumeration],
)
def test_tolerance_below_the_resolution_is_refused(solver):
    game = _random_games(0, 2, 3, 3, torch.float32)
    with pytest.raises(ValueError, match=r"tol=1e-09 lies below .*float32.*pass tol=None"):
        solver(game, tol=1e-9)
    with pytest.raises(ValueError, match="float16"):
        solver(game.to(torch.float16), tol=1e-4)
    with pytest.raises(ValueError, match="below the resolution of torch.float64"):
        solver(game.to(torch.float64), tol=0.0)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        solver(game, tol=-1.0)
    assert solver(game, tol=1e-6).tol == 1e-6  # above the resolution: honoured


def test_is_nash_defaults_to_the_coarsest_dtype():
    gen = torch.Generator().manual_seed(5)
    game = NormalFormGame(torch.randn(50, 2, 4, 4, generator=gen), num_players=2)
    eq = lemke_howson(game)  # float32 profiles: regrets of ~1e-7 from rounding alone
    assert float(eq.regret.max()) > 1e-9
    assert bool(game.is_nash(eq.strategies).all())
    exact = game.to(torch.float64)
    profile = tuple(s.double() for s in eq.strategies)  # float64 now, but rounded like float32
    assert not bool(exact.is_nash(profile).all())  # 1e-9: the rounding shows
    assert bool(exact.is_nash(eq.strategies).all())  # float32 strategies: 1e-5
