"""Solve a few classic games with every solver and print the equilibria.

Run with ``python -m aggregation`` (or as part of ``maha demo``). Every row
shows the profile a solver returned, its largest player regret (payoff units)
and whether the solver calls it converged, i.e. ``max regret <= tol``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .finite.exact.lemke_howson import lemke_howson
from .finite.exact.linear_program import linear_program
from .finite.exact.logit_qre import logit_qre
from .finite.exact.pure_equilibria import pure_equilibria
from .finite.exact.support_enumeration import support_enumeration
from .finite.exact.vertex_enumeration import vertex_enumeration
from .finite.game import NormalFormGame
from .finite.learning.best_response_dynamics import best_response_dynamics
from .finite.learning.fictitious_play import fictitious_play
from .finite.learning.regret_matching import regret_matching
from .finite.learning.replicator_dynamics import replicator_dynamics
from .result import EquilibriumResult, EquilibriumSet

__all__ = ["CLASSIC_GAMES", "DemoRow", "classic_games", "run", "solve_classic_games"]


def classic_games() -> dict[str, NormalFormGame]:
    """The literature games of the demo, in float64."""
    # Shapley (1964): the row player wants to match, the column player to be one ahead.
    shapley_a = torch.eye(3, dtype=torch.float64)
    shapley_b = torch.tensor(
        [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64
    )
    # Three players, two actions each: player i wins 1 by matching player i+1
    # and loses 1 otherwise (a cyclic "matching" game with a unique mixed equilibrium).
    cyclic = torch.zeros(3, 2, 2, 2, dtype=torch.float64)
    for a0 in range(2):
        for a1 in range(2):
            for a2 in range(2):
                acts = (a0, a1, a2)
                for i in range(3):
                    j = (i + 1) % 3
                    sign = 1.0 if acts[i] == acts[j] else -1.0
                    cyclic[i, a0, a1, a2] = sign if i != 2 else -sign
    return {
        "matching pennies": NormalFormGame.zero_sum([[1, -1], [-1, 1]]),
        "rock-paper-scissors": NormalFormGame.zero_sum([[0, -1, 1], [1, 0, -1], [-1, 1, 0]]),
        "battle of the sexes": NormalFormGame.bimatrix([[3, 0], [0, 2]], [[2, 0], [0, 3]]),
        "prisoner's dilemma": NormalFormGame.bimatrix([[3, 0], [5, 1]], [[3, 5], [0, 1]]),
        "Shapley's game": NormalFormGame.bimatrix(shapley_a, shapley_b),
        "3-player cyclic matching": NormalFormGame(cyclic, num_players=3),
    }


CLASSIC_GAMES = tuple(classic_games())


@dataclass(frozen=True)
class DemoRow:
    """One solver's answer on one game (``max_regret`` None: nothing was found)."""

    game: str
    solver: str
    strategies: tuple[tuple[float, ...], ...]
    max_regret: float | None
    converged: bool


def _solvers(game: NormalFormGame) -> dict[str, Callable[[NormalFormGame], object]]:
    solvers: dict[str, Callable[[NormalFormGame], object]] = {
        "pure_equilibria": pure_equilibria,
        "best_response_dynamics": lambda g: best_response_dynamics(g, max_iter=100),
        "fictitious_play": lambda g: fictitious_play(g, iterations=2000, tol=1e-2),
        "replicator_dynamics": lambda g: replicator_dynamics(g, max_iter=2000, tol=1e-4),
        "regret_matching": lambda g: regret_matching(g, iterations=2000, tol=1e-2),
        "logit_qre": logit_qre,
    }
    if game.num_players == 2:
        solvers.update(
            {
                "support_enumeration": support_enumeration,
                "vertex_enumeration": vertex_enumeration,
                "lemke_howson": lemke_howson,
            }
        )
        if bool(game.is_zero_sum()):
            solvers["linear_program"] = linear_program
    return solvers


def _rows(name: str, solver: str, out: object) -> list[DemoRow]:
    results: list[EquilibriumResult]
    if isinstance(out, EquilibriumSet):
        results = out.to_list()
    elif isinstance(out, EquilibriumResult):
        results = [out]
    else:  # pragma: no cover - every solver returns one of the two
        raise TypeError(f"{solver} returned {type(out).__name__}")
    if not results:
        return [DemoRow(name, solver, (), None, False)]
    return [
        DemoRow(
            name,
            solver,
            tuple(tuple(round(float(p), 4) for p in s.reshape(-1)) for s in r.strategies),
            float(r.max_regret),
            bool(r.converged),
        )
        for r in results
    ]


def solve_classic_games() -> list[DemoRow]:
    """Run every applicable solver on every classic game."""
    rows: list[DemoRow] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # non-convergence is shown in the table
        for name, game in classic_games().items():
            for solver, fn in _solvers(game).items():
                rows.extend(_rows(name, solver, fn(game)))
    return rows


def _format(strategies: tuple[tuple[float, ...], ...]) -> str:
    if not strategies:
        return "(none found)"
    return " ".join("[" + " ".join(f"{p:.3f}" for p in s) + "]" for s in strategies)


def run(print_fn: Callable[[str], None] = print) -> list[DemoRow]:
    """Print the classic-games table and return its rows."""
    rows = solve_classic_games()
    print_fn(f"{'game':<26}{'solver':<24}{'max regret':>11}  {'conv':<5} profile")
    last = None
    for row in rows:
        game = row.game if row.game != last else ""
        last = row.game
        regret = "-" if row.max_regret is None else f"{row.max_regret:.2e}"
        status = "yes" if row.converged else ("-" if row.max_regret is None else "NO")
        print_fn(f"{game:<26}{row.solver:<24}{regret:>11}  {status:<5} {_format(row.strategies)}")
    return rows
