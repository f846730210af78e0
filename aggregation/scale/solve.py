"""``solve_scale_game``: one entry point for every scale-game solver."""

from __future__ import annotations

from typing import Any

import torch

from ..validation import check_choice, describe
from .best_response import solve_best_response
from .enumeration import solve_enumeration
from .exact import solve_exact
from .extragradient import solve_extragradient
from .fictitious_play import solve_fictitious_play
from .game import ScaleGame
from .potential import solve_potential
from .result import ScaleGameResult

__all__ = ["METHODS", "check_monotone", "solve_scale_game"]

METHODS = (
    "exact",
    "enumeration",
    "best_response",
    "fictitious_play",
    "extragradient",
    "potential",
)
_NEEDS_MONOTONE = ("best_response", "fictitious_play", "extragradient", "potential")


def check_monotone(game: ScaleGame, name: str = "C") -> None:
    """Raise ``ValueError`` unless the symmetric part of C is positive definite everywhere.

    One batched Cholesky factorisation; eigenvalues are computed only for the
    failing elements, to report the smallest.
    """
    with torch.no_grad():
        S = game.symmetric_part().expand(*game.batch_shape, game.num_players, game.num_players)
        _, info = torch.linalg.cholesky_ex(S)
        bad = info != 0
        if bool(bad.any()):
            worst = float(torch.linalg.eigvalsh(S[bad])[..., 0].min())
            raise ValueError(
                f"{name} must make the game monotone (symmetric part of {name} positive "
                f"definite on the present players); received {int(bad.sum())} of "
                f"{bad.numel()} batch elements that are not, smallest eigenvalue {worst:.3g}"
            )


def solve_scale_game(
    game: ScaleGame,
    method: str = "exact",
    *,
    tol: float | None = None,
    max_iter: int | None = None,
    differentiable: bool = True,
    backward: str = "implicit",
    validate: bool = False,
    **options: Any,
) -> ScaleGameResult:
    """Nash equilibrium ``x*`` of a batch of scale games.

    ``x* >= 0, C x* - a >= 0, x*^T (C x* - a) = 0`` (see
    :class:`~aggregation.ScaleGame`). Methods:

    * ``"exact"``: principal pivoting with support enumeration, ``L <= 8``;
      exact for any C (:func:`~aggregation.scale.exact.solve_exact`).
    * ``"enumeration"``: all ``2^L - 1`` supports solved at once, ``L <= 8``;
      a fixed amount of work and no host reads, so it compiles
      (``torch.compile(fullgraph=True)``); exact for P-matrix C, the documented
      fallback otherwise (:mod:`aggregation.scale.enumeration`).
    * ``"best_response"``: Jacobi / Gauss-Seidel best-response dynamics, damped
      (options ``variant``, ``damping``, ``check_every``).
    * ``"fictitious_play"``: running average of best responses (option
      ``check_every``); slow (``O(1/t)``), converges for potential games.
    * ``"extragradient"``: projected extragradient (Korpelevich), converges for
      every monotone game (options ``step_size``, ``check_every``).
    * ``"potential"``: symmetric C only; accelerated projected gradient ascent on
      the potential ``a^T x - 1/2 x^T C x`` (options ``check_every``).

    Args:
        game: a :class:`~aggregation.ScaleGame`.
        method: one of the above.
        tol: relative regret tolerance behind ``converged``; default
            :func:`~aggregation.tolerance.default_tol` of the returned dtype
            (1e-9 float64, 1e-5 float32, 1e-2 float16, 3e-2 bfloat16; half input
            computes in float32 but is judged on the rounded profile it returns).
            The contract: ``converged`` iff ``max_l (regret_l + e_l) <= tol * U``,
            where ``U = max_l a_l^2 / C_ll`` over present players is the game's
            payoff unit (:meth:`~aggregation.ScaleGame.payoff_unit`; a game and
            its copy scaled by any ``s > 0`` get the same verdict) and ``e_l``
            bounds the rounding error of ``regret_l`` (so a profile whose regret
            cancellation hides is never certified). ``regret`` itself is
            reported in payoff units, exactly as :meth:`~aggregation.ScaleGame.regret`
            computes it from the returned ``x``.
        max_iter: iteration (or pivot) budget; method-specific default.
        differentiable: attach the result to the graph of ``a`` and ``C`` when
            they require grad.
        backward: ``"implicit"`` (default: implicit function theorem on the KKT
            conditions of the active set; memory O(batch)) or ``"unrolled"``
            (autograd through the iterations).
        validate: check that the game is monotone (one batched Cholesky) for
            the iterative methods, whose convergence relies on it.
        **options: passed to the method.

    Returns:
        :class:`~aggregation.scale.result.ScaleGameResult` with ``.x``,
        ``.weights``, ``.strategies``, ``.regret``, ``.converged``,
        ``.iterations``, ``.residual``; elements that did not converge are
        flagged (and a ``RuntimeWarning`` is raised once), and get zero
        gradients under implicit differentiation. An iteration that diverges
        (not finite, or beyond what the dtype resolves) is stopped, its profile
        replaced by ``x = 0`` and flagged in ``info["diverged"]``; the uniform
        weights given to an uncertified zero profile are flagged in
        ``info["fallback"]``.

    Example:
        >>> import torch
        >>> from aggregation import ScaleGame, solve_scale_game
        >>> game = ScaleGame(torch.tensor([3.0, 1.0]), torch.tensor([[2.0, 1.0], [1.0, 2.0]]))
        >>> solve_scale_game(game).x  # player 2 is priced out: x = (3/2, 0)
        tensor([1.5000, 0.0000])
    """
    if not isinstance(game, ScaleGame):
        raise TypeError(f"game must be a ScaleGame; received {describe(game)}")
    check_choice(method, "method", METHODS)
    if not isinstance(validate, bool):
        raise TypeError(f"validate must be True or False; received {describe(validate)}")
    if validate and method in _NEEDS_MONOTONE:
        check_monotone(game)
    solver = {
        "exact": solve_exact,
        "enumeration": solve_enumeration,
        "best_response": solve_best_response,
        "fictitious_play": solve_fictitious_play,
        "extragradient": solve_extragradient,
        "potential": solve_potential,
    }[method]
    try:
        return solver(
            game,
            tol=tol,
            max_iter=max_iter,
            differentiable=differentiable,
            backward=backward,
            **options,
        )
    except TypeError as err:
        if "unexpected keyword argument" in str(err):
            raise TypeError(f"method={method!r} does not accept the option: {err}") from None
        raise
