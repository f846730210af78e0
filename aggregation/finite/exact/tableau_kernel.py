"""One pivot step of the batched tableaux of :mod:`.tableau` as a numba loop nest (CPU, optional).

Computes what :func:`.tableau.pivot_step_` computes with batched PyTorch ops, with the
same arithmetic and the same decisions, for every game ``g`` of a batch-last tableau
``T`` of shape ``(R, C, N)`` (the last column is the right-hand side):

1. the entering column ``col_r = T[r, e_g, g]``;
2. the lexicographic minimum-ratio test over the first ``ratio_rows`` rows: the
   candidates are the rows with ``col_r > piv_tol``, the ratio ``max(rhs_r, 0) / col_r``,
   the rows within ``tie_tol (1 + best)`` of the best a tie (``tie``), broken by the
   columns ``lex_cols`` in order (each within ``tie_tol (1 + |low|)`` of its minimum),
   and the first remaining row is the pivot row; ``ok``: a candidate existed;
3. where ``act = active & ok``, the pivot ``new = T[row] / col_row``,
   ``T[r] <- T[r] + (-col_r) new`` on every row, ``T[row] <- new``;
4. the basis swap: ``leaving = basis[row]``, ``basis[row] <- e_g`` where ``act``.

The PyTorch path makes a pass over ``(R, N)`` or ``(R, C, N)`` for each of about twenty
operations per step; here a tile of ``TILE`` games (one cache line of each tableau row,
game innermost as in the tableau) goes through the four phases at once. Tiles run in
parallel. Inactive games are left exactly unchanged, as there.

:func:`.tableau.pivot_step_` calls it where :func:`applies` holds (switch it off with
:func:`aggregation.accel.use_numba`); ``tests/aggregation/test_tableau_kernel.py`` pins
it to the PyTorch path, pivot by pivot.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ...accel import available, numba, numba_threads

__all__ = ["TILE", "applies", "pivot_step_"]

#: Games per tile: 8 float64 are one 64-byte cache line of a tableau row.
TILE = 8


def applies(T: Tensor) -> bool:
    """Whether the kernel serves ``T``: numba available, CPU, float64, contiguous."""
    return available() and T.device.type == "cpu" and T.dtype == torch.float64 and T.is_contiguous()


def pivot_step_(
    T: Tensor,
    basis: Tensor,
    entering: Tensor,
    active: Tensor,
    lex_cols: list[int],
    ratio_rows: int,
    piv_tol: float,
    tie_tol: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Column, ratio test, pivot and basis swap of every tableau, in place on ``T`` and ``basis``.

    Args:
        T: ``(R, C, N)`` float64 CPU, contiguous.
        basis: ``(R, N)`` int64, contiguous: the basic variable of each row.
        entering: ``(N,)`` int64, the entering column of each game.
        active: ``(N,)`` bool, the games that pivot.
        lex_cols: the tie-breaking columns, in order.
        ratio_rows: the ratio test reads rows ``0 .. ratio_rows - 1`` (the rest, an
            objective row, is pivoted but never leaves).
        piv_tol, tie_tol: as in :func:`.tableau.ratio_test`.

    Returns:
        ``(act, tie, leaving)``, each ``(N,)``: bool, the game pivoted (active and a
        candidate row existed); bool, the plain ratio test was tied (only where a
        candidate existed); int64, the variable that left (where ``act``; the entering
        variable elsewhere, so ``where(act, leaving, entering) == leaving``).
    """
    R, C, N = T.shape
    act = np.zeros(N, np.bool_)
    tie = np.zeros(N, np.bool_)
    leaving = np.empty(N, np.int64)
    if N:
        lex = np.asarray(lex_cols, dtype=np.int64)
        with numba_threads():
            _kernel(
                T.detach().numpy(),
                basis.numpy(),
                entering.contiguous().numpy(),
                active.contiguous().numpy(),
                lex,
                ratio_rows,
                piv_tol,
                tie_tol,
                act,
                tie,
                leaving,
            )
    return torch.from_numpy(act), torch.from_numpy(tie), torch.from_numpy(leaving)


if numba is not None:
    # The rank-one update alone may contract ``T + (-m) * new`` into one fused multiply-add:
    # PyTorch's ``addcmul_`` rounds once there too (the rest of the step must not contract).
    @numba.njit(cache=True, nogil=True, fastmath={"contract"})
    def _update(T, mult, new, g0, lanes):  # pragma: no cover - compiled
        R, C, _ = T.shape
        for r in range(R):
            for c in range(C):
                for j in range(lanes):
                    T[r, c, g0 + j] = T[r, c, g0 + j] + (-mult[r, j]) * new[c, j]

    @numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def _kernel(  # pragma: no cover - compiled
        T, basis, entering, active, lex, ratio_rows, piv_tol, tie_tol, act, tie, leaving
    ):
        R, C, N = T.shape
        rhs = C - 1
        tiles = (N + TILE - 1) // TILE
        for tile in numba.prange(tiles):
            g0 = tile * TILE
            lanes = min(TILE, N - g0)
            col = np.empty((R, TILE))
            cand = np.zeros((R, TILE), np.bool_)
            mult = np.zeros((R, TILE))  # col_r where the game pivots, 0 elsewhere
            new = np.empty((C, TILE))
            prow = np.zeros(TILE, np.int64)
            go = np.zeros(TILE, np.bool_)
            moving = False
            for j in range(lanes):
                moving = moving or active[g0 + j]
            if not moving:  # a frozen tile: nothing to read or write
                for j in range(lanes):
                    leaving[g0 + j] = entering[g0 + j]
                continue
            for j in range(lanes):  # phases 1 and 2, one game at a time
                g = g0 + j
                e = entering[g]
                for r in range(R):
                    col[r, j] = T[r, e, g]
                best = np.inf
                if active[g]:
                    for r in range(ratio_rows):
                        c = col[r, j]
                        if c > piv_tol:
                            v = T[r, rhs, g]
                            ratio = (v if v > 0.0 else 0.0) / c
                            if ratio < best:
                                best = ratio
                ok = best < np.inf
                row = 0
                if ok:
                    bound = best + tie_tol * (1.0 + best)
                    count = 0
                    for r in range(ratio_rows):
                        c = col[r, j]
                        cand[r, j] = False
                        if c > piv_tol:
                            v = T[r, rhs, g]
                            if (v if v > 0.0 else 0.0) / c <= bound:
                                cand[r, j] = True
                                count += 1
                    tie[g] = count > 1
                    for k in range(lex.shape[0]):  # lexicographic tie-break
                        if count <= 1:
                            break
                        low = np.inf
                        for r in range(ratio_rows):
                            if cand[r, j]:
                                key = T[r, lex[k], g] / col[r, j]
                                if key < low:
                                    low = key
                        bound = low + tie_tol * (1.0 + abs(low))
                        count = 0
                        for r in range(ratio_rows):
                            if cand[r, j]:
                                if T[r, lex[k], g] / col[r, j] <= bound:
                                    count += 1
                                else:
                                    cand[r, j] = False
                    for r in range(ratio_rows - 1, -1, -1):  # the first remaining row
                        if cand[r, j]:
                            row = r
                prow[j] = row
                go[j] = ok
                act[g] = ok
                if ok:
                    p = col[row, j]
                    for c in range(C):
                        new[c, j] = T[row, c, g] / p
                    for r in range(R):
                        mult[r, j] = col[r, j]
                    leaving[g] = basis[row, g]
                    basis[row, g] = e
                else:
                    for c in range(C):
                        new[c, j] = 0.0
                    for r in range(R):
                        mult[r, j] = 0.0
                    leaving[g] = e
            # phase 3: the rank-one update over the tile, game innermost (vectorised)
            _update(T, mult, new, g0, lanes)
            for j in range(lanes):
                if go[j]:
                    for c in range(C):
                        T[prow[j], c, g0 + j] = new[c, j]
