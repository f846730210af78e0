"""The verification kit ``aggregation.testing``: strategies keep their promises,
helpers accept right answers and reject wrong ones with useful messages."""

from __future__ import annotations

import doctest
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aggregation
import aggregation.testing as kit
from aggregation import EquilibriumSet, NormalFormGame, ScaleGame
from aggregation.testing import (
    assert_causal,
    assert_kkt,
    assert_nash,
    assert_scale_equilibrium,
    assert_strongly_monotone,
    degenerate_games,
    mixed_profiles,
    normal_form_games,
    planted_scale_games,
    potential_games,
    profiles_for,
    scale_game_params,
    simplex_qps,
    zero_sum_games,
)

FAST = settings(max_examples=25, deadline=None)
BATCHES = st.sampled_from([(), (3,), (2, 2)])


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


# ------------------------------------------------------------ packaging
def test_hypothesis_is_optional():
    """``import aggregation`` never imports hypothesis; without it the kit's
    helpers still work and its strategies raise a clear ImportError."""
    proc = _run(
        """
        import sys
        import aggregation
        print("hypothesis" in sys.modules, "aggregation.testing" in sys.modules)
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "hypothesis" or name.startswith("hypothesis."):
                    raise ModuleNotFoundError("No module named 'hypothesis'", name="hypothesis")
        sys.meta_path.insert(0, Block())
        import torch
        from aggregation import NormalFormGame
        from aggregation.testing import assert_nash  # helpers work without hypothesis
        g = NormalFormGame.zero_sum(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
        assert_nash(g, (torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.5])))
        try:
            from aggregation.testing import normal_form_games
        except ImportError as err:
            print(err)
        """
    )
    assert proc.returncode == 0, proc.stderr
    first, message = proc.stdout.split("\n", 1)
    assert first.split() == ["False", "False"]  # importing aggregation loads neither
    assert "needs the optional dependency 'hypothesis'" in message
    assert "pip install hypothesis" in message


def test_public_names_are_exported():
    assert sorted(kit.__all__) == sorted(set(kit.__all__))
    for name in kit.__all__:
        assert getattr(kit, name).__doc__, f"{name} has no docstring"


def test_docstring_examples_run():
    from aggregation.testing import assertions

    result = doctest.testmod(assertions, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0


def test_user_example_from_the_module_docstring():
    """The ten-line example (README): a user checks their own zero-sum solver."""
    from scipy.optimize import linprog

    def maximin(A):  # max_x min_j (x^T A)_j by linear programming
        m, n = A.shape
        c = np.r_[np.zeros(m), -1.0]
        A_ub = np.c_[-A.T, np.ones(n)]
        eq = [np.r_[np.ones(m), 0.0]]
        bounds = [(0, None)] * m + [(None, None)]
        return linprog(c, A_ub=A_ub, b_ub=np.zeros(n), A_eq=eq, b_eq=[1.0], bounds=bounds).x[:m]

    def my_solver(game):
        A = game.A.numpy()
        return torch.from_numpy(maximin(A)), torch.from_numpy(maximin(-A.T))

    @settings(max_examples=15, deadline=None)
    @given(zero_sum_games(num_actions=st.integers(1, 4)))
    def test_my_solver(game):
        assert_nash(game, my_solver(game), tol=1e-6)

    test_my_solver()

    # The same check fails a broken solver (uniform play), naming player and action.
    @settings(max_examples=15, deadline=None, database=None)
    @given(zero_sum_games(num_actions=3))
    def test_broken_solver(game):
        uniform = torch.full((3,), 1 / 3, dtype=torch.float64)
        assert_nash(game, (uniform, uniform), tol=1e-6)

    with pytest.raises(AssertionError, match="gains by deviating to action"):
        test_broken_solver()


def _draw(strategy):
    """Draw one example inside hypothesis (so errors in the strategy surface)."""

    @settings(max_examples=1, database=None, deadline=None)
    @given(strategy)
    def run(value):
        pass

    run()


# ------------------------------------------------------------ strategies
@FAST
@given(normal_form_games(st.integers(1, 3), st.integers(1, 3), batch_shape=BATCHES), st.data())
def test_normal_form_games_and_profiles(game, data):
    assert game.dtype == torch.float64
    profile = data.draw(profiles_for(game))
    for s, a in zip(profile, game.num_actions):
        assert s.shape == (*game.batch_shape, a)
        assert bool((s >= 0).all())
        torch.testing.assert_close(s.sum(-1), torch.ones(game.batch_shape, dtype=torch.float64))
    # The kit's regret is the library's regret (two paths pinned together).
    regret = aggregation.regret(game, profile)
    kit_regret = assert_nash(game, profile, tol=1e9)
    torch.testing.assert_close(kit_regret, regret, atol=1e-12, rtol=0)


@FAST
@given(zero_sum_games(st.integers(1, 4), num_players=st.integers(2, 4), batch_shape=BATCHES))
def test_zero_sum_games_sum_to_zero(game):
    assert bool(game.is_zero_sum(1e-9).all())


@FAST
@given(potential_games(st.integers(2, 3), st.integers(1, 3), batch_shape=BATCHES))
def test_potential_games_have_an_exact_potential(game):
    # Monderer & Shapley (1996, Cor. 2.9): a game is an exact potential game iff
    # the payoff changes around every closed path of unilateral deviations of two
    # players sum to zero.
    P = game.payoffs.numpy()
    n = game.num_players
    b = len(game.batch_shape)
    for i in range(n):
        for j in range(i + 1, n):
            ui = np.moveaxis(P.take(i, axis=b), (b + i, b + j), (-2, -1))
            uj = np.moveaxis(P.take(j, axis=b), (b + i, b + j), (-2, -1))
            # Cycle (x, y) -> (x', y) -> (x', y') -> (x, y') -> (x, y) for all x, x', y, y'.
            # Arrays indexed [..., x, x', y, y'].
            cycle = (
                (ui[..., None, :, :, None] - ui[..., :, None, :, None])  # i: (x,y) -> (x',y)
                + (uj[..., None, :, None, :] - uj[..., None, :, :, None])  # j: -> (x',y')
                + (ui[..., :, None, None, :] - ui[..., None, :, None, :])  # i: -> (x,y')
                + (uj[..., :, None, :, None] - uj[..., :, None, None, :])  # j: -> (x,y)
            )
            assert np.abs(cycle).max() <= 1e-9


@FAST
@given(degenerate_games(st.integers(2, 3), st.integers(2, 3), batch_shape=BATCHES))
def test_degenerate_games_are_degenerate(game):
    P = game.payoffs.numpy()
    b = len(game.batch_shape)
    n = game.num_players
    binary = set(np.unique(P)) <= {0.0, 1.0}
    tied = False
    for i in range(n):
        axis = b + 1 + i
        slices = [np.take(P, k, axis=axis) for k in range(P.shape[axis])]
        own = [np.take(P.take(i, axis=b), k, axis=b + i) for k in range(P.shape[axis])]
        dup = any(
            np.array_equal(slices[k], slices[m])
            for k in range(len(slices))
            for m in range(k + 1, len(slices))
        )
        indifferent = all(np.array_equal(own[0], o) for o in own)
        tied = tied or dup or indifferent
    assert binary or tied


@FAST
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), BATCHES, st.data())
def test_mixed_profiles_are_on_the_simplex(actions, batch, data):
    profile = data.draw(mixed_profiles(actions, batch, zeros=False))
    for s, a in zip(profile, actions):
        assert s.shape == (*batch, a) and bool((s > 0).all())
        assert float((s.sum(-1) - 1).abs().max()) <= 1e-12


@FAST
@given(
    scale_game_params(st.integers(1, 6), batch_shape=BATCHES, masked=True, margin=0.2),
    scale_game_params(st.integers(1, 6), symmetric=True, nonnegative=True, margin=0.2),
)
def test_scale_game_params_are_monotone_by_construction(params, sym):
    lam = assert_strongly_monotone(params.C, margin=0.2 - 1e-9)
    assert bool((lam >= 0.2 - 1e-9).all())
    assert bool(params.mask.any(-1).all())
    ScaleGame(params.a, params.C, params.mask)  # accepted by the library
    assert torch.equal(sym.C, sym.C.transpose(-1, -2))
    off = sym.C - torch.diag_embed(torch.diagonal(sym.C, dim1=-2, dim2=-1))
    assert bool((off >= 0).all())


@settings(max_examples=5, deadline=None)
@given(kit.scale_games(num_scales=3, symmetric=True, batch_shape=(2,)))
def test_scale_games_build_library_objects(game):
    assert isinstance(game, ScaleGame) and game.num_players == 3
    assert bool((game.min_eigenvalue() >= 0.1 - 1e-9).all())


@FAST
@given(
    planted_scale_games(st.integers(1, 6), batch_shape=BATCHES, masked=True, strict=True),
    planted_scale_games(st.integers(2, 6), strict=False),
)
def test_planted_scale_games_know_their_equilibrium(planted, degenerate):
    a, C, mask, x = planted
    regret = assert_scale_equilibrium((a, C, mask), x, tol=1e-12)
    # The kit's regret is the library's (two paths pinned together).
    torch.testing.assert_close(regret, ScaleGame(a, C, mask).regret(x), atol=1e-12, rtol=0)
    slack = (C * (mask.unsqueeze(-1) & mask.unsqueeze(-2))) @ x.unsqueeze(-1)
    slack = slack.squeeze(-1) - a
    inactive = mask & (x == 0)
    assert bool((slack[inactive] >= 0.1 - 1e-9).all())  # strict complementarity
    a, C, _, x = degenerate
    assert_scale_equilibrium((a, C), x, tol=1e-12)
    weak = (x == 0) & ((C @ x - a).abs() <= 1e-12)
    assert bool(weak.any())


@FAST
@given(simplex_qps(st.integers(1, 6), batch_shape=BATCHES, margin=0.1))
def test_simplex_qps_are_positive_definite(problem):
    assert torch.equal(problem.Q, problem.Q.transpose(-1, -2))
    assert bool((torch.linalg.eigvalsh(problem.Q)[..., 0] >= 0.1 - 1e-9).all())


def test_strategies_reject_bad_arguments():
    with pytest.raises(ValueError, match="num_players"):
        _draw(normal_form_games(num_players=0))
    with pytest.raises(ValueError, match="batch_shape"):
        _draw(normal_form_games(batch_shape=(0,)))
    with pytest.raises(TypeError, match="dtype"):
        _draw(scale_game_params(dtype=torch.int64))
    with pytest.raises(ValueError, match="margin"):
        _draw(scale_game_params(margin=-1.0))
    with pytest.raises(ValueError, match="2 players"):
        _draw(zero_sum_games(2, num_players=1))
    with pytest.raises(TypeError, match="NormalFormGame"):
        profiles_for("not a game")


# ------------------------------------------------------------ assertions
def test_assert_nash_messages_and_batches():
    A = torch.tensor([[[3.0, 0.0], [5.0, 1.0]], [[1.0, -1.0], [-1.0, 1.0]]], dtype=torch.float64)
    B = torch.stack([A[0].T, -A[1]])  # a prisoner's dilemma and matching pennies
    game = NormalFormGame.bimatrix(A, B)
    defect = torch.tensor([0.0, 1.0], dtype=torch.float64)
    cooperate = torch.tensor([1.0, 0.0], dtype=torch.float64)
    regret = assert_nash(game[0], (defect, defect), tol=0.0)
    assert regret.tolist() == [0.0, 0.0]
    with pytest.raises(AssertionError) as info:
        assert_nash(game[0], (cooperate, defect))
    message = str(info.value)
    assert "player 0 gains by deviating to action 1" in message
    assert "regret 1 > tol" in message
    both = (defect.expand(2, 2), defect.expand(2, 2))
    with pytest.raises(AssertionError, match=r"1 of 2 batch elements fail .* batch element \(1,\)"):
        assert_nash(game, both, tol=1e-6)
    with pytest.raises(AssertionError, match="off the simplex"):
        assert_nash(game[0], (torch.tensor([0.6, 0.6], dtype=torch.float64), defect))
    with pytest.raises(AssertionError, match="NaN"):
        assert_nash(game[0], (torch.tensor([float("nan"), 1.0]), defect))
    with pytest.raises(TypeError, match="NormalFormGame"):
        assert_nash(A, (defect, defect))
    with pytest.raises(ValueError, match="tol"):
        assert_nash(game[0], (defect, defect), tol=-1.0)
    with pytest.raises(ValueError, match="one strategy per player"):
        assert_nash(game[0], (defect,))


def test_assert_nash_on_an_equilibrium_set():
    game = NormalFormGame.bimatrix(
        torch.eye(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)
    )
    pure = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    eqs = EquilibriumSet(
        strategies=(pure, pure),
        regret=torch.zeros(3, 2, dtype=torch.float64),
        valid=torch.tensor([True, True, False]),
        count=torch.tensor(2),
        degenerate=torch.tensor(False),
        method="test",
        tol=0.0,
    )
    assert assert_nash(game, eqs, tol=0.0).shape == (3, 2)  # the padding slot is ignored
    wrong = EquilibriumSet(
        strategies=(pure, pure[[1, 0, 2]]),  # (e0, e1) and (e1, e0): miscoordinated
        regret=torch.zeros(3, 2, dtype=torch.float64),
        valid=torch.tensor([True, True, False]),
        count=torch.tensor(2),
        degenerate=torch.tensor(False),
        method="test",
        tol=0.0,
    )
    with pytest.raises(AssertionError, match="not a 1e-06-Nash"):
        assert_nash(game, wrong)


def test_assert_scale_equilibrium_messages():
    a = torch.tensor([1.0, 1.0], dtype=torch.float64)
    C = torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    assert_scale_equilibrium(ScaleGame(a, C), torch.tensor([0.0, 1.0], dtype=torch.float64))
    with pytest.raises(AssertionError, match=r"player 0 plays x = 0 but its best response is 1"):
        assert_scale_equilibrium((a, C), torch.tensor([0.0, 0.0], dtype=torch.float64))
    with pytest.raises(AssertionError, match="negative strategy"):
        assert_scale_equilibrium((a, C), torch.tensor([-0.1, 1.0], dtype=torch.float64))
    with pytest.raises(AssertionError, match="absent player 0 plays"):
        assert_scale_equilibrium((a, C, torch.tensor([False, True])), torch.tensor([0.5, 1.0]))
    assert_scale_equilibrium((a, C, torch.tensor([False, True])), torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="ScaleGame"):
        assert_scale_equilibrium(object(), torch.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        assert_scale_equilibrium((a, C[:1]), torch.zeros(2))
    # A non-positive diagonal: unbounded best response, infinite regret, rejected.
    with pytest.raises(AssertionError, match="inf"):
        assert_scale_equilibrium(
            (a, torch.tensor([[0.0, 0.0], [0.0, 1.0]])), torch.tensor([0.0, 1.0])
        )


def test_assert_strongly_monotone_and_kkt_batches():
    C = torch.stack(
        [
            torch.eye(2),
            torch.tensor([[1.0, 3.0], [-3.0, 1.0]]),
            torch.tensor([[1.0, 2.0], [2.0, 1.0]]),
        ]
    )
    with pytest.raises(AssertionError, match=r"1 of 3 batch elements fail .* \(2,\)"):
        assert_strongly_monotone(C)
    assert assert_strongly_monotone(C[:2], margin=0.5).tolist() == [1.0, 1.0]
    problem = (torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.eye(2))
    gap = assert_kkt(problem, torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    assert gap.tolist() == [0.0, 0.0]
    result = aggregation.convex_aggregate(*problem)
    assert_kkt(problem, result)  # accepts the result object


def test_assert_causal():
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    assert_causal(lambda z: z.cumsum(1), x)
    with pytest.raises(AssertionError, match="changed the output at position 3"):
        assert_causal(lambda z: torch.roll(z, -1, dims=1).cumsum(1), x, cuts=[3])
    tokens = torch.randint(0, 5, (2, 6))
    assert_causal(lambda z: z.cumsum(1), tokens)
    with pytest.raises(AssertionError, match="not causal"):
        assert_causal(lambda z: z.flip(1).cumsum(1), tokens)
    with pytest.raises(TypeError, match="tensor"):
        assert_causal(lambda z: z, [1, 2, 3])


@settings(max_examples=6, deadline=None)
@given(
    normal_form_games(2, st.integers(1, 4), batch_shape=(3,)),
    zero_sum_games(st.integers(1, 4), batch_shape=(3,)),
    degenerate_games(2, st.integers(2, 3)),
)
def test_library_solvers_pass_the_kit(game, zero_sum, degenerate):
    """The project's finite-game solvers, checked by the kit (the tolerance they promise)."""
    for result in (aggregation.lemke_howson(game), aggregation.support_enumeration(game)):
        assert_nash(game, result, tol=result.tol)
    assert_nash(zero_sum, aggregation.linear_program(zero_sum), tol=1e-9)
    every = aggregation.support_enumeration(degenerate)
    assert_nash(degenerate, every, tol=every.tol)  # degenerate games: whatever is returned is Nash
