"""The pivots of the batched tableaux of :mod:`.tableau` as numba loop nests (CPU, optional).

One pivot engine, :func:`_pivot_tile`, computes what :func:`.tableau.pivot_step_`
computes with batched PyTorch ops, with the same arithmetic and the same decisions, for
a tile of ``TILE`` games ``g`` of a batch-last tableau ``T`` of shape ``(R, C, N)`` (the
last column is the right-hand side):

1. the entering column ``col_r = T[r, e_g, g]``;
2. the lexicographic minimum-ratio test over the first ``ratio_rows`` rows: the
   candidates are the rows with ``col_r > piv_tol``, the ratio ``max(rhs_r, 0) / col_r``,
   the rows within ``tie_tol (1 + best)`` of the best a tie (``tie``), broken by the
   columns ``lex_cols`` in order (each within ``tie_tol (1 + |low|)`` of its minimum),
   and the first remaining row is the pivot row; ``ok``: a candidate existed;
3. where ``act = active & ok``, the pivot ``new = T[row] / col_row``,
   ``T[r] <- T[r] + (-col_r) new`` on every row, ``T[row] <- new``;
4. the basis swap: ``leaving = basis[row]``, ``basis[row] <- e_g`` where ``act``.

A tile is one cache line of each tableau row (game innermost, as in the tableau), so
the four phases run on it at once. Inactive games are left exactly unchanged, as there.
Scratch arrays come from :func:`_scratch`, once per tile (per work item for the paths).
Two kernels drive it, in parallel:

- :func:`pivot_step_`: one step of every tableau, tiles in parallel (the PyTorch path
  makes a pass over ``(R, N)`` or ``(R, C, N)`` for each of about twenty operations
  per step). :func:`~aggregation.linear_program` loops over it, and so does
  Lemke-Howson's PyTorch path where the path kernel does not apply.
- :func:`lemke_howson_paths`: the whole Lemke-Howson path of every game, work items of
  ``CHUNK`` games in parallel. An item's tile of ``TILE`` lanes builds each game's two
  tableaux ``P`` and ``Q`` from its payoffs (the arithmetic of the PyTorch construction
  in :func:`.lemke_howson._core`), pivots them alternately (``P`` on even steps, ``Q``
  on odd ones, the label that left one entering the other) until the game has reached
  the dropped label, lost its ray or hit the pivot limit, writes its strategies off
  the bases and loads the item's next game into the lane (at a ``P`` step). The tile's
  tableaux stay in L1 over all its paths, a lane never waits for the batch's slowest
  game, and nothing of size ``(R, C, N)`` goes through memory. Each game's arithmetic
  is its own, so the results are those of the batched steps, bit for bit.

:func:`.tableau.pivot_step_` and :func:`.lemke_howson._paths` call them where
:func:`applies` holds (switch them off with :func:`aggregation.accel.use_numba`);
``tests/aggregation/test_tableau_kernel.py`` pins them to the PyTorch path, pivot by
pivot and path by path.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ...accel import available, numba, numba_threads

__all__ = ["CHUNK", "TILE", "applies", "lemke_howson_paths", "pivot_step_"]

#: Games per tile: 8 float64 are one 64-byte cache line of a tableau row.
TILE = 8

#: Games per work item of :func:`lemke_howson_paths`: its lanes take them in turn.
CHUNK = 256


def applies(T: Tensor) -> bool:
    """Whether the kernels serve ``T``: numba available, CPU, float64, contiguous."""
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


def lemke_howson_paths(
    payoffs: Tensor,
    labels: Tensor,
    transposed: bool,
    max_pivots: int,
    piv_tol: float,
    tie_tol: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The Lemke-Howson path of every game from row label ``labels[g] < m``, to its end.

    The game is ``(A, B) = (payoffs[:, 0], payoffs[:, 1])``, or with ``transposed`` the
    transposed game ``(B^T, A^T)`` (where column labels become row labels); ``m``, ``n``
    are its numbers of rows and columns. The tableaux are those of
    :func:`.lemke_howson._core`: ``P`` (``n`` rows) ``[B'^T | I | 1]`` with basis
    ``m .. m + n - 1`` and ``Q`` (``m`` rows) ``[I | A' | 1]`` with basis ``0 .. m - 1``,
    where ``M' = (M - low) / span + 1`` with ``(low, span)`` of
    :func:`._bimatrix.positive_affine` (min and max are exact; subtract, divide, add: the
    PyTorch construction's rounding). Step ``s`` pivots ``P`` if ``s`` is even and ``Q``
    if odd, in every game still on its path; the entering column is the label that left
    at the previous step (``labels[g]`` first). A game stops when the leaving label is
    ``labels[g]`` (terminated), when no entry of the entering column exceeds ``piv_tol``
    (a lost ray), or after ``max_pivots`` steps.

    Each work item of ``CHUNK`` games runs a tile of ``TILE`` lanes: a lane whose path is
    over takes the next game of the item at the next ``P`` step, so a tile pivots until
    the item is done rather than until its slowest game is (each game's arithmetic is its
    own, so this changes no result).

    Args:
        payoffs: ``(N, 2, m, n)`` float64 CPU payoffs (``(N, 2, n, m)`` if ``transposed``).
        labels: ``(N,)`` int64 row labels of the game pivoted, ``0 .. m - 1``.
        transposed: pivot the transposed game.
        max_pivots: the step limit.
        piv_tol, tie_tol: as in :func:`.tableau.ratio_test`.

    Returns:
        ``(x, y, pivots, terminated, degenerate)``: ``(N, m)`` and ``(N, n)`` float64,
        the right-hand sides of the basic ``x_i`` of ``P`` and ``y_j`` of ``Q`` (zero for
        nonbasic variables; not normalised); ``(N,)`` int64 pivots made; ``(N,)`` bool,
        the path ended at the dropped label; ``(N,)`` bool, some ratio test on the path
        was tied.
    """
    N, _, m, n = payoffs.shape
    if transposed:
        m, n = n, m
    x = np.zeros((N, m))
    y = np.zeros((N, n))
    pivots = np.zeros(N, np.int64)
    terminated = np.zeros(N, np.bool_)
    degenerate = np.zeros(N, np.bool_)
    if N:
        with numba_threads():
            _paths_kernel(
                payoffs.detach().contiguous().numpy(),
                transposed,
                labels.contiguous().numpy(),
                max_pivots,
                np.arange(m, m + n, dtype=np.int64),  # P's lexicographic columns: its slacks
                np.arange(m, dtype=np.int64),  # Q's: its slacks
                piv_tol,
                tie_tol,
                x,
                y,
                pivots,
                terminated,
                degenerate,
            )
    out = (x, y, pivots, terminated, degenerate)
    return tuple(torch.from_numpy(a) for a in out)  # type: ignore[return-value]


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

    @numba.njit(cache=True, nogil=True)
    def _scratch(R, C):  # pragma: no cover - compiled
        """The work arrays of :func:`_pivot_tile`, for up to ``R`` rows and ``C`` columns."""
        return (
            np.zeros((R, TILE)),  # ratio: the ratio of each candidate row, +inf elsewhere
            np.zeros((R, TILE)),  # col: the entering column
            np.zeros((R, TILE), np.bool_),  # cand: the rows still in the ratio test
            np.zeros((R, TILE)),  # mult: col_r where the game pivots, 0 elsewhere
            np.zeros((C, TILE)),  # new: the pivot row over its pivot, 0 where no pivot
            np.ones(TILE),  # pivot: the pivot element, 1 where no pivot
            np.zeros(TILE, np.int64),  # prow: the pivot row
            np.zeros(TILE, np.bool_),  # go: the game pivots
        )

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def _pivot_tile(  # pragma: no cover - compiled
        T,
        basis,
        entering,
        active,
        lex,
        ratio_rows,
        piv_tol,
        tie_tol,
        act,
        tie,
        leaving,
        g0,
        lanes,
        scratch,
    ):
        """Phases 1-4 on the games ``g0 .. g0 + lanes - 1`` (``lanes <= TILE``) of ``T``.

        ``act``, ``tie`` and ``leaving`` are written for each of these games (``tie``
        False and ``leaving`` the entering column where the game did not pivot).
        ``scratch``: :func:`_scratch` of at least ``T``'s size; its contents on entry
        do not matter.
        """
        ratio, col, cand, mult, new, pivot, prow, go = scratch
        R, C, _ = T.shape
        rhs = C - 1
        moving = False
        for j in range(lanes):
            moving = moving or active[g0 + j]
        if not moving:  # a frozen tile: nothing to read or write
            for j in range(lanes):
                act[g0 + j] = False
                tie[g0 + j] = False
                leaving[g0 + j] = entering[g0 + j]
            return
        for j in range(lanes):  # phases 1 and 2, one game at a time
            g = g0 + j
            e = entering[g]
            for r in range(R):
                col[r, j] = T[r, e, g]
            best = np.inf
            if active[g]:
                for r in range(ratio_rows):  # branch-free: the rows' divisions overlap
                    c = col[r, j]
                    v = T[r, rhs, g]
                    q = (v if v > 0.0 else 0.0) / c
                    q = q if c > piv_tol else np.inf
                    ratio[r, j] = q
                    best = q if q < best else best
            ok = best < np.inf
            row = 0
            tie[g] = False
            if ok:
                bound = best + tie_tol * (1.0 + best)
                count = 0
                for r in range(ratio_rows):
                    cand[r, j] = col[r, j] > piv_tol and ratio[r, j] <= bound
                    count += cand[r, j]
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
                pivot[j] = col[row, j]
                for c in range(C):
                    new[c, j] = T[row, c, g]
                for r in range(R):
                    mult[r, j] = col[r, j]
                leaving[g] = basis[row, g]
                basis[row, g] = e
            else:
                pivot[j] = 1.0
                for c in range(C):
                    new[c, j] = 0.0
                for r in range(R):
                    mult[r, j] = 0.0
                leaving[g] = e
        for c in range(C):  # the pivot row over its pivot, every game at once (vectorised)
            for j in range(lanes):
                new[c, j] = new[c, j] / pivot[j]
        # phase 3: the rank-one update over the tile, game innermost (vectorised)
        _update(T, mult, new, g0, lanes)
        for j in range(lanes):
            if go[j]:
                for c in range(C):
                    T[prow[j], c, g0 + j] = new[c, j]

    @numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def _kernel(  # pragma: no cover - compiled
        T, basis, entering, active, lex, ratio_rows, piv_tol, tie_tol, act, tie, leaving
    ):
        R, C, N = T.shape
        tiles = (N + TILE - 1) // TILE
        for tile in numba.prange(tiles):
            g0 = tile * TILE
            lanes = min(TILE, N - g0)
            scratch = _scratch(R, C)
            _pivot_tile(
                T,
                basis,
                entering,
                active,
                lex,
                ratio_rows,
                piv_tol,
                tie_tol,
                act,
                tie,
                leaving,
                g0,
                lanes,
                scratch,
            )

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def _load(payoffs, transposed, g, j, TP, TQ, basis_p, basis_q):  # pragma: no cover
        """Write game ``g``'s initial tableaux and bases into lane ``j`` of a tile.

        ``A'[i, k] = payoffs[g, 0, i, k]``, ``B'[i, k] = payoffs[g, 1, i, k]``, or with
        ``transposed`` ``A'[i, k] = payoffs[g, 1, k, i]``, ``B'[i, k] = payoffs[g, 0, k, i]``;
        ``M' <- (M' - low) / span + 1`` as :func:`._bimatrix.positive_affine`.
        """
        m, n = TQ.shape[0], TP.shape[0]
        L = m + n
        pa, pb = (1, 0) if transposed else (0, 1)
        low_a, high_a = np.inf, -np.inf
        low_b, high_b = np.inf, -np.inf
        for i in range(payoffs.shape[2]):
            for k in range(payoffs.shape[3]):
                a, b = payoffs[g, pa, i, k], payoffs[g, pb, i, k]
                low_a, high_a = min(low_a, a), max(high_a, a)
                low_b, high_b = min(low_b, b), max(high_b, b)
        span_a, span_b = high_a - low_a, high_b - low_b
        span_a = span_a if span_a > 0.0 else 1.0
        span_b = span_b if span_b > 0.0 else 1.0
        for k in range(n):  # P = [B'^T | I | 1]
            for i in range(m):
                b = payoffs[g, pb, k, i] if transposed else payoffs[g, pb, i, k]
                TP[k, i, j] = (b - low_b) / span_b + 1.0
            for c in range(m, L):
                TP[k, c, j] = 0.0
            TP[k, m + k, j] = 1.0
            TP[k, L, j] = 1.0
            basis_p[k, j] = m + k
        for i in range(m):  # Q = [I | A' | 1]
            for c in range(m):
                TQ[i, c, j] = 0.0
            TQ[i, i, j] = 1.0
            for k in range(n):
                a = payoffs[g, pa, k, i] if transposed else payoffs[g, pa, i, k]
                TQ[i, m + k, j] = (a - low_a) / span_a + 1.0
            TQ[i, L, j] = 1.0
            basis_q[i, j] = i

    @numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def _paths_kernel(  # pragma: no cover - compiled
        payoffs,
        transposed,
        labels,
        max_pivots,
        lex_p,
        lex_q,
        piv_tol,
        tie_tol,
        x,
        y,
        pivots,
        terminated,
        degenerate,
    ):
        """Work item ``chunk`` runs games ``chunk CHUNK ..`` in the lanes of one tile.

        At every even (``P``) step, each lane whose path is over writes its game's
        results and takes the item's next game; the step pivots ``P`` (even) or ``Q``
        (odd) of every lane; a lane stops after its game's ``max_pivots``-th step, at
        the target label or on a lost ray. The item is done when no lane runs.
        """
        N = payoffs.shape[0]
        m, n = x.shape[1], y.shape[1]
        L = m + n
        chunks = (N + CHUNK - 1) // CHUNK
        for chunk in numba.prange(chunks):
            start = chunk * CHUNK
            stop = min(N, start + CHUNK)
            lanes = min(TILE, stop - start)  # a run-time count: the update stays a vector loop
            # the lanes' tableaux and bases (game innermost) and their paths' state
            TP = np.zeros((n, L + 1, TILE))
            TQ = np.zeros((m, L + 1, TILE))
            basis_p = np.zeros((n, TILE), np.int64)
            basis_q = np.zeros((m, TILE), np.int64)
            scratch = _scratch(max(m, n), L + 1)
            game = np.full(TILE, -1)  # the game in each lane, -1: none
            entering = np.zeros(TILE, np.int64)
            active = np.zeros(TILE, np.bool_)
            act = np.zeros(TILE, np.bool_)
            tie = np.zeros(TILE, np.bool_)
            leaving = np.zeros(TILE, np.int64)
            steps = np.zeros(TILE, np.int64)
            piv = np.zeros(TILE, np.int64)
            deg = np.zeros(TILE, np.bool_)
            done = np.zeros(TILE, np.bool_)
            queued = start  # the next game to load
            running = 0  # lanes holding a game whose path goes on
            step = 0
            while True:
                if step % 2 == 0:  # a lane whose path is over takes the next game
                    for j in range(lanes):
                        if active[j]:
                            continue
                        g = game[j]
                        if g >= 0:  # x_i, y_j: the right-hand sides of their rows
                            for k in range(n):
                                if basis_p[k, j] < m:
                                    x[g, basis_p[k, j]] = TP[k, L, j]
                            for i in range(m):
                                if basis_q[i, j] >= m:
                                    y[g, basis_q[i, j] - m] = TQ[i, L, j]
                            pivots[g] = piv[j]
                            terminated[g] = done[j]
                            degenerate[g] = deg[j]
                            game[j] = -1
                        if queued < stop:
                            g = queued
                            queued += 1
                            _load(payoffs, transposed, g, j, TP, TQ, basis_p, basis_q)
                            game[j] = g
                            entering[j] = labels[g]
                            active[j] = True
                            steps[j] = 0
                            piv[j] = 0
                            deg[j] = False
                            done[j] = False
                            running += 1
                    if running == 0:
                        break
                if step % 2 == 0:
                    T, basis, lex = TP, basis_p, lex_p
                else:
                    T, basis, lex = TQ, basis_q, lex_q
                _pivot_tile(
                    T,
                    basis,
                    entering,
                    active,
                    lex,
                    T.shape[0],
                    piv_tol,
                    tie_tol,
                    act,
                    tie,
                    leaving,
                    0,
                    lanes,
                    scratch,
                )
                for j in range(lanes):
                    if not active[j]:
                        continue
                    steps[j] += 1
                    # a lost ray (no pivot) stops the path unterminated
                    finished = act[j] and leaving[j] == labels[game[j]]
                    if act[j]:
                        piv[j] += 1
                        deg[j] = deg[j] or tie[j]
                        entering[j] = leaving[j]
                    done[j] = finished
                    if finished or not act[j] or steps[j] >= max_pivots:
                        active[j] = False
                        running -= 1
                step += 1
