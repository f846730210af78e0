"""Trajectories of the learning dynamics (``path_every``) and their running means."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation import (
    NormalFormGame,
    best_response_dynamics,
    fictitious_play,
    regret,
    regret_matching,
    replicator_dynamics,
)


def _quiet(solver, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return solver(*args, **kwargs)


# Each dynamic with its round-count argument; tolerances loose enough that some
# games stop early, so that frozen games are exercised too.
DYNAMICS = {
    "fictitious_play": (fictitious_play, "iterations", {"tol": 0.05}),
    "fictitious_play[smooth]": (fictitious_play, "iterations", {"tol": 0.05, "mode": "smooth"}),
    "regret_matching": (regret_matching, "iterations", {"tol": 0.05}),
    "regret_matching_plus": (regret_matching, "iterations", {"tol": 0.05, "plus": True}),
    "replicator_dynamics": (replicator_dynamics, "max_iter", {"tol": 0.05}),
    "best_response_dynamics": (best_response_dynamics, "max_iter", {}),
    "best_response_dynamics[alternating]": (
        best_response_dynamics,
        "max_iter",
        {"mode": "alternating"},
    ),
}


def _run(name: str, game: NormalFormGame, rounds: int, every: int | None):
    solver, count, kwargs = DYNAMICS[name]
    return _quiet(solver, game, **{count: rounds}, path_every=every, **kwargs)


@pytest.mark.parametrize("name", sorted(DYNAMICS))
def test_no_path_unless_asked(name):
    game = NormalFormGame(torch.randn(2, 2, 2, 2, dtype=torch.float64), num_players=2)
    assert _run(name, game, 10, None).path is None


@pytest.mark.parametrize("name", sorted(DYNAMICS))
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), every=st.sampled_from([1, 3, 5]))
def test_path_ends_at_the_result_and_batch_equals_one_by_one(name, seed, every):
    gen = torch.Generator().manual_seed(seed)
    game = NormalFormGame(
        torch.randn(4, 3, 2, 3, 2, generator=gen, dtype=torch.float64), num_players=3
    )
    rounds = 6 * every  # a multiple: the last point is the returned profile
    out = _run(name, game, rounds, every)
    assert len(out.path) == 3
    for i, a in enumerate((2, 3, 2)):
        assert out.path[i].shape == (4, rounds // every + 1, a)
        assert out.path[i].dtype == out.strategies[i].dtype
        assert torch.equal(out.path[i][:, -1], out.strategies[i])
        torch.testing.assert_close(
            out.path[i].sum(-1), torch.ones(4, rounds // every + 1, dtype=torch.float64)
        )
    for b in range(4):
        alone = _run(name, game[b], rounds, every)
        for i in range(3):
            # equal up to the last bits of exp (torch's vectorised and scalar exp
            # differ by an ulp, and which one runs depends on the batch size)
            torch.testing.assert_close(alone.path[i], out.path[i][b], atol=1e-12, rtol=1e-12)
            if name.startswith("best_response"):
                assert torch.equal(alone.path[i], out.path[i][b])
    # a path of every round, subsampled, is the path of every `every` rounds
    fine = _run(name, game, rounds, 1)
    for i in range(3):
        assert torch.equal(fine.path[i][:, ::every], out.path[i])


def test_path_points_are_the_results_of_shorter_runs():
    # point t of the path is what the solver returns after t * k rounds
    gen = torch.Generator().manual_seed(3)
    game = NormalFormGame(
        torch.randn(5, 2, 3, 3, generator=gen, dtype=torch.float64), num_players=2
    )
    out = _quiet(fictitious_play, game, iterations=40, tol=0.0, path_every=8)
    for t in range(6):
        short = _quiet(fictitious_play, game, iterations=8 * t, tol=0.0)
        for i in range(2):
            assert torch.equal(out.path[i][:, t], short.strategies[i])
    rm = _quiet(regret_matching, game, iterations=30, plus=True, tol=0.0, path_every=10)
    for t in range(4):
        short = _quiet(regret_matching, game, iterations=10 * t, plus=True, tol=0.0)
        for i in range(2):
            assert torch.equal(rm.path[i][:, t], short.strategies[i])


def test_path_when_rounds_are_not_a_multiple_and_indexing():
    game = NormalFormGame(torch.randn(3, 2, 2, 2, dtype=torch.float64), num_players=2)
    out = _quiet(replicator_dynamics, game, max_iter=10, tol=0.0, path_every=4)
    assert out.path[0].shape == (3, 3, 2)  # after 0, 4 and 8 steps
    assert out[1].path[0].shape == (3, 2) and torch.equal(out[1].path[1], out.path[1][1])
    brd = best_response_dynamics(game, max_iter=7, path_every=2)
    assert brd.path[0].dtype == brd.strategies[0].dtype
    assert torch.equal(brd.path[0][:, 0], torch.tensor([[1.0, 0.0]] * 3, dtype=torch.float64))


def test_best_response_path_of_the_prisoners_dilemma():
    pd = NormalFormGame.bimatrix([[3.0, 0.0], [5.0, 1.0]], [[3.0, 5.0], [0.0, 1.0]])
    out = best_response_dynamics(pd, initial=(0, 0), max_iter=4, path_every=1)
    # (C, C) -> (D, D), then at rest
    expected = torch.tensor([[1.0, 0.0]] + [[0.0, 1.0]] * 4, dtype=pd.dtype)
    assert torch.equal(out.path[0], expected) and torch.equal(out.path[1], expected)


@pytest.mark.parametrize("name", sorted(DYNAMICS))
@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_path_every_is_validated(name, bad):
    game = NormalFormGame(torch.randn(2, 2, 2, dtype=torch.float64), num_players=2)
    with pytest.raises((TypeError, ValueError), match="path_every"):
        _run(name, game, 5, bad)


# --- issue 10, item 7: running means stay on the simplex in float32 ------------------


def test_regret_matching_plus_float32_average_is_on_the_simplex():
    # issue 10's reproducer: the float32 average drifted 1.1e-5 off the simplex
    # after 2,000 rounds and regret() refused it
    torch.manual_seed(6)
    game = NormalFormGame.bimatrix(torch.randn(5, 5), torch.randn(5, 5))
    out = regret_matching(game, iterations=2000, plus=True, tol=0.0)
    for s in out.strategies:
        assert s.dtype == torch.float32
        assert float((s.sum(-1) - 1).abs().max()) <= 5 * torch.finfo(torch.float32).eps
    regret(game, out.strategies)  # accepted as a profile on the simplex
    torch.testing.assert_close(out.regret, regret(game, out.strategies), atol=0, rtol=0)


@pytest.mark.parametrize(
    "solver, kwargs",
    [
        (fictitious_play, {"iterations": 3000}),
        (fictitious_play, {"iterations": 3000, "mode": "smooth"}),
        (regret_matching, {"iterations": 3000}),
        (regret_matching, {"iterations": 3000, "plus": True}),
    ],
)
def test_float32_running_means_stay_on_the_simplex(solver, kwargs):
    gen = torch.Generator().manual_seed(1)
    game = NormalFormGame(torch.randn(64, 2, 5, 4, generator=gen), num_players=2)
    out = _quiet(solver, game, tol=0.0, **kwargs)
    for s in out.strategies:
        assert float((s.sum(-1) - 1).abs().max()) <= 5 * torch.finfo(torch.float32).eps
        assert float(s.min()) >= 0
    regret(game, out.strategies)
