"""Literature games with known answers, through every N-player solver."""

from __future__ import annotations

import warnings

import pytest
import torch

from aggregation import (
    NormalFormGame,
    best_response_dynamics,
    fictitious_play,
    games,
    logit_qre,
    pure_equilibria,
    regret_matching,
    replicator_dynamics,
)
from aggregation.testing import assert_nash


def _game(A, B) -> NormalFormGame:
    return NormalFormGame.bimatrix(
        torch.tensor(A, dtype=torch.float64), torch.tensor(B, dtype=torch.float64)
    )


F64 = {"dtype": torch.float64}
PENNIES = games.matching_pennies(**F64)
RPS = games.rock_paper_scissors(**F64)
BATTLE = games.battle_of_the_sexes(**F64)  # [[2, 0], [0, 1]], [[1, 0], [0, 2]]
PRISONERS = games.prisoners_dilemma(**F64)  # action 1 = defect
COORDINATION = games.coordination_game((2.0, 1.0), **F64)
SHAPLEY = games.shapley_game(**F64)
# row strictly prefers action 0, column is indifferent: equilibria {(e_0, (q, 1 - q))}
CONTINUUM = _game([[1, 1], [0, 0]], [[2, 2], [1, 1]])

UNIFORM2 = torch.full((2,), 0.5, dtype=torch.float64)
UNIFORM3 = torch.full((3,), 1 / 3, dtype=torch.float64)


def _quiet(solver, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return solver(*args, **kwargs)


@pytest.mark.parametrize("game, uniform", [(PENNIES, UNIFORM2), (RPS, UNIFORM3)])
def test_zero_sum_games_with_a_unique_mixed_equilibrium(game, uniform):
    assert int(pure_equilibria(game).count) == 0
    out = logit_qre(game)
    assert bool(out.converged)
    for s in out.strategies:
        torch.testing.assert_close(s, uniform, atol=1e-9, rtol=0)
    for result in (
        fictitious_play(game, iterations=4000, tol=0.02),
        regret_matching(game, iterations=4000, plus=True, tol=0.05),
    ):
        assert bool(result.converged)
        for s in result.strategies:
            torch.testing.assert_close(s, uniform, atol=0.05, rtol=0)
    start = (torch.tensor([0.7, 0.2, 0.1][: len(uniform)]).softmax(0),) * 2
    assert not bool(replicator_dynamics(game, initial=start, max_iter=2000).converged)
    assert not bool(best_response_dynamics(game).converged)  # best responses cycle
    assert int(best_response_dynamics(game).info["cycle_length"]) > 1


def test_battle_of_the_sexes():
    pure = pure_equilibria(BATTLE)
    assert pure.actions.tolist() == [[0, 0], [1, 1]]
    mixed = (torch.tensor([2 / 3, 1 / 3]), torch.tensor([1 / 3, 2 / 3]))
    assert_nash(BATTLE, mixed, tol=1e-12)  # the third equilibrium
    out = logit_qre(BATTLE)
    assert bool(out.converged)
    assert_nash(BATTLE, out, tol=1e-9)
    assert bool(best_response_dynamics(BATTLE).converged)
    assert bool(replicator_dynamics(BATTLE, initial=([0.6, 0.4], [0.6, 0.4])).converged)


def test_prisoners_dilemma_every_solver_finds_mutual_defection():
    defect = torch.tensor([0.0, 1.0], dtype=torch.float64)
    results = [
        best_response_dynamics(PRISONERS),
        best_response_dynamics(PRISONERS, mode="alternating"),
        fictitious_play(PRISONERS, iterations=1000, tol=1e-2),
        replicator_dynamics(PRISONERS),
        regret_matching(PRISONERS, iterations=1000, tol=1e-2),
        logit_qre(PRISONERS),
    ]
    for out in results:
        assert bool(out.converged), out.method
        for s in out.strategies:
            torch.testing.assert_close(s, defect, atol=0.02, rtol=0)
    assert pure_equilibria(PRISONERS).actions.tolist() == [[1, 1]]


def test_coordination_game():
    assert pure_equilibria(COORDINATION).actions.tolist() == [[0, 0], [1, 1]]
    out = replicator_dynamics(COORDINATION, initial=([0.2, 0.8], [0.25, 0.75]))
    assert bool(out.converged) and round(float(out.strategies[0][1])) == 1  # basin of (1, 1)
    qre = logit_qre(COORDINATION)
    assert bool(qre.converged)  # the payoff-dominant (0, 0) is the tracing-procedure pick
    assert qre.strategies[0].tolist() == [1.0, 0.0] and qre.strategies[1].tolist() == [1.0, 0.0]


def test_shapley_game_fictitious_play_cycles():
    assert int(pure_equilibria(SHAPLEY).count) == 0
    fp = fictitious_play(SHAPLEY, iterations=5000)
    assert not bool(fp.converged) and float(fp.max_regret) > 0.1
    assert not bool(best_response_dynamics(SHAPLEY).converged)
    out = logit_qre(SHAPLEY)  # the unique equilibrium is uniform
    assert bool(out.converged)
    for s in out.strategies:
        torch.testing.assert_close(s, UNIFORM3, atol=1e-9, rtol=0)


def test_degenerate_game_with_a_continuum_of_equilibria():
    pure = pure_equilibria(CONTINUUM)
    assert pure.actions.tolist() == [[0, 0], [0, 1]] and bool(pure.degenerate)
    top = torch.tensor([1.0, 0.0], dtype=torch.float64)
    results = [
        best_response_dynamics(CONTINUUM),
        fictitious_play(CONTINUUM, iterations=500, tol=1e-2),
        replicator_dynamics(CONTINUUM),
        regret_matching(CONTINUUM, iterations=500, tol=1e-2),
        logit_qre(CONTINUUM),
    ]
    for out in results:  # every answer lies in the continuum (row plays top)
        assert bool(out.converged), out.method
        torch.testing.assert_close(out.strategies[0], top, atol=0.02, rtol=0)
        assert_nash(CONTINUUM, out, tol=out.tol)


def test_three_player_matching_pennies():
    # Jordan (1993): player i wants to match player i-1 ... a unique, uniform equilibrium
    P = torch.zeros(3, 2, 2, 2, dtype=torch.float64)
    for a in range(2):
        for b in range(2):
            for c in range(2):
                P[0, a, b, c] = 1.0 if a == c else -1.0  # 1 matches 3
                P[1, a, b, c] = 1.0 if b != a else -1.0  # 2 mismatches 1
                P[2, a, b, c] = 1.0 if c == b else -1.0  # 3 matches 2
    game = NormalFormGame(P, num_players=3)
    assert int(pure_equilibria(game).count) == 0
    out = logit_qre(game)
    assert bool(out.converged)
    for s in out.strategies:
        torch.testing.assert_close(s, UNIFORM2, atol=1e-9, rtol=0)
    assert not bool(_quiet(fictitious_play, game, iterations=2000).converged)
