"""The Lemke-Howson algorithm, batched: all games pivot together."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...result import EquilibriumResult, EquilibriumSet, warn_not_converged
from ...tolerance import default_tol, resolve_tol
from ...validation import check_int
from ..game import NormalFormGame
from . import tableau_kernel
from ._bimatrix import (
    attach_gradients,
    check_bimatrix,
    evaluate_profiles,
    finish_set,
    flat_payoffs,
    positive_affine,
)
from .tableau import PIV_TOL, compact, pivot_step_

__all__ = ["lemke_howson", "lemke_howson_enumeration"]


def lemke_howson(
    game: NormalFormGame,
    label: int = 0,
    tol: float | None = None,
    max_pivots: int | None = None,
) -> EquilibriumResult:
    """One Nash equilibrium of every bimatrix game of a batch, by Lemke-Howson.

    With payoffs mapped affinely into ``[1, 2]`` (equilibria are unchanged),
    the best-response polytopes are ``P = {x >= 0 : B^T x <= 1}`` and
    ``Q = {y >= 0 : A y <= 1}``, with labels ``i`` for ``x_i = 0`` or
    ``(A y)_i = 1`` and ``m + j`` for ``(B^T x)_j = 1`` or ``y_j = 0``.
    Starting from the artificial equilibrium ``(0, 0)``, which has every
    label, the algorithm drops ``label`` and follows the unique path of
    *almost completely labelled* vertex pairs (every label except possibly
    ``label`` present) by complementary pivoting, alternating between the
    tableaux of ``P`` and ``Q``: the variable with the label that just left
    one tableau enters the other. The path ends at a completely labelled
    pair, whose normalisation ``(x / 1^T x, y / 1^T y)`` is a Nash
    equilibrium (Lemke and Howson 1964; von Stengel 2002, Alg. 3.5).

    Batched: the tableaux of all games are stored together (batch last) and
    every pivot is one vectorised step for the whole batch; games whose path
    has ended are frozen and periodically compacted away, so the cost follows
    the sum of the path lengths. On CPU float64 with numba, each game's whole
    path runs inside one kernel instead, in tiles of 8 games whose tableaux stay
    in cache (``aggregation/finite/exact/tableau_kernel.py``; the same pivots and
    the same bits). The ratio test is lexicographic with tolerant
    pivoting (see ``aggregation/finite/exact/tableau.py``), so the path is well
    defined and terminates on degenerate games too; the pivot limit is a
    safeguard against numerical trouble and is reported per game.

    A returned profile is called converged only if its regret is at most
    ``tol`` for both players. In a degenerate game the lexicographic path can
    end at a point whose regret exceeds ``tol`` after rounding; then
    ``converged`` is False (never a false equilibrium).

    Gradients: when the payoffs require grad, the returned strategies carry the
    implicit derivative of each equilibrium on its supports (the mechanism of
    :func:`~aggregation.differentiable_bimatrix_nash`); the values are those
    computed without a graph. An equilibrium that is not locally unique
    (a degenerate game, supports of unequal size) gets a zero gradient and a
    ``RuntimeWarning`` at backward time.

    Args:
        game: a two-player :class:`~aggregation.NormalFormGame`, payoffs
            ``(*batch, 2, m, n)``.
        label: the dropped label, ``0 .. m + n - 1`` (``i < m``: row ``i``;
            ``m + j``: column ``j``). Different labels can lead to different
            equilibria.
        tol: regret tolerance (payoff units) for ``converged``; None means
            :func:`~aggregation.default_tol` of the game's dtype (1e-9 for
            float64, 1e-5 for float32).
        max_pivots: pivot limit per game; None means ``10 (m + n)^2 + 100``
            (random games need a few times ``m + n``).

    Returns:
        :class:`~aggregation.EquilibriumResult` with strategies ``(*batch, m)``
        and ``(*batch, n)`` (game dtype), ``regret (*batch, 2)``,
        ``converged``, ``iterations`` (= pivots) and ``info`` holding
        ``pivots``, ``terminated`` (the path reached a completely labelled
        pair), ``hit_pivot_limit`` and ``degenerate`` (a tie in some ratio
        test: a degenerate pivot on the path), each ``(*batch,)``.

    Raises:
        TypeError: ``game`` is not a NormalFormGame; ``label``/``max_pivots``
            not integers.
        ValueError: not two players; ``label`` outside ``0 .. m + n - 1``;
            ``max_pivots < 1``; ``tol`` below the resolution of the game's dtype.

    Example:
        >>> from aggregation import NormalFormGame, lemke_howson
        >>> bos = NormalFormGame.bimatrix([[3., 0.], [0., 2.]], [[2., 0.], [0., 3.]])
        >>> lemke_howson(bos, label=0).strategies[0].tolist()
        [1.0, 0.0]

    References:
        C. E. Lemke, J. T. Howson (1964), "Equilibrium points of bimatrix
        games", J. SIAM 12, 413-423. B. von Stengel (2002), "Computing
        equilibria for two-person games", Handbook of Game Theory 3, ch. 45.
    """
    game, tol, max_pivots = _validate(game, tol, max_pivots)
    m, n = game.num_actions
    label = check_int(label, "label", minimum=0, maximum=m + n - 1)
    payoffs = flat_payoffs(game)  # (N, 2, m, n)
    N = payoffs.shape[0]
    labels = torch.full((N,), label, dtype=torch.int64, device=payoffs.device)
    path = _paths(payoffs, labels, label < m, max_pivots)
    x, y, regret = evaluate_profiles(payoffs, None, path["x"], path["y"], game.dtype)
    converged = path["terminated"] & (regret.amax(-1) <= tol)  # (N,)
    x, y = attach_gradients(game, torch.arange(N, device=payoffs.device), x, y)
    shape = tuple(game.batch_shape)
    info = {k: path[k].reshape(shape) for k in ("pivots", "terminated", "hit_pivot_limit")}
    info["degenerate"] = path["degenerate"].reshape(shape)
    result = EquilibriumResult(
        strategies=(x.reshape(*shape, m), y.reshape(*shape, n)),
        regret=regret.to(game.dtype).reshape(*shape, 2),
        converged=converged.reshape(shape),
        iterations=path["pivots"].reshape(shape),
        method="lemke_howson",
        tol=tol,
        info=info,
    )
    warn_not_converged(result.converged, "lemke_howson")
    return result


def lemke_howson_enumeration(
    game: NormalFormGame, tol: float | None = None, max_pivots: int | None = None
) -> EquilibriumSet:
    """The distinct equilibria that Lemke-Howson reaches from every dropped label.

    Runs :func:`lemke_howson` from all ``m + n`` labels at once (one batch of
    ``(m + n) N`` paths: labels ``i < m`` start in ``P``; labels ``m + j`` run
    on the transposed game, where they become row labels), keeps the end
    points whose regret is at most ``tol`` and removes duplicates. This finds
    at least one equilibrium and in general not all of them: it is not an
    enumeration method, but a cheap way to collect the equilibria on the
    Lemke-Howson paths from the artificial equilibrium (Shapley 1974).

    Gradients: when the payoffs require grad, the returned strategies carry the
    implicit derivative of each equilibrium on its supports (the mechanism of
    :func:`~aggregation.differentiable_bimatrix_nash`); the values are those
    computed without a graph. An equilibrium that is not locally unique
    (a degenerate game, supports of unequal size) gets a zero gradient and a
    ``RuntimeWarning`` at backward time.

    Args:
        game: a two-player :class:`~aggregation.NormalFormGame`.
        tol: regret tolerance (payoff units) every returned profile meets
            (None: :func:`~aggregation.default_tol` of the game's dtype).
        max_pivots: pivot limit per path (see :func:`lemke_howson`).

    Returns:
        An :class:`~aggregation.EquilibriumSet` (see
        :func:`~aggregation.support_enumeration` for the layout); ``degenerate``
        is True where some path met a tie in its ratio test, and
        ``info["rejected"]`` counts path ends that failed the regret check
        (a degenerate game or the pivot limit).

    Raises:
        TypeError, ValueError: as :func:`lemke_howson`.
    """
    game, tol, max_pivots = _validate(game, tol, max_pivots)
    m, n = game.num_actions
    payoffs = flat_payoffs(game)  # (N, 2, m, n)
    N = payoffs.shape[0]
    device = payoffs.device
    rows = torch.arange(m, device=device).repeat_interleave(N)  # (m N,) label-major
    cols = torch.arange(m, m + n, device=device).repeat_interleave(N)  # (n N,)
    first = _paths(payoffs.repeat(m, 1, 1, 1), rows, True, max_pivots)
    second = _paths(payoffs.repeat(n, 1, 1, 1), cols, False, max_pivots)
    path = {k: torch.cat([first[k], second[k]]) for k in first}
    games = torch.arange(N, device=device).repeat(m + n)  # (L N,)
    degenerate = path["degenerate"].view(m + n, N).any(0)  # (N,)
    ok = path["terminated"]
    order = torch.argsort(games, stable=True)
    order = order[ok[order]]
    set_ = finish_set(
        game,
        tol,
        payoffs,
        games[order],
        path["x"][order],
        path["y"][order],
        torch.ones_like(degenerate),  # paths from several labels can meet: always de-duplicate
        "lemke_howson_enumeration",
        warn=False,
    )
    rejected = set_.info["rejected"].reshape(-1) + (~ok).view(m + n, N).sum(0)
    shape = tuple(game.batch_shape)
    return EquilibriumSet(
        strategies=set_.strategies,
        regret=set_.regret,
        valid=set_.valid,
        count=set_.count,
        degenerate=degenerate.reshape(shape),
        method=set_.method,
        tol=tol,
        info={"rejected": rejected.reshape(shape)},
    )


def _validate(game: Any, tol: Any, max_pivots: Any) -> tuple[NormalFormGame, float, int]:
    game = check_bimatrix(game)
    tol = resolve_tol(tol, game.dtype)
    m, n = game.num_actions
    if max_pivots is None:
        max_pivots = 10 * (m + n) ** 2 + 100
    else:
        max_pivots = check_int(max_pivots, "max_pivots", minimum=1)
    return game, tol, max_pivots


def _paths(payoffs: Tensor, labels: Tensor, row_labels: bool, max_pivots: int) -> dict:
    """Run the Lemke-Howson paths; ``labels`` are all row labels or all column labels.

    Column labels ``m + j`` run on the transposed game ``(B^T, A^T)``, where
    they are row label ``j``; the strategies are swapped back. On CPU float64 with
    numba, :func:`.tableau_kernel.lemke_howson_paths` runs each game's whole path
    (its tableaux built and pivoted in a tile that stays in cache); elsewhere
    :func:`_core` pivots the whole batch step by step. Both give the same bits.
    """
    payoffs = payoffs.contiguous()  # (N, 2, m, n)
    m = payoffs.shape[2]
    rows = labels if row_labels else labels - m
    if tableau_kernel.applies(payoffs):
        tie_tol = default_tol(payoffs.dtype)  # pivot_step_'s default
        x, y, pivots, terminated, degenerate = tableau_kernel.lemke_howson_paths(
            payoffs, rows, not row_labels, max_pivots, PIV_TOL, tie_tol
        )
    else:
        A, B = payoffs[:, 0], payoffs[:, 1]  # (N, m, n), normalised by _core
        if not row_labels:
            A, B = B.transpose(1, 2), A.transpose(1, 2)
        x, y, pivots, terminated, degenerate = _core(A, B, rows, max_pivots)
    if not row_labels:
        x, y = y, x
    hit_limit = ~terminated & (pivots >= max_pivots)
    # A path that never moved (or lost its ray) leaves x or y at zero: uniform
    # placeholders keep the regret finite; such games are not converged.
    x = torch.where(x.sum(-1, keepdim=True) > 0, x.clamp_min(0), torch.ones_like(x))
    y = torch.where(y.sum(-1, keepdim=True) > 0, y.clamp_min(0), torch.ones_like(y))
    return {
        "x": x,
        "y": y,
        "pivots": pivots,
        "terminated": terminated,
        "hit_pivot_limit": hit_limit,
        "degenerate": degenerate,
    }


#: Compact the working batch when fewer than this fraction of it is active.
_COMPACT = 0.1


def _core(
    A: Tensor, B: Tensor, labels: Tensor, max_pivots: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Complementary pivoting for row labels ``labels < m``, batched step by step.

    ``A`` and ``B`` are mapped into ``[1, 2]`` by ``normalise_positive`` (in
    place in the tableaux, the same arithmetic).

    Tableau ``P`` (``n`` rows) holds ``B^T x + s = 1`` with variables
    ``x_0..x_{m-1}`` (labels ``0..m-1``) and ``s_0..s_{n-1}`` (labels
    ``m..m+n-1``); tableau ``Q`` (``m`` rows) holds ``r + A y = 1`` with
    ``r`` (labels ``0..m-1``) and ``y`` (labels ``m..m+n-1``). Column ``c``
    of either tableau is the variable with label ``c``, so the label that
    leaves one tableau is directly the column that enters the other.

    Every step pivots the whole working batch with :func:`.tableau.pivot_step_`
    (``P`` on even steps, ``Q`` on odd ones); games whose path has ended are frozen
    and, once fewer than ``_COMPACT`` of the batch is active, written back and
    compacted away. The reference for :func:`.tableau_kernel.lemke_howson_paths`.

    Returns:
        ``(x, y, pivots, terminated, degenerate)`` as
        :func:`.tableau_kernel.lemke_howson_paths`.
    """
    N, m, n = A.shape
    device, dtype = A.device, A.dtype
    L = m + n
    TP = torch.empty(n, L + 1, N, dtype=dtype, device=device)  # (n, L + 1, N)
    low_a, span_a = (t.view(N) for t in positive_affine(A))  # (N,) each
    low_b, span_b = (t.view(N) for t in positive_affine(B))
    TP[:, :m, :] = B.permute(2, 1, 0)  # TP[j, i, g] = B[g, i, j]
    TP[:, :m, :].sub_(low_b).div_(span_b).add_(1.0)  # normalise_positive(B), in place
    TP[:, m:L, :].zero_().diagonal(0, 0, 1).fill_(1.0)  # the slack columns: identity
    TP[:, L, :] = 1.0
    TQ = torch.empty(m, L + 1, N, dtype=dtype, device=device)  # (m, L + 1, N)
    TQ[:, :m, :].zero_().diagonal(0, 0, 1).fill_(1.0)
    TQ[:, m:L, :] = A.permute(1, 2, 0)  # TQ[i, m + j, g] = A[g, i, j]
    TQ[:, m:L, :].sub_(low_a).div_(span_a).add_(1.0)
    TQ[:, L, :] = 1.0
    basis_p = (m + torch.arange(n, device=device)).view(n, 1).repeat(1, N)  # (n, N)
    basis_q = torch.arange(m, device=device).view(m, 1).repeat(1, N)  # (m, N)
    lex_p, lex_q = list(range(m, L)), list(range(m))

    x = torch.zeros(N, m, dtype=dtype, device=device)
    y = torch.zeros(N, n, dtype=dtype, device=device)
    pivots = torch.zeros(N, dtype=torch.int64, device=device)
    terminated = torch.zeros(N, dtype=torch.bool, device=device)
    degenerate = torch.zeros(N, dtype=torch.bool, device=device)

    ids = torch.arange(N, device=device)  # working index -> game
    entering = labels.clone()  # (Nw,)
    target = labels.clone()  # (Nw,)
    active = torch.ones(N, dtype=torch.bool, device=device)
    done = torch.zeros(N, dtype=torch.bool, device=device)
    w_piv = torch.zeros(N, dtype=torch.int64, device=device)
    w_deg = torch.zeros(N, dtype=torch.bool, device=device)

    def flush(out: Tensor) -> None:
        """Write back the games at working positions ``out`` (their paths are over)."""
        g = ids.index_select(0, out)
        xs = torch.zeros(L, g.numel(), dtype=dtype, device=device)
        xs.scatter_(0, basis_p.index_select(1, out), TP[:, L, :].index_select(1, out))
        ys = torch.zeros(L, g.numel(), dtype=dtype, device=device)
        ys.scatter_(0, basis_q.index_select(1, out), TQ[:, L, :].index_select(1, out))
        x[g] = xs[:m].t()
        y[g] = ys[m:].t()
        pivots[g] = w_piv.index_select(0, out)
        terminated[g] = done.index_select(0, out)
        degenerate[g] = w_deg.index_select(0, out)

    step = 0
    while step < max_pivots:
        T, basis, lex = (TP, basis_p, lex_p) if step % 2 == 0 else (TQ, basis_q, lex_q)
        # act: pivoted; a lost ray (no positive entry) stops the path unterminated
        act, tie, leaving = pivot_step_(T, basis, entering, active, lex)
        w_piv += act
        w_deg |= act & tie
        finished = act & (leaving == target)
        done |= finished
        active = act & ~finished
        entering = torch.where(act, leaving, entering)
        step += 1
        count = int(active.sum())
        if count == 0:
            break
        if count < _COMPACT * active.numel():
            flush(torch.nonzero(~active).flatten())
            keep = torch.nonzero(active).flatten()
            ids, entering, target = ids[keep], entering[keep], target[keep]
            done, w_piv, w_deg = done[keep], w_piv[keep], w_deg[keep]
            active = torch.ones(keep.numel(), dtype=torch.bool, device=device)
            TP, TQ = compact(TP, keep), compact(TQ, keep)
            basis_p, basis_q = basis_p.index_select(1, keep), basis_q.index_select(1, keep)
    flush(torch.arange(ids.numel(), device=device))
    return x, y, pivots, terminated, degenerate
