"""Projected extragradient for the scale game (Korpelevich 1976).

With ``F(x) = C x - a`` and ``Pi`` the projection onto ``x >= 0``:

    y     = Pi(x - eta F(x))
    x_new = Pi(x - eta F(y)) ,

with ``eta = step_size / ||C||_F`` (``||C||_F >= ||C||_2``, the Lipschitz
constant of F), ``step_size`` in (0, 1). It converges to a solution of the
variational inequality, i.e. the Nash equilibrium, for every *monotone* game
(symmetric part of C positive semidefinite), linearly when strongly monotone,
with no symmetry assumption: the method with a guarantee for asymmetric C.

References: Korpelevich, "The extragradient method for finding saddle points
and other problems", Ekonomika i Matematicheskie Metody 1976; Facchinei & Pang
(2003), section 12.1.
"""

from __future__ import annotations

from torch import Tensor

from ..small_linalg import matvec, ordered_sum
from ..validation import check_int, check_positive
from ._iterate import run_iterative
from .game import ScaleGame
from .result import ScaleGameResult

__all__ = ["solve_extragradient"]


def _make(step_size: float):
    def init(a: Tensor, C: Tensor) -> tuple[Tensor, tuple]:
        eta = step_size / ordered_sum(C.square().flatten(-2).unbind(-1)).sqrt().unsqueeze(-1)
        return a.new_zeros(a.shape), (eta,)

    def step(x: Tensor, state: tuple, a: Tensor, C: Tensor, t: int) -> tuple[Tensor, tuple]:
        (eta,) = state
        y = (x - eta * (matvec(C, x) - a)).clamp_min(0)
        x = (x - eta * (matvec(C, y) - a)).clamp_min(0)
        return x, state

    return init, step


def solve_extragradient(
    game: ScaleGame,
    *,
    step_size: float = 0.9,
    tol: float | None = None,
    max_iter: int | None = None,
    check_every: int = 10,
    differentiable: bool = True,
    backward: str = "implicit",
) -> ScaleGameResult:
    """Projected extragradient from ``x = 0`` (see the module docstring).

    Args:
        game: a :class:`~aggregation.ScaleGame`.
        step_size: ``eta * ||C||_F``, in (0, 1).
        tol: relative regret tolerance (in units of the game's payoff unit
            ``U``, see :func:`~aggregation.solve_scale_game`); default
            :func:`~aggregation.tolerance.default_tol` of the returned dtype.
        max_iter: iterations (default 5000).
        check_every: iterations between regret checks.
        differentiable, backward: as in :func:`~aggregation.solve_scale_game`.

    Returns:
        :class:`~aggregation.scale.result.ScaleGameResult`.
    """
    step_size = check_positive(step_size, "step_size")
    if step_size >= 1:
        raise ValueError(f"step_size must be in (0, 1); received {step_size!r}")
    check_every = check_int(check_every, "check_every", minimum=1)
    init, step = _make(step_size)
    return run_iterative(
        game,
        "extragradient",
        step,
        init,
        tol=tol,
        max_iter=max_iter,
        default_iter=5000,
        check_every=check_every,
        differentiable=differentiable,
        backward=backward,
    )
