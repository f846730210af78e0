"""The potential maximiser of a symmetric scale game.

For symmetric C the scale game is an exact potential game (Monderer & Shapley
1996) with potential

    Phi(x) = a^T x - 1/2 x^T C x ,

and its Nash equilibria are the KKT points of ``max_{x >= 0} Phi(x)``; for C
positive (semi)definite that is a concave QP whose maximiser *is* the
equilibrium. This solver maximises Phi by accelerated projected gradient
(FISTA, Beck & Teboulle 2009) with step ``1 / ||C||_inf`` (an upper bound on
the largest eigenvalue) and gradient-based adaptive restart (O'Donoghue &
Candes 2015), an algorithm independent of the other solvers; tests pin its
answer to the exact Nash equilibrium.

References: Monderer & Shapley, "Potential games", Games Econ. Behav. 1996;
Beck & Teboulle, SIAM J. Imaging Sci. 2009; O'Donoghue & Candes, "Adaptive
restart for accelerated gradient schemes", Found. Comput. Math. 2015.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..small_linalg import matvec, ordered_sum
from ..validation import check_int
from ._common import prepare
from ._iterate import run_iterative
from .game import ScaleGame
from .result import ScaleGameResult

__all__ = ["solve_potential"]


def _init(a: Tensor, C: Tensor) -> tuple[Tensor, tuple]:
    eta = 1.0 / ordered_sum(C.abs().unbind(-1)).amax(-1, keepdim=True)  # (B, 1), Gershgorin
    x = torch.zeros_like(a)
    theta = torch.ones_like(eta)
    return x, (x, theta, eta)


def _step(x: Tensor, state: tuple, a: Tensor, C: Tensor, t: int) -> tuple[Tensor, tuple]:
    x_prev, theta, eta = state
    theta_next = 0.5 * (1 + (1 + 4 * theta.square()).sqrt())
    y = x + ((theta - 1) / theta_next) * (x - x_prev)
    grad = matvec(C, y) - a  # gradient of -Phi at y (batch-invariant arithmetic)
    x_new = (y - eta * grad).clamp_min(0)
    restart = ordered_sum(((y - x_new) * (x_new - x)).unbind(-1)).unsqueeze(-1) > 0  # (B, 1)
    theta_next = torch.where(restart, torch.ones_like(theta_next), theta_next)
    x_hold = torch.where(restart, x_new, x)  # a restart forgets the momentum
    return x_new, (x_hold, theta_next, eta)


def solve_potential(
    game: ScaleGame,
    *,
    tol: float | None = None,
    max_iter: int | None = None,
    check_every: int = 10,
    differentiable: bool = True,
    backward: str = "implicit",
) -> ScaleGameResult:
    """Maximise the potential of a symmetric scale game (see the module docstring).

    Args:
        game: a :class:`~aggregation.ScaleGame` with symmetric ``C`` (to a
            relative ``1000 eps``).
        tol: relative regret tolerance (in units of the game's payoff unit
            ``U``, see :func:`~aggregation.solve_scale_game`); default
            :func:`~aggregation.tolerance.default_tol` of the returned dtype.
        max_iter: iterations (default 5000).
        check_every: iterations between regret checks.
        differentiable, backward: as in :func:`~aggregation.solve_scale_game`.

    Raises:
        ValueError: C is not symmetric (the game has no potential of this form).
    """
    check_every = check_int(check_every, "check_every", minimum=1)
    prep = prepare(game, tol)
    C = prep.C
    gap = (C - C.mT).abs().amax((-1, -2))  # (B,)
    scale = C.abs().amax((-1, -2))
    limit = 1000 * float(torch.finfo(prep.dtype).eps) * scale
    if bool((gap > limit).any()):
        raise ValueError(
            "C must be symmetric for method='potential' (the potential a^T x - x^T C x / 2 "
            f"exists only then); received asymmetry up to {float(gap.max()):.3g} in "
            f"{int((gap > limit).sum())} batch elements (use 'exact' or 'extragradient')"
        )
    return run_iterative(
        game,
        "potential",
        _step,
        _init,
        tol=tol,
        max_iter=max_iter,
        default_iter=5000,
        check_every=check_every,
        differentiable=differentiable,
        backward=backward,
        prep=prep,
    )
