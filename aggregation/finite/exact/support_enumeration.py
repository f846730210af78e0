"""Support enumeration: all Nash equilibria of nondegenerate bimatrix games, batched."""

from __future__ import annotations

from ...result import EquilibriumSet
from ..game import NormalFormGame
from ._bimatrix import finish_set
from .vertex_enumeration import prepare
from .vertices import extreme_equilibria

__all__ = ["support_enumeration"]


def support_enumeration(game: NormalFormGame, tol: float | None = None) -> EquilibriumSet:
    """All Nash equilibria of every bimatrix game of a batch, by their supports.

    For supports ``I`` (rows) and ``J`` (columns) of equal size ``k`` solve the
    indifference systems

        A[I, J] y_J = u 1,  1^T y_J = 1,      x_I^T B[I, J] = v 1^T,  1^T x_I = 1,

    and keep ``(x, y)`` when ``x, y >= 0`` and no pure strategy does better:
    ``A y <= u``, ``B^T x <= v`` (Mangasarian 1964; Nisan et al. 2007, Alg. 3.4).
    All ``C(m + n, m) - 1`` support pairs of all games are tested at once: the
    solutions are ratios of bordered minors, built for every support by one
    batched Laplace recursion, so the test is a vectorised sign check (see
    ``aggregation/finite/exact/vertices.py``); the survivors are re-solved by LU
    and returned only if their regret is at most ``tol`` for both players. On
    the CPU with numba installed (the ``fast`` extra; :mod:`aggregation.accel`)
    the sign check runs as one compiled loop nest, with the same decisions.
    The engine is that of :func:`~aggregation.vertex_enumeration`, so the two
    return the same equilibria.

    Degenerate games. In a nondegenerate game every equilibrium has supports of
    equal size and is found exactly once. In a degenerate game (some mixed
    strategy with ``k`` actions in its support has more than ``k`` pure best
    responses, detected per game and reported in ``degenerate``) equilibria
    can have supports of unequal size and come in continua. There one of the
    two indifference systems on the supports ``(I, J)`` is underdetermined, so
    the strategy is pinned by best responses outside the other support: ``x``
    with support ``I`` solves the square system on ``(I, K)`` for a set
    ``K`` of ``|I|`` columns that are best responses to ``x`` (``K`` need not
    equal ``J``), and ``y`` likewise on ``(L, J)``. For every game flagged
    degenerate the function therefore also pairs all such ``x`` and ``y``
    candidates whose best responses cover each other's supports (the
    completely labelled vertex pairs of :func:`vertex_enumeration`). What is
    guaranteed there: every extreme equilibrium is returned, each once, with
    supports of equal or unequal size; a continuum is represented by its
    extreme points only (a point strictly inside it is not returned); every
    returned profile has regret ``<= tol``. The game is solved in float64
    whatever its dtype (its entries are exact there), so zero tests use
    ``default_tol(torch.float64) = 1e-9`` in normalised payoff units (payoffs
    centred, max-abs entry 1): a probability of ``-1e-17`` is zero, not a
    rejection. The returned profiles are rounded to the game's dtype and
    judged there.

    Gradients: when the payoffs require grad, the returned strategies carry the
    implicit derivative of each equilibrium on its supports (the mechanism of
    :func:`~aggregation.differentiable_bimatrix_nash`); the values are those
    computed without a graph. An equilibrium that is not locally unique
    (a degenerate game, supports of unequal size) gets a zero gradient and a
    ``RuntimeWarning`` at backward time.

    Args:
        game: a two-player :class:`~aggregation.NormalFormGame` with payoffs
            ``(*batch, 2, m, n)``; ``m + n <= 62``.
        tol: regret tolerance (payoff units) every returned profile meets;
            None means :func:`~aggregation.default_tol` of the game's dtype
            (1e-9 for float64, 1e-5 for float32).

    Returns:
        An :class:`~aggregation.EquilibriumSet` (layout as in
        :func:`vertex_enumeration`): strategies ``(*batch, E, m)``,
        ``(*batch, E, n)`` in the game's dtype, ``regret (*batch, E, 2)``,
        ``valid``, ``count``, ``degenerate``, ``info["rejected"]``.

    Raises:
        TypeError: ``game`` is not a NormalFormGame, ``tol`` not a number.
        ValueError: ``game`` does not have two players, ``m + n > 62``, ``tol``
            below the resolution of the game's dtype.

    Example:
        >>> import torch
        >>> from aggregation import NormalFormGame, support_enumeration
        >>> rps = NormalFormGame.zero_sum([[0., -1., 1.], [1., 0., -1.], [-1., 1., 0.]])
        >>> eqs = support_enumeration(rps)
        >>> int(eqs.count), eqs.strategies[0][0].tolist()
        (1, [0.3333333333333333, 0.3333333333333333, 0.3333333333333333])

    References:
        O. L. Mangasarian (1964), "Equilibrium points of bimatrix games", J. SIAM
        12; N. Nisan, T. Roughgarden, E. Tardos, V. Vazirani (2007), Algorithmic
        Game Theory, ch. 3 (B. von Stengel).
    """
    game, tol, payoffs, A, Bt = prepare(game, tol, "support_enumeration")
    g, x, y, degenerate = extreme_equilibria(A, Bt)
    return finish_set(game, tol, payoffs, g, x, y, degenerate, "support_enumeration")
