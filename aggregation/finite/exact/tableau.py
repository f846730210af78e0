"""Batched simplex tableaux: the lexicographic ratio test and the pivot.

The pivoting engine of the finite games, shared by :func:`~aggregation.lemke_howson`
and :func:`~aggregation.linear_program`: both pivot with :func:`pivot_step_` (entering
column, ratio test, pivot, basis swap), which on CPU float64 runs as one numba loop nest
(:mod:`.tableau_kernel`) with the same arithmetic. The linear program loops over it;
Lemke-Howson does too in PyTorch, while on CPU float64 with numba it runs each game's
whole path inside the kernel (:func:`.tableau_kernel.lemke_howson_paths`, the same
pivot code and the same bits). A batch of tableaux is stored *batch
last*, ``T`` of shape ``(R, C, N)``: row ``r`` of game ``g`` is the equation
``sum_c T[r, c, g] z_c = T[r, C - 1, g]`` (the last column is the right-hand
side) whose basic variable is ``basis[r, g]``. Batch-last keeps every update
a contiguous, vectorised loop over games; a game whose ``active`` flag is
False is left exactly unchanged (it is *frozen*), so all games pivot together
and finished ones are masked out.

The ratio test is lexicographic (Dantzig, Orden and Wolfe 1955; von Stengel
2002, section 3.5): among the rows with a positive entry in the entering
column it minimises the row vector ``(rhs, B^{-1} columns) / entry``
lexicographically, reading ``B^{-1}`` from the columns of the initial basis.
This is equivalent to perturbing the right-hand side by ``(eps, eps^2, ...)``
and makes every basis nondegenerate, so pivoting never cycles. Ties are
decided with a relative tolerance (``tie_tol``) rather than exact equality,
and entries below ``piv_tol`` are never pivoted on (tolerant pivoting).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...tolerance import default_tol
from . import tableau_kernel

__all__ = ["PIV_TOL", "column", "compact", "pivot_", "pivot_step_", "ratio_test", "swap_basis_"]

#: Entries of the entering column at or below this are not pivot candidates.
PIV_TOL = 1e-11


def ratio_test(
    T: Tensor,
    col: Tensor,
    lex_cols: list[int],
    active: Tensor,
    *,
    piv_tol: float = PIV_TOL,
    tie_tol: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Lexicographic minimum-ratio test, batched.

    Args:
        T: ``(R, C, N)`` tableaux (only the rows that take part: the caller
            slices off an objective row).
        col: ``(R, N)`` the entering column.
        lex_cols: the columns of the initial basis, in the order that breaks
            ties (the columns of ``B^{-1}``).
        active: ``(N,)`` bool, games still pivoting.
        piv_tol: entries of the entering column at or below this are not
            pivot candidates.
        tie_tol: two ratios within this relative distance are a tie (a
            degenerate pivot); None: ``default_tol(T.dtype)``, the tolerance
            of the tableau's arithmetic (the solvers pivot a float64 copy of
            any game, so this is 1e-9 whatever the game's dtype).

    Returns:
        ``(row, ok, tie)``: ``(N,)`` leaving row; ``(N,)`` bool, a positive
        entry existed (False: the ray is unbounded / numerically lost);
        ``(N,)`` bool, the plain ratio test was tied (a degenerate pivot).
    """
    tie_tol = default_tol(T.dtype) if tie_tol is None else tie_tol
    R = col.shape[0]
    pos = (col > piv_tol) & active  # (R, N)
    # ratio = rhs / col on the candidates, +inf elsewhere (rounding can leave rhs at -1e-17).
    ratio = torch.where(pos, T[:, -1, :].clamp_min(0) / col, torch.inf)  # (R, N)
    best = ratio.amin(0)  # (N,) +inf where no candidate
    cand = ratio <= best + tie_tol * (1 + best)  # (R, N); all rows where best = +inf
    ok = best < torch.inf  # (N,) == pos.any(0)
    tie = (cand.sum(0) > 1) & ok  # (N,)
    if bool(tie.any()):
        cand = cand & pos
        inf = torch.full_like(col, float("inf"))
        for j in lex_cols:
            key = torch.where(cand, T[:, j, :] / col, inf)  # (R, N)
            low = key.amin(0)  # (N,)
            cand = cand & (key <= low + tie_tol * (1 + low.abs()))
            if not bool((cand.sum(0) > 1).any()):
                break
    # The first remaining candidate (argmax along dim 0 is slow on CPU).
    weight = _first_weights(R, col.device)  # (R, 1)
    row = R - (cand.to(weight.dtype) * weight).amax(0).to(torch.int64)  # (N,)
    return row.clamp_max(R - 1), ok, tie


def _first_weights(R: int, device: torch.device) -> Tensor:
    """``(R, 1)`` weights ``R, R - 1, ..., 1``: the heaviest true row of a mask is its first."""
    dtype = torch.uint8 if R < 256 else torch.int64  # small: vectorised max over bytes
    return torch.arange(R, 0, -1, dtype=dtype, device=device).view(R, 1)


def column(T: Tensor, entering: Tensor) -> Tensor:
    """``(R, N)`` the column ``entering[g]`` of every tableau: ``T[r, entering[g], g]``.

    One flat ``index_select`` on a contiguous tableau (``gather`` along the
    middle dimension is several times slower on CPU).

    Args:
        T: ``(R, C, N)``.
        entering: ``(N,)`` int64.
    """
    R, C, N = T.shape
    if not T.is_contiguous():
        return T.gather(1, entering.view(1, 1, N).expand(R, 1, N)).squeeze(1)
    base = entering * N + torch.arange(N, device=T.device)  # (N,) offset in row 0
    flat = (torch.arange(R, device=T.device) * (C * N)).view(R, 1) + base  # (R, N)
    return T.view(-1).index_select(0, flat.view(-1)).view(R, N)


def compact(T: Tensor, keep: Tensor) -> Tensor:
    """``T[:, :, keep]``, a new contiguous ``(R, C, K)`` tableau of the games ``keep``.

    One flat ``index_select`` (about twice as fast on CPU as ``index_select``
    along the last dimension).

    Args:
        T: ``(R, C, N)``.
        keep: ``(K,)`` int64 game indices.
    """
    R, C, N = T.shape
    if not T.is_contiguous():
        return T.index_select(2, keep)
    flat = (torch.arange(R * C, device=T.device) * N).view(R * C, 1) + keep  # (R C, K)
    return T.view(-1).index_select(0, flat.view(-1)).view(R, C, keep.numel())


def pivot_(T: Tensor, row: Tensor, col: Tensor, active: Tensor) -> None:
    """Pivot every active tableau in place on ``(row, entering column)``.

    ``T[row] <- T[row] / col[row]``; every other row ``r``:
    ``T[r] <- T[r] - col[r] * T[row]``. Inactive games are unchanged.

    Args:
        T: ``(R, C, N)``.
        row: ``(N,)`` pivot row.
        col: ``(R, N)`` the entering column (before the pivot).
        active: ``(N,)`` bool.
    """
    R, C, N = T.shape
    p = col.gather(0, row.view(1, N)).squeeze(0)  # (N,)
    p = torch.where(active, p, torch.ones_like(p))
    if T.is_contiguous():  # flat index_select / index_copy_: several times faster than gather
        base = row * (C * N) + torch.arange(N, device=T.device)  # (N,) offset of T[row, 0, g]
        flat = ((torch.arange(C, device=T.device) * N).view(C, 1) + base).view(-1)  # (C N,)
        new = T.view(-1).index_select(0, flat).view(C, N) / p  # (C, N); == old if inactive
        T.addcmul_((col * active).unsqueeze(1), new.unsqueeze(0), value=-1.0)  # (R, C, N)
        T.view(-1).index_copy_(0, flat, new.view(-1))
        return
    index = row.view(1, 1, N).expand(1, C, N)
    new = T.gather(0, index).squeeze(0) / p  # (C, N); == old for inactive games
    T.addcmul_((col * active).unsqueeze(1), new.unsqueeze(0), value=-1.0)  # (R, C, N)
    T.scatter_(0, index, new.unsqueeze(0))


def pivot_step_(
    T: Tensor,
    basis: Tensor,
    entering: Tensor,
    active: Tensor,
    lex_cols: list[int],
    *,
    ratio_rows: int | None = None,
    piv_tol: float = PIV_TOL,
    tie_tol: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One pivot of every active tableau: entering column, ratio test, pivot, basis swap.

    The step of both solvers' loops: ``col = column(T, entering)``, the
    lexicographic :func:`ratio_test` on the first ``ratio_rows`` rows, :func:`pivot_`
    where ``act = active & ok`` and :func:`swap_basis_`. On CPU float64 with numba
    installed, one fused loop nest does all four with the same arithmetic and the same
    decisions (:mod:`.tableau_kernel`; :func:`aggregation.accel.use_numba` switches it).

    Args:
        T: ``(R, C, N)`` tableaux, updated in place.
        basis: ``(ratio_rows, N)`` int64 basic variables, updated in place.
        entering: ``(N,)`` int64 entering column of each game.
        active: ``(N,)`` bool, the games that pivot.
        lex_cols: the tie-breaking columns (see :func:`ratio_test`).
        ratio_rows: rows that may leave (None: all ``R``; a linear program's
            objective row is pivoted but never leaves).
        piv_tol, tie_tol: as in :func:`ratio_test`.

    Returns:
        ``(act, tie, leaving)``, each ``(N,)``: the games that pivoted (active with a
        positive entry in the entering column); the plain ratio test was tied (a
        degenerate pivot); the variable that left, where ``act``.
    """
    R = T.shape[0] if ratio_rows is None else ratio_rows
    tie_tol = default_tol(T.dtype) if tie_tol is None else tie_tol
    if tableau_kernel.applies(T) and basis.is_contiguous():
        return tableau_kernel.pivot_step_(T, basis, entering, active, lex_cols, R, piv_tol, tie_tol)
    col = column(T, entering)  # (R_all, N)
    row, ok, tie = ratio_test(T[:R], col[:R], lex_cols, active, piv_tol=piv_tol, tie_tol=tie_tol)
    act = active & ok
    pivot_(T, row, col, act)
    leaving = swap_basis_(basis, row, entering, act)
    return act, tie, leaving


def swap_basis_(basis: Tensor, row: Tensor, entering: Tensor, active: Tensor) -> Tensor:
    """Record the entering variable in ``basis`` (in place); return the leaving one.

    Args:
        basis: ``(R, N)`` int64 basic variable of each row.
        row, entering: ``(N,)`` int64.
        active: ``(N,)`` bool; inactive games keep their basis.

    Returns:
        ``(N,)`` the variable that left (for inactive games: the current one).
    """
    leaving = basis.gather(0, row.view(1, -1)).squeeze(0)  # (N,)
    basis.scatter_(0, row.view(1, -1), torch.where(active, entering, leaving).view(1, -1))
    return leaving
