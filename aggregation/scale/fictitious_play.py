"""Fictitious play for the scale game: the running average of best responses.

    x_{t+1} = x_t + (BR(x_t) - x_t) / (t + 1),      x_0 = 0 ,

so ``x_t`` is the average of the best responses played so far, each player
best-responding to the others' averages (Brown 1951; Robinson 1951). It is
best-response dynamics with the damping ``1/(t+1)``: fixed points are the Nash
equilibria, it converges for potential games (symmetric C; Monderer & Shapley
1996) but only at rate ``O(1/t)``, so it needs a looser ``tol`` or many
iterations. Provided as the classical learning-in-games baseline.

References: Brown, "Iterative solution of games by fictitious play" (1951);
Monderer & Shapley, "Fictitious play property for games with identical
interests", J. Econ. Theory 1996; Fudenberg & Levine, *The Theory of Learning
in Games* (1998), chapter 2.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..small_linalg import matvec
from ..validation import check_int
from ._iterate import run_iterative
from .game import ScaleGame
from .result import ScaleGameResult

__all__ = ["solve_fictitious_play"]


def _init(a: Tensor, C: Tensor) -> tuple[Tensor, tuple]:
    return torch.zeros_like(a), ()


def _step(x: Tensor, state: tuple, a: Tensor, C: Tensor, t: int) -> tuple[Tensor, tuple]:
    diag = C.diagonal(dim1=-2, dim2=-1)  # (B, L)
    r = a - matvec(C, x) + diag * x  # batch-invariant arithmetic
    br = (r / diag).clamp_min(0)
    return x + (br - x) / (t + 1), state


def solve_fictitious_play(
    game: ScaleGame,
    *,
    tol: float | None = None,
    max_iter: int | None = None,
    check_every: int = 10,
    differentiable: bool = True,
    backward: str = "implicit",
) -> ScaleGameResult:
    """Fictitious play from ``x = 0`` (see the module docstring).

    Args:
        game: a :class:`~aggregation.ScaleGame`.
        tol: relative regret tolerance (in units of the game's payoff unit
            ``U``, see :func:`~aggregation.solve_scale_game`); default
            :func:`~aggregation.tolerance.default_tol` of the returned dtype.
        max_iter: iterations (default 20000).
        check_every: iterations between regret checks.
        differentiable, backward: as in :func:`~aggregation.solve_scale_game`.

    Returns:
        :class:`~aggregation.scale.result.ScaleGameResult`.
    """
    check_every = check_int(check_every, "check_every", minimum=1)
    return run_iterative(
        game,
        "fictitious_play",
        _step,
        _init,
        tol=tol,
        max_iter=max_iter,
        default_iter=20000,
        check_every=check_every,
        differentiable=differentiable,
        backward=backward,
    )
