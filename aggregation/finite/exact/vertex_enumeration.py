"""Vertex enumeration: all extreme Nash equilibria of bimatrix games, batched."""

from __future__ import annotations

from ...result import EquilibriumSet
from ...tolerance import resolve_tol
from ..game import NormalFormGame
from ._bimatrix import check_bimatrix, finish_set, flat_payoffs, normalise_centered
from .vertices import MAX_LABELS, extreme_equilibria

__all__ = ["vertex_enumeration"]


def vertex_enumeration(game: NormalFormGame, tol: float | None = None) -> EquilibriumSet:
    """All extreme Nash equilibria of every bimatrix game of a batch.

    With the payoffs shifted to be positive, the best-response polytopes are

        P = {x in R^m : x >= 0, B^T x <= 1},   Q = {y in R^n : y >= 0, A y <= 1}.

    Label the constraints ``x_i >= 0`` and ``(A y)_i <= 1`` with ``i`` and
    ``(B^T x)_j <= 1`` and ``y_j >= 0`` with ``m + j``. A pair of nonzero
    vertices ``(x, y)`` in ``P x Q`` is *completely labelled* when every label
    ``0..m+n-1`` is tight at ``x`` or at ``y``; the normalised pairs
    ``(x / 1^T x, y / 1^T y)`` are exactly the extreme Nash equilibria, and
    every equilibrium is a convex combination of extreme equilibria that are
    pairwise interchangeable (von Stengel 2002, Thm 3.4; Avis et al. 2010).

    In a nondegenerate game a vertex of ``P`` has exactly ``m`` labels and one
    of ``Q`` exactly ``n``, so a completely labelled pair has complementary
    labels: supports ``I`` and ``J`` of equal size, ``x`` on the basis
    ``(J, I)`` and ``y`` on ``(I, J)``. The feasibility of every basis of both
    polytopes of every game of the batch is decided at once (signs of bordered
    minors; see ``aggregation/finite/exact/vertices.py``), which also flags
    the degenerate games (a vertex with extra labels); the nondegenerate
    games' equilibria are the bases feasible on both sides, and only the
    degenerate games go on to pair their vertices by label bit masks. Each
    surviving pair is re-solved by LU and verified: it is returned only if its
    regret is at most ``tol`` for both players. This is the engine of
    :func:`~aggregation.support_enumeration`, so the two return the same
    equilibria; on the CPU with numba installed (the ``fast`` extra;
    :mod:`aggregation.accel`) the vertex test runs as one compiled loop nest.

    Guarantees: nondegenerate games -> all equilibria (each once). Degenerate
    games (flagged in ``degenerate``) -> all extreme equilibria (each once);
    a continuum (a face of equilibria) is represented by its extreme points,
    not by the points in between. The game is solved in float64 whatever its
    dtype (its entries are exact there): labels and feasibility are decided
    with ``default_tol(torch.float64) = 1e-9`` in normalised payoff units
    (payoffs centred and scaled to max-abs entry 1 per player), so an entry of
    ``-1e-17`` counts as zero; the profiles are then rounded to the game's
    dtype and judged there. The cost grows like ``C(m + n, m)`` bases per game.

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
        An :class:`~aggregation.EquilibriumSet`: strategies ``(*batch, E, m)``
        and ``(*batch, E, n)`` in the game's dtype, ``regret (*batch, E, 2)``
        (of the returned, rounded profiles, computed in float64), ``valid``,
        ``count``, ``degenerate`` (``(*batch,)``, some mixed strategy with a
        support of size ``k`` has more than ``k`` pure best responses), and
        ``info["rejected"]`` (``(*batch,)``, completely labelled pairs that
        failed the final regret check; 0 unless the game is numerically
        ill-conditioned).

    Raises:
        TypeError: ``game`` is not a NormalFormGame, ``tol`` not a number.
        ValueError: ``game`` does not have two players, ``m + n > 62``, ``tol``
            below the resolution of the game's dtype.

    Example:
        >>> import torch
        >>> from aggregation import NormalFormGame, vertex_enumeration
        >>> bos = NormalFormGame.bimatrix([[3., 0.], [0., 2.]], [[2., 0.], [0., 3.]])
        >>> int(vertex_enumeration(bos).count)
        3

    References:
        B. von Stengel (2002), "Computing equilibria for two-person games",
        Handbook of Game Theory 3, ch. 45. D. Avis, G. Rosenberg, R. Savani,
        B. von Stengel (2010), "Enumeration of Nash equilibria for two-player
        games", Economic Theory 42, 9-37.
    """
    game, tol, payoffs, A, Bt = prepare(game, tol, "vertex_enumeration")
    g, x, y, degenerate = extreme_equilibria(A, Bt)
    return finish_set(game, tol, payoffs, g, x, y, degenerate, "vertex_enumeration")


def prepare(game: NormalFormGame, tol: float | None, method: str):
    """Validate; return ``(game, tol, payoffs (N,2,m,n), A (N,m,n), B^T (N,n,m))``."""
    game = check_bimatrix(game)
    tol = resolve_tol(tol, game.dtype)
    m, n = game.num_actions
    if m + n > MAX_LABELS:
        raise ValueError(
            f"{method} supports games with m + n <= {MAX_LABELS} actions in all (it enumerates "
            f"up to C(m + n, m) bases); received a {m}x{n} game"
        )
    payoffs = flat_payoffs(game)  # (N, 2, m, n)
    A = normalise_centered(payoffs[:, 0])  # (N, m, n)
    Bt = normalise_centered(payoffs[:, 1]).transpose(1, 2).contiguous()  # (N, n, m)
    return game, tol, payoffs, A, Bt
