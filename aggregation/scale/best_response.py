"""Best-response dynamics for the scale game (Jacobi and Gauss-Seidel, damped).

Each player moves towards its best response

    BR_l(x) = max(0, (a_l - sum_{k != l} C_lk x_k) / C_ll) ,

    Jacobi:        x <- (1 - alpha) x + alpha BR(x)             (all players at once)
    Gauss-Seidel:  x_l <- (1 - alpha) x_l + alpha BR_l(x),  l = 1..L in turn
                   (each player sees the updates made before it in the sweep).

Fixed points are exactly the Nash equilibria (for any damping ``alpha`` in (0, 1]).
Convergence: Gauss-Seidel converges for symmetric positive definite C (it is
coordinate ascent on the potential ``a^T x - 1/2 x^T C x``; projected SOR,
Cryer 1971) for ``alpha`` in (0, 1]; both converge when ``D^{-1}(C - D)`` is
a contraction (for example C strictly diagonally dominant). For other
monotone games (strongly asymmetric C) they may cycle: ``converged`` says so
per element, and extragradient is the method with a guarantee.

References: Cryer, "The solution of a quadratic programming problem using
systematic overrelaxation", SIAM J. Control 1971; Bertsekas & Tsitsiklis,
*Parallel and Distributed Computation* (1989), section 3.5; Facchinei & Pang
(2003), section 12.5.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..small_linalg import matvec
from ..validation import check_choice, check_int, check_positive
from ._iterate import run_iterative
from .game import ScaleGame
from .result import ScaleGameResult

__all__ = ["solve_best_response"]


def _init(a: Tensor, C: Tensor) -> tuple[Tensor, tuple]:
    return torch.zeros_like(a), ()


def _jacobi(alpha: float):
    def step(x: Tensor, state: tuple, a: Tensor, C: Tensor, t: int) -> tuple[Tensor, tuple]:
        diag = C.diagonal(dim1=-2, dim2=-1)  # (B, L)
        r = a - matvec(C, x) + diag * x
        br = (r / diag).clamp_min(0)
        return x + alpha * (br - x), state

    return step


def _gauss_seidel(alpha: float):
    def step(x: Tensor, state: tuple, a: Tensor, C: Tensor, t: int) -> tuple[Tensor, tuple]:
        L = x.shape[-1]
        cols = list(x.unbind(-1))  # L tensors (B,)
        for l in range(L):
            r = a[:, l]
            for k in range(L):
                if k != l:
                    r = r - C[:, l, k] * cols[k]
            br = (r / C[:, l, l]).clamp_min(0)
            cols[l] = cols[l] + alpha * (br - cols[l])
        return torch.stack(cols, -1), state

    return step


def solve_best_response(
    game: ScaleGame,
    *,
    variant: str = "gauss_seidel",
    damping: float = 1.0,
    tol: float | None = None,
    max_iter: int | None = None,
    check_every: int = 5,
    differentiable: bool = True,
    backward: str = "implicit",
) -> ScaleGameResult:
    """Best-response dynamics from ``x = 0``.

    Args:
        game: a :class:`~aggregation.ScaleGame`.
        variant: ``"gauss_seidel"`` (default) or ``"jacobi"``.
        damping: ``alpha`` in (0, 1], the step towards the best response.
        tol: relative regret tolerance (in units of the game's payoff unit
            ``U``, see :func:`~aggregation.solve_scale_game`); default
            :func:`~aggregation.tolerance.default_tol` of the returned dtype.
        max_iter: sweeps (default 2000).
        check_every: sweeps between regret checks.
        differentiable: attach ``x`` to the graph of ``a``/``C`` when they
            require grad.
        backward: ``"implicit"`` (KKT conditions at the final iterate) or
            ``"unrolled"`` (autograd through every sweep).

    Returns:
        :class:`~aggregation.scale.result.ScaleGameResult`; ``iterations`` is the
        first checked sweep at which ``max_l regret_l <= tol`` (``max_iter`` if never).
    """
    check_choice(variant, "variant", ("gauss_seidel", "jacobi"))
    alpha = check_positive(damping, "damping")
    if alpha > 1:
        raise ValueError(f"damping must be in (0, 1]; received {damping!r}")
    check_every = check_int(check_every, "check_every", minimum=1)
    step = _gauss_seidel(alpha) if variant == "gauss_seidel" else _jacobi(alpha)
    return run_iterative(
        game,
        "best_response",
        step,
        _init,
        tol=tol,
        max_iter=max_iter,
        default_iter=2000,
        check_every=check_every,
        differentiable=differentiable,
        backward=backward,
    )
