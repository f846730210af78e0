"""Every finite-game solver accepts an empty batch and returns empty results (issue 10)."""

from __future__ import annotations

import pytest
import torch

from aggregation import (
    EquilibriumSet,
    NormalFormGame,
    best_response_dynamics,
    differentiable_logit_qre,
    fictitious_play,
    lemke_howson,
    lemke_howson_enumeration,
    linear_program,
    logit_qre,
    pure_equilibria,
    regret_matching,
    replicator_dynamics,
    support_enumeration,
    vertex_enumeration,
)
from aggregation.finite.dominance import (
    iterated_elimination,
    strictly_dominated_actions,
    weakly_dominated_actions,
)

N_PLAYER = {
    "pure_equilibria": pure_equilibria,
    "best_response_dynamics": best_response_dynamics,
    "best_response_dynamics[path]": lambda g: best_response_dynamics(g, path_every=2),
    "fictitious_play": fictitious_play,
    "fictitious_play[path]": lambda g: fictitious_play(g, iterations=10, path_every=2),
    "regret_matching": regret_matching,
    "regret_matching[plus]": lambda g: regret_matching(g, plus=True),
    "replicator_dynamics": replicator_dynamics,
    "logit_qre": logit_qre,
    "differentiable_logit_qre": lambda g: differentiable_logit_qre(g, 1.0),
}
TWO_PLAYER = {
    "support_enumeration": support_enumeration,
    "vertex_enumeration": vertex_enumeration,
    "lemke_howson": lemke_howson,
    "lemke_howson_enumeration": lemke_howson_enumeration,
    "linear_program": lambda g: linear_program(NormalFormGame.zero_sum(g.A)),
}
CASES = [(name, n) for name in N_PLAYER for n in (2, 3)] + [(name, 2) for name in TWO_PLAYER]


@pytest.mark.parametrize("batch", [(0,), (3, 0)])
@pytest.mark.parametrize("name, n", CASES)
def test_every_solver_accepts_an_empty_batch(name, n, batch):
    actions = (2, 3, 2)[:n]
    game = NormalFormGame(torch.zeros(*batch, n, *actions, dtype=torch.float64), num_players=n)
    out = {**N_PLAYER, **TWO_PLAYER}[name](game)
    assert len(out.strategies) == n
    if isinstance(out, EquilibriumSet):
        assert out.count.shape == batch and out.valid.shape[: len(batch)] == batch
        e = out.valid.shape[-1]
        for s, a in zip(out.strategies, actions):
            assert s.shape == (*batch, e, a)
        assert out.regret.shape == (*batch, e, n)
        if out.actions is not None:
            assert out.actions.shape == (*batch, e, n) and out.actions.dtype == torch.int64
    else:
        assert out.converged.shape == batch and out.iterations.shape == batch
        for s, a in zip(out.strategies, actions):
            assert s.shape == (*batch, a) and s.dtype == torch.float64
        assert out.regret.shape == (*batch, n)
        if getattr(out, "path", None) is not None:
            for p, a in zip(out.path, actions):
                assert p.shape[: len(batch)] == batch and p.shape[-1] == a


@pytest.mark.parametrize("n", [2, 3])
def test_dominance_accepts_an_empty_batch(n):
    actions = (2, 3, 2)[:n]
    game = NormalFormGame(torch.zeros(0, n, *actions, dtype=torch.float64), num_players=n)
    for mask, a in zip(strictly_dominated_actions(game), actions):
        assert mask.shape == (0, a) and mask.dtype == torch.bool
    for mask, a in zip(strictly_dominated_actions(game, mixed=True), actions):
        assert mask.shape == (0, a)
    for mask, a in zip(weakly_dominated_actions(game), actions):
        assert mask.shape == (0, a)
    out = iterated_elimination(game)
    assert out.rounds.shape == (0,)
    for mask, a in zip(out.survivors, actions):
        assert mask.shape == (0, a)


def test_issue_reproducers():
    # best_response_dynamics raised RuntimeError, pure_equilibria IndexError for
    # any N; the iterative dynamics raised for N >= 3
    for n in (2, 3, 4):
        game = NormalFormGame(torch.randn(0, n, *([2] * n)), num_players=n)
        assert best_response_dynamics(game).info["actions"].shape == (0, n)
        eqs = pure_equilibria(game)
        assert eqs.count.shape == (0,) and eqs.actions.shape == (0, 0, n)
        for solver in (regret_matching, fictitious_play, replicator_dynamics):
            assert solver(game).strategies[0].shape == (0, 2)
