"""Zero-sum games by linear programming: a batched simplex method."""

from __future__ import annotations

import torch

from ...result import EquilibriumResult, warn_not_converged
from ...tolerance import default_tol, resolve_tol
from ...validation import check_int
from ..game import NormalFormGame
from ._bimatrix import attach_gradients, check_bimatrix, evaluate_profiles, flat_payoffs
from .tableau import pivot_step_

__all__ = ["linear_program"]

#: A reduced cost above ``-_OPT_TOL`` counts as nonnegative (optimal).
_OPT_TOL = 1e-12
#: Compact the working batch when fewer than this fraction of it is active.
_COMPACT = 0.75


def linear_program(
    game: NormalFormGame, tol: float | None = None, max_pivots: int | None = None
) -> EquilibriumResult:
    """Maximin strategies and the value of every zero-sum game of a batch.

    For a zero-sum game ``(A, -A)`` the row player's maximin strategy and the
    value solve ``max_{x in simplex} min_j (x^T A)_j`` and the column player's
    ``min_{y in simplex} max_i (A y)_i``; by the minimax theorem both equal
    the value ``v`` and ``(x, y)`` is a Nash equilibrium (von Neumann 1928).
    With ``A' = 1 + (A - min A) / (max A - min A)`` (entries in ``[1, 2]``,
    value ``v' > 0``) and ``w = y / v'`` this is the linear program

        max 1^T w   s.t.   A' w <= 1,  w >= 0,

    whose dual ``min 1^T u  s.t.  A'^T u >= 1, u >= 0`` gives ``x = u / 1^T u``
    and ``v' = 1 / 1^T w``. The slack basis is feasible, so a primal simplex
    method needs no phase one. It runs on all games at once (tableaux stored
    batch last, Dantzig's entering rule, lexicographic ratio test so no
    cycling, finished games frozen and compacted away); ``u`` is read from the
    reduced costs of the slack columns at the optimum.

    Gradients: when the payoffs require grad, the returned strategies carry the
    implicit derivative of each equilibrium on its supports (the mechanism of
    :func:`~aggregation.differentiable_bimatrix_nash`); the values are those
    computed without a graph. An equilibrium that is not locally unique
    (a degenerate game, supports of unequal size) gets a zero gradient and a
    ``RuntimeWarning`` at backward time.

    Args:
        game: a two-player zero-sum :class:`~aggregation.NormalFormGame`
            (``B = -A`` within a relative ``1e-9``), payoffs ``(*batch, 2, m, n)``.
        tol: regret tolerance (payoff units) for ``converged``; None means
            :func:`~aggregation.default_tol` of the game's dtype (1e-9 for
            float64, 1e-5 for float32).
        max_pivots: simplex pivot limit per game; None means ``10 (m + n)^2 + 100``.

    Returns:
        :class:`~aggregation.EquilibriumResult` with the maximin strategies
        ``(*batch, m)`` and ``(*batch, n)`` (game dtype), ``regret (*batch, 2)``,
        ``converged`` (regret <= tol and the simplex reached optimality),
        ``iterations`` (= pivots), ``residual`` (``|1^T w - 1^T u|``, the
        primal-dual gap of the normalised LP) and ``info`` with ``value``
        (the row player's value ``v``, payoff units), ``pivots`` and
        ``hit_pivot_limit``.

    Raises:
        TypeError: ``game`` is not a NormalFormGame.
        ValueError: ``game`` has not two players or is not zero-sum (``|A + B|``
            above ``default_tol(dtype) * max(1, |A|)``); ``tol`` below the
            resolution of the game's dtype;
            ``max_pivots < 1``.

    Example:
        >>> from aggregation import NormalFormGame, linear_program
        >>> pennies = NormalFormGame.zero_sum([[1., -1.], [-1., 1.]])
        >>> res = linear_program(pennies)
        >>> [round(p, 9) for p in res.strategies[0].tolist()]
        [0.5, 0.5]
        >>> abs(round(float(res.info["value"]), 9))
        0.0

    References:
        G. B. Dantzig (1951), "A proof of the equivalence of the programming
        problem and the game problem"; G. B. Dantzig, A. Orden, P. Wolfe
        (1955), "The generalized simplex method for minimizing a linear form
        under linear inequality restraints", Pacific J. Math. 5.
    """
    game = check_bimatrix(game)
    tol = resolve_tol(tol, game.dtype)
    m, n = game.num_actions
    if max_pivots is None:
        max_pivots = 10 * (m + n) ** 2 + 100
    else:
        max_pivots = check_int(max_pivots, "max_pivots", minimum=1)
    payoffs = flat_payoffs(game)  # (N, 2, m, n)
    A = payoffs[:, 0]  # (N, m, n)
    scale = A.abs().amax((-2, -1)).clamp_min(1.0)  # (N,)
    gap = (A + payoffs[:, 1]).abs().amax((-2, -1))  # (N,)
    bad = gap > default_tol(game.dtype) * scale  # B = -A up to the dtype's rounding
    if bool(bad.any()):
        raise ValueError(
            f"game must be zero-sum (B = -A) for linear_program; received {int(bad.sum())} "
            f"of {bad.numel()} games with max |A + B| up to {float(gap.max()):.3g}"
        )
    N = A.shape[0]
    device, dtype = A.device, A.dtype
    low = A.amin((-2, -1))  # (N,)
    span = A.amax((-2, -1)) - low
    span = torch.where(span > 0, span, torch.ones_like(span))
    Ap = 1.0 + (A - low[:, None, None]) / span[:, None, None]  # (N, m, n) in [1, 2]

    # Rows 0..m-1: A' w + s = 1 (columns: w_0..w_{n-1}, s_0..s_{m-1}, rhs).
    # Row m: the objective z - 1^T w = 0.
    C = n + m
    T = torch.zeros(m + 1, C + 1, N, dtype=dtype, device=device)  # (m + 1, C + 1, N)
    T[:m, :n, :] = Ap.permute(1, 2, 0)
    T[torch.arange(m), n + torch.arange(m), :] = 1.0
    T[:m, C, :] = 1.0
    T[m, :n, :] = -1.0
    basis = (n + torch.arange(m, device=device)).view(m, 1).repeat(1, N)  # (m, N)
    lex = list(range(n, C))

    w = torch.zeros(N, n, dtype=dtype, device=device)
    u = torch.zeros(N, m, dtype=dtype, device=device)
    pivots = torch.zeros(N, dtype=torch.int64, device=device)
    optimal = torch.zeros(N, dtype=torch.bool, device=device)
    ids = torch.arange(N, device=device)
    w_piv = torch.zeros(N, dtype=torch.int64, device=device)
    lost = torch.zeros(N, dtype=torch.bool, device=device)  # no pivot row (rounding)

    def flush(out: torch.Tensor) -> None:
        g = ids[out]
        ws = torch.zeros(C, g.numel(), dtype=dtype, device=device)
        ws.scatter_(0, basis[:, out], T[:m, C, out])
        w[g] = ws[:n].t()
        u[g] = T[m, n:C, out].t()
        pivots[g] = w_piv[out]
        optimal[g] = T[m, :C, out].amin(0) >= -_OPT_TOL

    step = 0
    while True:
        reduced = T[m, :C, :]  # (C, Nw)
        best, entering = reduced.min(0)  # (Nw,)
        active = (best < -_OPT_TOL) & ~lost
        count = int(active.sum())
        if count == 0 or step >= max_pivots:
            break
        if count < _COMPACT * active.numel():
            flush(~active)
            keep = active
            ids, w_piv, T, basis = ids[keep], w_piv[keep], T[:, :, keep], basis[:, keep]
            lost = lost[keep]
            entering, active = entering[keep], active[keep]
        # act: pivoted (A' > 0 bounds the LP: a positive entry exists up to rounding)
        act, _, _ = pivot_step_(T, basis, entering, active, lex, ratio_rows=m)
        lost |= active & ~act
        w_piv += act
        step += 1
    flush(torch.ones_like(ids, dtype=torch.bool))

    # Normalise (guard the degenerate all-zero case, which is never optimal).
    ws, us = w.clamp_min(0), u.clamp_min(0)
    y = torch.where(ws.sum(-1, keepdim=True) > 0, ws, torch.ones_like(ws))
    x = torch.where(us.sum(-1, keepdim=True) > 0, us, torch.ones_like(us))
    residual = (ws.sum(-1) - us.sum(-1)).abs()  # (N,)
    value = (1.0 / ws.sum(-1).clamp_min(1e-300) - 1.0) * span + low  # (N,)
    games = torch.arange(N, device=device)
    x, y, regret = evaluate_profiles(payoffs, games, x, y, game.dtype)
    converged = optimal & (regret.amax(-1) <= tol)
    x, y = attach_gradients(game, games, x, y)
    shape = tuple(game.batch_shape)
    result = EquilibriumResult(
        strategies=(x.reshape(*shape, m), y.reshape(*shape, n)),
        regret=regret.to(game.dtype).reshape(*shape, 2),
        converged=converged.reshape(shape),
        iterations=pivots.reshape(shape),
        method="linear_program",
        tol=tol,
        residual=residual.to(game.dtype).reshape(shape),
        info={
            "value": value.to(game.dtype).reshape(shape),
            "pivots": pivots.reshape(shape),
            "hit_pivot_limit": (~optimal & (pivots >= max_pivots)).reshape(shape),
        },
    )
    warn_not_converged(result.converged, "linear_program")
    return result
